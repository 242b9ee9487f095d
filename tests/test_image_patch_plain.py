"""ImagePatch on an image without georeferencing (no CRS, no gsd_m), and with an explicit gsd_m."""
from __future__ import annotations

import numpy as np
import pytest

from graft_vqa.config import FindConfig
from graft_vqa.core.errors import AreaUnavailableError
from graft_vqa.image_patch import ImagePatch, PatchContext
from graft_vqa.perception.sam import SamMasks, SamRefiner
from graft_vqa.core.tiles import load_tile


class TwoBlobs:
    def score_maps(self, tile, queries):
        m = np.zeros((len(queries), tile.height, tile.width), np.float32)
        m[:, 10:20, 10:20] = 1.0  # 100 px: 100/4096 = 2.4 % of the image -> "medium"
        m[:, 10:20, 21:23] = 1.0  # 20 px, one column away -> "small"
        return m


def root_for(gsd_m=None):
    rgb = np.full((64, 64, 3), 90, np.uint8)
    tile = load_tile(rgb, gsd_m=gsd_m)
    return ImagePatch(tile, context=PatchContext(tile=tile, scorer=TwoBlobs(),
                                                 config=FindConfig(threshold=0.5, refine="none")))


def test_without_any_scale():
    root = root_for()
    big, small = sorted(root.find("house"), key=lambda p: p.left)
    assert root.count("house") == 2
    with pytest.raises(AreaUnavailableError):
        big.area_m2
    with pytest.raises(AreaUnavailableError, match="gsd_m"):
        big.distance_m(small)
    for name in ("house", "lake"):  # found or not: without a scale, areas say what to pass
        with pytest.raises(AreaUnavailableError):
            root.coverage_m2(name)
    assert big.size == "medium" and small.size == "small"
    assert big.is_next_to(small)  # 1 pixel apart, default 2 pixels
    feature = big.to_geojson()
    assert feature["properties"]["pixel_coordinates"] is True and feature["properties"]["area_m2"] is None
    assert big.polygon.bounds == (10.0, 10.0, 20.0, 20.0)  # pixel coordinates
    det = big.detection()
    assert det.area_m2 is None and det.geometry is None and det.box == (10, 10, 20, 20)


def test_with_explicit_gsd():
    root = root_for(gsd_m=2.0)
    big, small = sorted(root.find("house"), key=lambda p: p.left)
    assert big.area_m2 == pytest.approx(100 * 4.0)
    assert big.distance_m(small) == pytest.approx(2.0)
    assert big.is_next_to(small) and not big.is_next_to(small, max_gap_m=1.0)
    assert root.coverage_m2("house") == pytest.approx(120 * 4.0)


class ChunkRecorder(SamRefiner):
    def __init__(self, max_batch):  # noqa: D107 - no SAM needed to test chunking
        self.max_batch, self.sizes = max_batch, []

    def _decode(self, tile, points, boxes, multimask):
        self.sizes.append(len(points))
        n = len(points)
        return SamMasks(np.zeros((n, 3, 2, 2), bool), np.tile(points[:, :1], (1, 3)))


def test_predict_chunks_and_keeps_order():
    rec = ChunkRecorder(max_batch=2)
    out = rec.predict(None, np.array([[i, 0] for i in range(5)]))
    assert rec.sizes == [2, 2, 1] and out.iou_predictions[:, 0].tolist() == [0, 1, 2, 3, 4]
    one = ChunkRecorder(max_batch=None)
    one.predict(None, np.zeros((5, 2)))
    assert one.sizes == [5]
