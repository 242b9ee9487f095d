"""Scenes: an 81-megapixel raster answered window by window, with objects across window borders,
inside an area of interest given in another CRS, in a UTM and in a geographic CRS."""
from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import Geod, Transformer

from graft_vqa import Engine
from graft_vqa.core.aoi import reproject
from graft_vqa.core.tiles import load_tile

from .fixtures.geo import ground_pixel_areas
from .fixtures.scenes import SceneRects, rect_area_m2, write_scene

SIDE = 9000  # 81 megapixels: above the 64-megapixel whole-read limit
# Window borders (cores) lie at 992, 1952, 2912, ... pixels: several objects cross them.
BUILDINGS = [(900, 1100, 900, 1100), (3000, 3400, 5000, 5600), (1900, 2000, 7000, 7300),
             (6100, 6500, 2850, 2950), (8500, 8800, 8500, 8900)]
WATER = [(4000, 6000, 500, 2500)]
OBJECTS = {"building": BUILDINGS, "water": WATER, "water area": WATER}
CRSS = {
    "utm": ("EPSG:32617", Affine(1.0, 0, 400000.0, 0, -1.0, 3300000.0)),
    "geographic": ("EPSG:4326", Affine(1e-5, 0, -82.0, 0, -1e-5, 29.6)),
}


@pytest.fixture(scope="module", params=sorted(CRSS))
def scene(request, tmp_path_factory):
    crs, transform = CRSS[request.param]
    path = write_scene(tmp_path_factory.mktemp("scene") / f"{request.param}.tif", SIDE, SIDE, crs, transform)
    return path, ground_pixel_areas(path, block=50)


def _engine(scorer=None, **options):
    return Engine(scorer=scorer or SceneRects(OBJECTS), refine="none", threshold=0.25, feature_cache=False,
                  **options)


def test_counts_presence_and_areas_across_window_borders(scene):
    path, areas = scene
    scorer = SceneRects(OBJECTS)
    engine = _engine(scorer)
    assert load_tile(path).megapixels > 64
    count = engine.ask(path, "How many buildings are there?")
    assert (count.answer, count.error) == ("5", None)
    truth = sorted((left, top, right, bottom) for top, bottom, left, right in BUILDINGS)
    boxes = sorted(d.box for d in count.detections)
    assert np.abs(np.array(boxes) - np.array(truth)).max() <= 2  # each object whole: no seam splits
    assert engine.ask(path, "Is there a water area?").answer == "yes"
    assert engine.ask(path, "Is there a road?").answer == "no"
    water = engine.ask(path, "What is the area covered by water?")
    assert water.value == pytest.approx(rect_area_m2(areas, WATER[0]), rel=0.01)
    built = engine.ask(path, "What is the area covered by buildings?")
    assert built.value == pytest.approx(sum(rect_area_m2(areas, r) for r in BUILDINGS), rel=0.01)
    assert all(w is not None and w[2] <= 1024 and w[3] <= 1024 for w in scorer.windows)  # never the whole raster
    plan = [w for w in scorer.windows if w[0] % 960 == 0 and w[1] % 960 == 0]
    assert len(plan) == 4 * 100  # each of the 100 windows scored once per new query (4 questions, 4 names)
    assert len(scorer.windows) - len(plan) <= 4 * len(BUILDINGS)  # + the windows around small instances
    for detection, (left, top, right, bottom) in zip(sorted(count.detections, key=lambda d: d.box), truth):
        assert detection.area_m2 == pytest.approx(rect_area_m2(areas, (top, bottom, left, right)), rel=0.01)


def _aoi_lonlat(path, rows: tuple[int, int], cols: tuple[int, int]):
    """A polygon in EPSG:4326 covering scene pixels rows × cols (given in the raster's own CRS first)."""
    tile = load_tile(path)
    (x0, y0), (x1, y1) = tile.transform @ (cols[0], rows[0]), tile.transform @ (cols[1], rows[1])
    box = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    return reproject(box, tile.crs, "EPSG:4326")


def test_the_same_questions_inside_an_aoi_in_another_crs(scene):
    path, areas = scene
    aoi = _aoi_lonlat(path, (0, 5200), (0, 6000))  # holds buildings 1 and 2 and the top of the water
    scorer = SceneRects(OBJECTS)
    engine = _engine(scorer)
    count = engine.ask(path, "How many buildings are there?", aoi=aoi, aoi_crs="EPSG:4326")
    assert count.answer == "2"
    water = engine.ask(path, "What is the area covered by water?", aoi=aoi, aoi_crs="EPSG:4326")
    assert water.value == pytest.approx(rect_area_m2(areas, (4000, 5200, 500, 2500)), rel=0.01)
    assert water.detections[0].area_m2 == pytest.approx(water.value, rel=1e-6)
    assert engine.ask(path, "Is there a water area?", aoi=aoi, aoi_crs="EPSG:4326").answer == "yes"
    root = engine.image_patch(path, aoi=aoi, aoi_crs="EPSG:4326")
    assert root.box == pytest.approx((0, 0, 6000, 5200), abs=1)  # the AOI's bounding window
    lon, lat = np.asarray(aoi.exterior.coords).T
    assert root.area_m2 == pytest.approx(abs(Geod(ellps="WGS84").polygon_area_perimeter(lon, lat)[0]), rel=1e-3)
    assert max(w[0] for w in scorer.windows) < 5200 and max(w[1] for w in scorer.windows) < 6000
    assert len(set(scorer.windows)) < 100 // 2  # only the windows that meet the AOI are read


def test_an_aoi_outside_the_raster_is_a_clear_error(scene):
    path, _ = scene
    tile = load_tile(path)
    to_lonlat = Transformer.from_crs(tile.crs, "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(*(tile.transform @ (0, 0)))
    far = shapely.box(lon + 5, lat + 5, lon + 6, lat + 6)
    from graft_vqa.core.errors import AOIError

    with pytest.raises(AOIError, match="does not overlap the raster"):
        _engine().ask(path, "How many buildings are there?", aoi=far, aoi_crs="EPSG:4326")
