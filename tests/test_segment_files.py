"""Segmentation to GIS files: the GeoTIFF mask is on the input's grid, CRS and nodata, and its masked area is
the answer's area (synthetic scorer and refiner through the real engine)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from scipy import ndimage

import graft_vqa
from graft_vqa.core.tiles import load_tile
from graft_vqa.perception.instances import Instance
from graft_vqa.segmentation import MASK_NODATA

from .embedders import solid, write_raster
from .synthetic import RectScorer

RECTS = {"water": [(40, 90, 30, 120), (70, 130, 100, 160), (250, 300, 250, 330)]}  # two overlap: one instance


class GrowRefiner:
    """A stand-in for SAM: each instance's mask grows by 3 pixels (inside the valid pixels)."""

    def __init__(self) -> None:
        self.calls = 0

    def refine(self, tile, instances, *, box_prompt=False, valid=None):
        self.calls += 1
        out = []
        for inst in instances:
            grown = ndimage.binary_dilation(inst.full_mask((tile.height, tile.width)), iterations=3)
            mask = grown & (valid if valid is not None else True)
            out.append(Instance.from_mask(mask, inst.best_pixel, inst.score, refined=True))
        return out


def _engine(threshold=0.3):
    return graft_vqa.Engine(scorer=RectScorer(RECTS), refiner=GrowRefiner(), threshold=threshold)


@pytest.mark.parametrize("name", ["neon_osbs_029_10cm.tif", "rmnp_rgb_epsg4326.tif", "rgbn_5m_utm18n.tif"])
def test_mask_geotiff_has_the_input_grid_and_the_answers_area(shared_data, tmp_path, name):
    path = shared_data / "tiles" / name
    engine = _engine()
    result = graft_vqa.segment(path, "water", engine=engine)
    answer = engine.ask(path, "What is the area covered by water?")
    assert answer.ok and answer.kind == "area_m2"
    assert len(result.detections) == 2 and all(d.refined for d in result.detections)
    assert result.area_m2 == pytest.approx(answer.value, rel=1e-12)

    out = result.to_geotiff(tmp_path / "water.tif")
    tile = load_tile(path)
    with rasterio.open(out) as mask_file, rasterio.open(path) as src:
        assert (mask_file.width, mask_file.height, mask_file.count) == (src.width, src.height, 1)
        assert mask_file.crs == src.crs and mask_file.transform == src.transform
        assert mask_file.nodata == (src.nodata if src.nodata is not None else None)
        values = mask_file.read(1)
    masked = values == 1
    assert tile.area_m2(masked) == pytest.approx(answer.value, rel=1e-12)  # read back from the file
    assert np.array_equal(masked, result.mask)
    invalid = ~np.asarray(tile.valid_mask())
    if src.nodata is not None:
        assert np.array_equal(values == src.nodata, invalid)
    assert set(np.unique(values[~invalid])) <= {0, 1}


def test_input_nodata_zero_gets_a_free_nodata_value_and_vectors_match(tmp_path):
    rgb = solid((90, 90, 90), 400, 400)
    rgb[:, :20] = 0  # a nodata strip
    path = write_raster(tmp_path / "zero.tif", rgb, crs="EPSG:32618", nodata=0)
    result = graft_vqa.segment(path, "water", engine=_engine())
    out = result.to_geotiff(tmp_path / "m.tif")
    with rasterio.open(out) as src:
        assert src.nodata == MASK_NODATA and src.dtypes[0] == "uint8"
        values = src.read(1)
    assert (values[:, :20] == MASK_NODATA).all() and set(np.unique(values[:, 20:])) <= {0, 1}
    collection = result.answer().to_geojson()
    assert len(collection["features"]) == 2
    assert sum(f["properties"]["area_m2"] for f in collection["features"]) == pytest.approx(result.area_m2)
    json.dumps(collection)  # serialisable as it is


def test_threshold_and_plain_images(tmp_path):
    path = tmp_path / "plain.png"
    from PIL import Image

    Image.fromarray(solid((50, 60, 70), 200, 200)).save(path)
    result = graft_vqa.segment(path, "water", scorer=RectScorer(RECTS), method="threshold", threshold=0.3,
                               refine="none")
    expected = np.zeros((200, 200), bool)
    for top, bottom, left, right in RECTS["water"]:
        expected[top:bottom, left:right] = True
    assert result.area_m2 is None and np.array_equal(result.mask, expected)
    out = result.to_geotiff(tmp_path / "plain_mask.tif")
    with rasterio.open(out) as src:
        assert src.crs is None and src.nodata is None and src.read(1).sum() == result.mask.sum()


class SceneRects:
    """RectScorer in scene coordinates: window tiles get the part of each rectangle inside them."""

    def __init__(self, rects):
        self.rects = rects

    def score_maps(self, tile, queries):
        row0, col0 = (tile.window[0], tile.window[1]) if tile.window is not None else (0, 0)
        out = np.zeros((len(queries), tile.height, tile.width), np.float32)
        for i, q in enumerate(queries):
            for top, bottom, left, right in self.rects.get(q, []):
                out[i, max(0, top - row0):max(0, bottom - row0), max(0, left - col0):max(0, right - col0)] = 0.5
        return out


def test_a_raster_above_the_scene_limit_is_segmented_window_by_window(tmp_path, monkeypatch):
    import graft_vqa.core.rasters as rasters

    rgb = solid((90, 90, 90), 640, 720)
    rgb[600:, :] = 0  # nodata rows at the bottom
    path = write_raster(tmp_path / "scene.tif", rgb, crs="EPSG:32618", pixel=2.0, nodata=0)
    rects = {"water": [(30, 200, 40, 330), (150, 260, 300, 500), (400, 560, 600, 700)]}
    engine = graft_vqa.Engine(scorer=SceneRects(rects), refine="none", threshold=0.3, scene_pixels=100_000,
                              scene_window=256, scene_overlap=32, feature_cache=False)
    tile = load_tile(path, max_pixels=200_000)  # too large to read whole: the mask is never held
    result = graft_vqa.segment(tile, "water", engine=engine)
    assert result.mask is None and len(result.detections) == 2
    answer = engine.ask(tile, "What is the area covered by water?")
    assert result.area_m2 == pytest.approx(answer.value, rel=1e-12)

    monkeypatch.setattr(rasters, "MASK_BLOCK", 200)  # many blocks, cut at the edges
    out = result.to_geotiff(tmp_path / "scene_water.tif")
    with rasterio.open(out) as src, rasterio.open(path) as raster:
        assert src.transform == raster.transform and src.crs == raster.crs and src.nodata == MASK_NODATA
        values = src.read(1)
    expected = np.zeros((640, 720), bool)  # the union of the engine's instances, drawn whole here
    for inst in result.instances:
        expected |= inst.full_mask((640, 720))
    expected[600:, :] = False
    assert expected[100, 100] and expected[200, 400] and not expected[300, 100]
    assert np.array_equal(values == 1, expected) and (values[600:] == MASK_NODATA).all()
    assert load_tile(path).area_m2(values == 1) == pytest.approx(answer.value, rel=1e-9)
