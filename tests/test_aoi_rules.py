"""The AOI rules on objects that cross the AOI's edge: counted by their whole object's centroid,
measured inside the AOI only; the same on a whole tile and through the scene plan."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine

from graft_vqa import Engine

BUILDING = (40, 60, 90, 130)  # rows, rows, cols, cols: centroid at column 110


@pytest.fixture
def raster(tmp_path):
    path = tmp_path / "t.tif"
    with rasterio.open(path, "w", driver="GTiff", width=200, height=200, count=3, dtype="uint8", crs="EPSG:32618",
                       transform=Affine(10, 0, 400000, 0, -10, 3290000)) as ds:
        ds.write(np.full((3, 200, 200), 90, np.uint8))
    return path


class Building:
    def score_maps(self, tile, queries):
        row0, col0 = tile.window[:2] if tile.window else (0, 0)
        top, bottom, left, right = BUILDING
        maps = np.zeros((len(queries), tile.height, tile.width), np.float32)
        t, b = min(max(0, top - row0), tile.height), min(max(0, bottom - row0), tile.height)
        lf, r = min(max(0, left - col0), tile.width), min(max(0, right - col0), tile.width)
        maps[:, t:b, lf:r] = 1.0
        return maps


@pytest.mark.parametrize("scene_pixels", [64_000_000, 1], ids=["tile", "scene"])
def test_an_object_across_the_aoi_edge_counts_by_its_whole_centroid(raster, scene_pixels):
    engine = Engine(scorer=Building(), refine="none", threshold=0.5, scene_pixels=scene_pixels,
                    scene_window=128, feature_cache=False)
    up_to_col_99 = shapely.box(400000, 3288000, 400990, 3290000)  # the building's centroid (col 110) is out
    assert engine.ask(raster, "How many buildings are there?", aoi=up_to_col_99).answer == "0"
    up_to_col_120 = shapely.box(400000, 3288000, 401200, 3290000)  # centroid in; the part to col 120 counts
    answer = engine.ask(raster, "How many buildings are there?", aoi=up_to_col_120)
    assert answer.answer == "1"
    assert answer.detections[0].area_m2 == pytest.approx(20 * 30 * 100, rel=0.002)  # 20 rows x 30 cols x 100 m2


def test_graft_vqa_ask_takes_an_aoi(raster):
    import graft_vqa

    up_to_col_120 = {"type": "Polygon", "coordinates": [[[400000, 3288000], [401200, 3288000], [401200, 3290000],
                                                          [400000, 3290000], [400000, 3288000]]]}
    answer = graft_vqa.ask(raster, "How many buildings are there?", aoi=up_to_col_120, aoi_crs="EPSG:32618",
                           scorer=Building(), refine="none", threshold=0.5)
    assert answer.answer == "1"
