"""Outlines of found patches: multi-part masks, holes, GeoJSON validity, caching and metric scale.

Expected areas are pixel counts of the masks built here (1 m pixels), distances the gaps in pixels
times the explicit ``gsd_m``; shapely checks validity independently of the code under test.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import shape

from graft_vqa.answer import Answer
from graft_vqa.config import FindConfig
from graft_vqa.image_patch import ImagePatch, PatchContext
from graft_vqa.perception import geometry
from graft_vqa.core.tiles import load_tile

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class MaskScorer:
    """Scores 1.0 on a fixed mask, 0.0 elsewhere, for every query."""

    def __init__(self, mask: np.ndarray) -> None:  # noqa: D107
        self.mask = mask

    def score_maps(self, tile, queries):  # noqa: ANN001, ANN201, D102
        return np.stack([self.mask.astype(np.float32)] * len(queries))


def _root(mask: np.ndarray, gsd_m: float = 1.0) -> ImagePatch:
    tile = load_tile(np.zeros(mask.shape + (3,), np.uint8), gsd_m=gsd_m)
    context = PatchContext(tile=tile, scorer=MaskScorer(mask), config=FindConfig(threshold=0.5, refine="none"))
    return ImagePatch(tile, context=context)


def _corner_squares() -> np.ndarray:
    mask = np.zeros((40, 40), bool)
    mask[5:15, 5:15] = True
    mask[15:25, 15:25] = True  # touches the first square only at the corner (15, 15)
    return mask


def test_corner_touching_squares_are_one_instance_with_a_valid_multipolygon():
    mask = _corner_squares()
    root = _root(mask)
    found = root.find("building")
    assert len(found) == 1  # 8-connected: one instance
    det = found[0].detection()
    assert len(det.polygons_px) == 2 and all(len(p) == 1 for p in det.polygons_px)
    collection = Answer(answer="1", detections=[det]).to_geojson()
    geom = shape(collection["features"][0]["geometry"])
    assert collection["features"][0]["geometry"]["type"] == "MultiPolygon"
    assert geom.is_valid and geom.area == pytest.approx(mask.sum())
    feature = found[0].to_geojson()  # the patch's own export is valid too
    assert shape(feature["geometry"]).is_valid and shape(feature["geometry"]).area == pytest.approx(mask.sum())


def test_hole_is_kept_in_the_detection_and_excluded_from_the_area():
    mask = np.zeros((30, 30), bool)
    mask[5:25, 5:25] = True
    mask[10:15, 10:15] = False  # a 5x5 hole
    det = _root(mask).find("pond")[0].detection()
    assert len(det.polygons_px) == 1 and len(det.polygons_px[0]) == 2  # exterior + one hole
    geometry_ = Answer(answer="1", detections=[det]).to_geojson()["features"][0]["geometry"]
    assert geometry_["type"] == "Polygon"
    geom = shape(geometry_)
    assert geom.is_valid and geom.area == pytest.approx(20 * 20 - 5 * 5) == pytest.approx(mask.sum())


def test_legacy_single_polygon_field_is_read_as_one_polygon():
    from graft_vqa.answer import Detection

    outer = [(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0), (0.0, 0.0)]
    det = Detection(name="x", score=1.0, box=(0, 0, 4, 4), polygon_px=[outer])
    assert det.polygons_px == [[outer]]


def test_outlines_are_traced_once_per_patch(monkeypatch):
    calls = []
    trace = geometry.mask_polygon

    def counting(mask, *args, **kwargs):  # noqa: ANN001, ANN202
        calls.append(1)
        return trace(mask, *args, **kwargs)

    monkeypatch.setattr(geometry, "mask_polygon", counting)
    mask = np.zeros((40, 40), bool)
    mask[2:8, 2:8] = True
    mask[2:8, 20:30] = True
    a, b = _root(mask).find("house")
    for _ in range(5):
        a.distance_m(b)
        a.is_next_to(b)
    a.detection()
    b.detection()
    assert len(calls) == 2  # one trace per patch, shared by pixels, map, metres and detections


def test_geographic_tile_builds_its_metric_transformer_once(monkeypatch):
    import pyproj

    tile = load_tile(DATA / "tiles" / "rmnp_rgb_epsg4326.tif")
    root = ImagePatch(tile, context=PatchContext(tile=tile, scorer=None))
    patches = [root.crop(10 * i, 0, 10 * i + 5, 5) for i in range(6)]
    calls = []
    original = pyproj.Transformer.from_crs

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(pyproj.Transformer, "from_crs", counting)
    distances = [a.distance_m(b) for a in patches for b in patches if a is not b]
    assert all(d > 0 for d in distances)
    assert len(calls) <= 1


def test_explicit_gsd_wins_over_the_crs_for_distances_as_for_areas():
    path = DATA / "tiles" / "rgbn_5m_utm18n.tif"
    tile = load_tile(path, gsd_m=2.0)  # the CRS says 5 m per pixel
    root = ImagePatch(tile, context=PatchContext(tile=tile, scorer=None))
    a = root.crop(0, 0, 10, 10)
    b = root.crop(30, 0, 40, 10)  # a 20-pixel gap
    assert a.area_m2 == pytest.approx(10 * 10 * 2.0 ** 2)
    assert a.distance_m(b) == pytest.approx(20 * 2.0)
    plain = load_tile(path)
    native = ImagePatch(plain, context=PatchContext(tile=plain, scorer=None))
    assert native.crop(0, 0, 10, 10).distance_m(native.crop(30, 0, 40, 10)) == pytest.approx(20 * 5.0)


def test_context_keeps_only_this_questions_finds():
    import gc
    import weakref

    mask = np.zeros((20, 20), bool)
    mask[2:8, 2:8] = True
    root = _root(mask)
    first = weakref.ref(root.find("house")[0])
    root.context.begin_question()
    root.find("house")
    gc.collect()
    assert first() is None  # earlier questions' patches are not kept by a long-lived context
    assert len(root.context.question_detections()) == 1
