"""Zero-shot segmentation entry point and the mIoU evaluator (synthetic scorers, real tiles)."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from PIL import Image

from graft_vqa.config import FindConfig
from graft_vqa.core.errors import DatasetNotFoundError, GraftVQAError, WeightsNotFoundError
from graft_vqa.perception.sam import SamMasks
from graft_vqa.segmentation import evaluate_miou, segment

from .fixtures.geo import ground_pixel_areas


class RectScorer:
    def __init__(self, top, bottom, left, right, peak=None):
        self.rect, self.peak = (top, bottom, left, right), peak

    def score_maps(self, tile, queries):
        t, b, l, r = self.rect
        m = np.zeros((len(queries), tile.height, tile.width), np.float32)
        m[:, t:b, l:r] = 0.5
        if self.peak is not None:
            m[:, self.peak[0], self.peak[1]] = 0.9
        return m


class RecordingRefiner:
    """Returns three fixed masks; records the prompt."""

    def __init__(self, masks, ious):
        self.out, self.points = SamMasks(masks[None], np.asarray(ious)[None]), []

    def predict(self, tile, points, boxes=None, multimask=True):
        self.points.append(points.tolist())
        return self.out

    def refine(self, tile, instances, *, box_prompt=False, valid=None):
        raise AssertionError("the sam-point recipe prompts SAM itself")


def test_threshold_segmentation_on_a_utm_tile(shared_data):
    path = shared_data / "tiles" / "rgbn_5m_utm18n.tif"
    res = segment(path, "field", scorer=RectScorer(40, 60, 100, 180), method="threshold",
                  config=FindConfig(threshold=0.3))
    expected = np.zeros(res.mask.shape, bool)
    expected[40:60, 100:180] = True
    assert np.array_equal(res.mask, expected)
    with rasterio.open(path) as src:
        t = src.transform
    assert len(res.polygons) == 1
    assert res.polygons[0].area == pytest.approx(20 * 80 * abs(t.a * t.e))  # in the CRS, m²
    assert res.polygons[0].bounds[0] == pytest.approx((t @ (100, 0))[0])
    ground = ground_pixel_areas(path)[40:60, 0]  # true ground area per pixel row (UTM scale factor)
    assert res.area_m2 == pytest.approx(80 * ground.sum(), rel=1e-6)


def test_sam_point_prompt_is_the_best_patch_centre(shared_data):
    path = shared_data / "tiles" / "neon_osbs_029_10cm.tif"
    h = w = 400
    a, b = np.zeros((h, w), bool), np.zeros((h, w), bool)
    a[0:5, 0:5] = True
    b[100:140, 50:90] = True
    refiner = RecordingRefiner(np.stack([a, b, a]), [0.2, 0.7, 0.1])
    res = segment(path, "tree", scorer=RectScorer(100, 140, 50, 90, peak=(123, 70)), refiner=refiner,
                  method="sam-point")
    assert refiner.points == [[[64 + 8, 112 + 8]]]  # peak (row 123, col 70) lies in the patch at (112, 64)
    assert res.point == (72, 120) and res.method == "sam-point"
    from graft_vqa.core.tiles import load_tile
    assert np.array_equal(res.mask, b & load_tile(path).valid_mask())  # highest predicted IoU


def test_segment_errors(shared_data):
    path = shared_data / "tiles" / "neon_osbs_029_10cm.tif"
    with pytest.raises(GraftVQAError, match="refiner"):
        segment(path, "tree", scorer=RectScorer(0, 5, 0, 5), method="sam-point", refine="none")
    with pytest.raises(WeightsNotFoundError, match="allow_untrained"):  # no scorer: the default needs weights
        segment(path, "tree", scorer=None, refine="none")
    with pytest.raises(GraftVQAError, match="unknown segmentation method"):
        segment(path, "tree", scorer=RectScorer(0, 5, 0, 5), method="magic")
    with pytest.raises(DatasetNotFoundError, match="images/ and masks/"):
        evaluate_miou(path.parent, ["tree"], scorer=RectScorer(0, 5, 0, 5))


class BlueScorer:
    """'water' = blue channel above 128, 'roof' = red channel above 128."""

    def score_maps(self, tile, queries):
        rgb = tile.rgb().astype(np.float32) / 255
        return np.stack([rgb[..., 2] if q == "water" else rgb[..., 0] for q in queries])


def test_evaluate_miou(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    img = np.zeros((64, 64, 3), np.uint8)
    img[0:32, :, 2] = 255  # blue top half: predicted water (2048 px)
    img[40:50, 40:50, 0] = 255  # red square: predicted roof (100 px)
    labels = np.zeros((64, 64), np.uint8)  # class 0 "background" is never predicted
    labels[0:16, :] = 1  # water gt: top quarter (1024 px), inside the prediction
    labels[40:50, 40:60] = 2  # roof gt: 200 px, half predicted
    labels[60:64, :] = 255  # ignored
    Image.fromarray(img).save(tmp_path / "images" / "a.png")
    Image.fromarray(labels).save(tmp_path / "masks" / "a.png")
    res = evaluate_miou(tmp_path, ["background", "water", "roof"], scorer=BlueScorer(),
                        config=FindConfig(threshold=0.5))
    assert res.images == 1
    assert res.per_class["water"] == pytest.approx(1024 / 2048)
    assert res.per_class["roof"] == pytest.approx(100 / 200)
    assert res.per_class["background"] == 0.0
    assert res.miou == pytest.approx((0.5 + 0.5 + 0.0) / 3)


def test_package_level_segment_is_the_function():
    import graft_vqa
    import graft_vqa.segmentation  # noqa: F401 - importing the module must not shadow the function

    assert callable(graft_vqa.segment) and graft_vqa.segment is graft_vqa.segmentation.segment
    assert graft_vqa.evaluate_miou is graft_vqa.segmentation.evaluate_miou
