"""A 20,000 x 20,000 GeoTIFF: processed in windows, never loaded whole."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Geod
from rasterio.windows import Window

from graft_vqa.core.errors import UnsupportedTileError
from graft_vqa.core.tiles import load_tile

from .fixtures.geo import lonlat_rect

SIDE = 20_000
BLOCK = 512


@pytest.fixture(scope="module")
def huge_tif(tmp_path_factory):
    """Sparse tiled GeoTIFF (only one block written, so the file is a few kB), EPSG:4326."""
    p = tmp_path_factory.mktemp("huge") / "huge.tif"
    tr = Affine(1e-4, 0.0, 10.0, 0.0, -1e-4, 50.0)
    with rasterio.open(p, "w", driver="GTiff", width=SIDE, height=SIDE, count=3, dtype="uint8",
                       tiled=True, blockxsize=BLOCK, blockysize=BLOCK, compress="deflate",
                       sparse_ok=True, crs="EPSG:4326", transform=tr) as ds:
        ds.write(np.full((3, BLOCK, BLOCK), 77, np.uint8), window=Window(SIDE - BLOCK, SIDE - BLOCK,
                                                                         BLOCK, BLOCK))
    return p


def test_whole_reads_refuse_with_advice(huge_tif):
    tile = load_tile(huge_tif)
    assert (tile.height, tile.width, tile.count) == (SIDE, SIDE, 3)
    for read in (tile.pixels, tile.rgb, tile.valid_mask):
        with pytest.raises(UnsupportedTileError, match="windows\\(size\\)|crop_window"):
            read()
    small = load_tile(np.zeros((40, 40, 3), np.uint8), max_pixels=1000)
    with pytest.raises(UnsupportedTileError, match="megapixel"):
        small.pixels()


def test_windows_cover_everything_with_bounded_memory(huge_tif):
    tile = load_tile(huge_tif)
    size = 4096
    tracemalloc.start()
    try:
        covered, n, last = 0, 0, None
        for win, rgb in tile.windows(size, rgb=True):
            assert rgb.shape == (win.height, win.width, 3) and rgb.dtype == np.uint8
            covered += win.height * win.width
            n += 1
            last = rgb
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == int(np.ceil(SIDE / size)) ** 2
    assert covered == SIDE * SIDE
    assert (last[-BLOCK:, -BLOCK:] == 77).all() and (last[:100, :100] == 0).all()
    whole = SIDE * SIDE * 3
    assert peak < whole / 4, f"peak traced memory {peak / 2**20:.0f} MiB is not window-sized"


def test_crop_window_and_areas_without_loading(huge_tif):
    tile = load_tile(huge_tif)
    sub = tile.crop_window(SIDE - 600, SIDE - 600, 600, 600)
    assert (sub.pixels()[-BLOCK:, -BLOCK:] == 77).all() and (sub.pixels()[:80, :80] == 0).all()
    assert sub.pixel_to_map(0, 0) == pytest.approx(tile.pixel_to_map(SIDE - 600, SIDE - 600))
    assert sub.crs == tile.crs
    # total area from the per-row map vs the geodesic area of the bounding lon/lat rectangle
    t = tile.transform
    west, north = t.c, t.f
    east, south = west + SIDE * t.a, north + SIDE * t.e
    lons, lats = lonlat_rect(west, south, east, north)
    expected = abs(Geod(ellps="WGS84").polygon_area_perimeter(lons, lats)[0])
    total = float(tile.pixel_area_map().sum() * SIDE)
    assert total == pytest.approx(expected, rel=1e-7)


def test_a_question_about_a_huge_tile_is_answered_window_by_window(huge_tif):
    from graft_vqa import Engine

    from .fixtures.scenes import SceneRects

    import shapely

    scorer = SceneRects({"building": [(19_700, 19_800, 19_600, 19_900)]})  # in the one written block
    engine = Engine(scorer=scorer, refine="none", threshold=0.25, feature_cache=False)
    corner = shapely.box(11.8, 48.0, 12.0, 48.2)  # EPSG:4326, the raster's own CRS: its last 2000 x 2000 px
    answer = engine.ask(huge_tif, "How many buildings are there?", aoi=corner)
    assert (answer.answer, answer.error) == ("1", None)
    assert answer.detections[0].box == (19_600, 19_700, 19_900, 19_800)
    assert max(w[2] * w[3] for w in scorer.windows) <= 1024 * 1024  # never the whole 400-megapixel raster
    assert len(set(scorer.windows)) <= 9 + 1  # the windows meeting the AOI, + one around the instance
