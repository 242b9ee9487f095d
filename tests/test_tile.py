"""Real tiles: CRS, GSD and areas in m² checked against values computed independently here."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Geod, Transformer
from shapely.geometry import Polygon

from graft_vqa.core.errors import AreaUnavailableError, UnsupportedTileError
from graft_vqa.core.tiles import Tile, load_tile

from .fixtures.geo import lonlat_rect, map_rect_ring

WGS84_A = 6378137.0
WGS84_F = 1 / 298.257223563


def _metres_per_degree(lat_deg: float) -> tuple[float, float]:
    """Closed-form ellipsoid radii of curvature: metres per degree of longitude and latitude."""
    e2 = WGS84_F * (2 - WGS84_F)
    phi = math.radians(lat_deg)
    w = math.sqrt(1 - e2 * math.sin(phi) ** 2)
    n = WGS84_A / w  # prime vertical radius
    m = WGS84_A * (1 - e2) / w ** 3  # meridional radius
    return math.radians(1) * n * math.cos(phi), math.radians(1) * m


@pytest.mark.parametrize("name, epsg, gsd", [
    ("neon_osbs_029_10cm.tif", 32617, 0.1),  # README: EPSG:32617, 0.1 m
    ("rgbn_5m_utm18n.tif", 32618, 5.0),  # README: EPSG:32618, 5 m
])
def test_projected_tiles(shared_data, name, epsg, gsd):
    path = shared_data / "tiles" / name
    tile = load_tile(path)
    with rasterio.open(path) as ds:
        h, w, count = ds.height, ds.width, ds.count
    assert tile.crs.to_epsg() == epsg
    assert tile.georeferenced and tile.has_area and not tile.is_geographic
    assert (tile.height, tile.width, tile.count) == (h, w, count)
    # rel 2e-3: ground areas divide the grid area by UTM's areal scale (k0 = 0.9996 on the central
    # meridian, growing away from it), so they differ from gsd² by ~0.06-0.1 % on these tiles
    assert tile.gsd_m == pytest.approx(gsd, rel=2e-3)
    assert tile.pixel_area_m2 == pytest.approx(gsd * gsd, rel=2e-3)
    mask = np.zeros((h, w), bool)
    mask[10:30, 5:45] = True
    assert tile.area_m2(mask) == pytest.approx(20 * 40 * gsd * gsd, rel=2e-3)
    # the whole tile against the geodesic area of its outline in lon/lat (5 m cells: ~1e-9 precise)
    to_lonlat = Transformer.from_crs(epsg, 4326, always_xy=True)
    with rasterio.open(path) as ds:
        lons, lats = to_lonlat.transform(*map_rect_ring(ds.transform, 0, 0, w, h))
    expected = abs(Geod(ellps="WGS84").polygon_area_perimeter(lons, lats)[0])
    assert tile.area_m2(np.ones((h, w), bool)) == pytest.approx(expected, rel=1e-5)
    rgb = tile.rgb()
    assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8


def test_rgbn_uses_first_three_bands_and_nir_by_name(shared_data):
    path = shared_data / "tiles" / "rgbn_5m_utm18n.tif"
    with rasterio.open(path) as ds:
        raw = ds.read()
    tile = load_tile(path)
    assert tile.pixels().shape == (raw.shape[1], raw.shape[2], 4)
    np.testing.assert_array_equal(tile.rgb(), np.moveaxis(raw[:3], 0, -1))
    false_colour = load_tile(path, bands=[3, "red", "green"])
    np.testing.assert_array_equal(false_colour.rgb()[:, :, 0], raw[3])
    np.testing.assert_array_equal(false_colour.rgb()[:, :, 1], raw[0])
    assert false_colour.key != tile.key


def test_nodata_is_masked(shared_data):
    path = shared_data / "tiles" / "neon_osbs_029_10cm.tif"
    with rasterio.open(path) as ds:
        raw = np.moveaxis(ds.read(), 0, -1)
        nodata = ds.nodata
    tile = load_tile(path)
    expected_invalid = np.all(raw == nodata, axis=2)
    np.testing.assert_array_equal(~tile.valid_mask(), expected_invalid)
    assert expected_invalid.any()
    assert (tile.rgb()[expected_invalid] == 0).all()


def test_epsg4326_tile_geodesic_areas(shared_data):
    path = shared_data / "tiles" / "rmnp_rgb_epsg4326.tif"
    tile = load_tile(path)
    with rasterio.open(path) as ds:
        t, h, w = ds.transform, ds.height, ds.width
        west, south, east, north = ds.bounds
    assert tile.crs.to_epsg() == 4326 and tile.is_geographic and tile.has_area
    geod = Geod(ellps="WGS84")
    # one cell in the top row and one in the bottom row, computed directly
    for row in (0, h - 1):
        lat0, lat1 = t.f + t.e * row, t.f + t.e * (row + 1)
        lons = [t.c, t.c + t.a, t.c + t.a, t.c]
        cell, _ = geod.polygon_area_perimeter(lons, [lat0, lat0, lat1, lat1])
        assert tile.pixel_area_map()[row, 0] == pytest.approx(abs(cell), rel=1e-9)
    top, bottom = tile.pixel_area_map()[0, 0], tile.pixel_area_map()[-1, 0]
    assert top < bottom  # further north, smaller cells: not degrees times a constant
    # whole tile against the bounding lon/lat rectangle, geodesic and equal-area projection
    lons, lats = lonlat_rect(west, south, east, north)
    total_geod = abs(geod.polygon_area_perimeter(lons, lats)[0])
    full = np.ones((h, w), bool)
    assert tile.area_m2(full) == pytest.approx(total_geod, rel=1e-7)
    ease = Transformer.from_crs(4326, 6933, always_xy=True)  # EASE-Grid 2.0, equal area
    total_ea = Polygon(zip(*ease.transform(lons, lats))).area
    assert tile.area_m2(full) == pytest.approx(total_ea, rel=1e-5)
    assert tile.pixel_area_m2 == pytest.approx(total_geod / (h * w), rel=1e-7)
    # southern half only
    half = np.zeros((h, w), bool)
    half[h // 2:] = True
    lons2, lats2 = lonlat_rect(west, south, east, t.f + t.e * (h // 2))
    assert tile.area_m2(half) == pytest.approx(abs(geod.polygon_area_perimeter(lons2, lats2)[0]),
                                               rel=1e-7)
    # GSD at the centre from closed-form radii of curvature
    lat_c = t.f + t.e * h / 2
    mx, my = _metres_per_degree(lat_c)
    assert tile.gsd_m == pytest.approx((abs(t.a) * mx + abs(t.e) * my) / 2, rel=1e-4)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize("img_id", [0, 1, 7])
def test_rsvqa_lr_images(shared_data, img_id):
    root = shared_data / "rsvqa_lr_sample"
    meta = {m["id"]: m for m in json.loads((root / "LR_split_test_images.json").read_text())["images"]}
    gsd = float(meta[img_id]["res_x"].rstrip("m"))  # "10m" in the data set's own metadata
    path = root / "Images_LR" / f"{img_id}.tif"
    bare = load_tile(path)
    assert bare.crs is None and not bare.georeferenced and not bare.has_area
    assert bare.gsd_m is None and bare.pixel_area_m2 is None
    with pytest.raises(AreaUnavailableError, match="gsd_m"):
        bare.area_m2(np.ones((bare.height, bare.width), bool))
    with pytest.raises(AreaUnavailableError, match="gsd_m"):
        bare.pixel_area_map()
    tile = load_tile(path, gsd_m=gsd)
    assert tile.gsd_m == 10.0 and tile.pixel_area_m2 == pytest.approx(100.0)
    with rasterio.open(path) as ds:
        raw = np.moveaxis(ds.read(), 0, -1)
    assert tile.area_m2(np.ones(raw.shape[:2], bool)) == pytest.approx(raw.shape[0] * raw.shape[1] * 100)
    np.testing.assert_array_equal(tile.rgb(), raw)
    assert load_tile(tile) is tile
    assert load_tile(bare, gsd_m=gsd).pixel_area_m2 == pytest.approx(100.0)


def test_pixel_map_round_trip(shared_data):
    tile = load_tile(shared_data / "tiles" / "rgbn_5m_utm18n.tif")
    with rasterio.open(tile.path) as ds:
        x_expected, y_expected = ds.xy(10, 20)  # centre of row 10, col 20
    x, y = tile.pixel_to_map(20.5, 10.5)
    assert (x, y) == pytest.approx((x_expected, y_expected))
    col, row = tile.map_to_pixel(x, y)
    assert (col, row) == pytest.approx((20.5, 10.5))
    cols, rows = tile.map_to_pixel(*tile.pixel_to_map(np.array([0.0, 3.5]), np.array([1.0, 2.0])))
    np.testing.assert_allclose(cols, [0.0, 3.5])
    np.testing.assert_allclose(rows, [1.0, 2.0])


def test_crop_window_keeps_georeferencing(shared_data):
    tile = load_tile(shared_data / "tiles" / "rmnp_rgb_epsg4326.tif")
    sub = tile.crop_window(100, 50, 64, 32)
    assert isinstance(sub, Tile) and (sub.height, sub.width) == (32, 64)
    np.testing.assert_array_equal(sub.pixels(), tile.pixels()[50:82, 100:164])
    assert sub.pixel_to_map(0, 0) == pytest.approx(tile.pixel_to_map(100, 50))
    assert sub.crs == tile.crs and sub.key != tile.key
    np.testing.assert_allclose(sub.pixel_area_map()[:, 0], tile.pixel_area_map()[50:82, 0], rtol=1e-8)
    whole = np.ones((tile.height, tile.width), bool)
    part = np.zeros_like(whole)
    part[50:82, 100:164] = True
    assert sub.area_m2(np.ones((32, 64), bool)) == pytest.approx(tile.area_m2(part), rel=1e-9)


def test_windows_partition_tile(shared_data):
    tile = load_tile(shared_data / "tiles" / "rgbn_5m_utm18n.tif")
    seen = np.zeros((tile.height, tile.width), int)
    for win, arr in tile.windows(128):
        r0, c0 = win.row_off, win.col_off
        assert arr.shape == (win.height, win.width, 4)
        np.testing.assert_array_equal(arr, tile.pixels()[r0:r0 + win.height, c0:c0 + win.width])
        seen[r0:r0 + win.height, c0:c0 + win.width] += 1
    assert (seen == 1).all()
    wins = [w for w, _ in tile.windows(128, overlap=32, rgb=True)]
    assert wins[1].col_off - wins[0].col_off == 96


def test_key_is_stable_and_content_based(shared_data, tmp_path):
    path = shared_data / "tiles" / "neon_osbs_029_10cm.tif"
    assert load_tile(path).key == load_tile(str(path)).key
    arr = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    assert load_tile(arr).key == load_tile(arr.copy()).key
    other = arr.copy()
    other[0, 0, 0] += 1
    assert load_tile(other).key != load_tile(arr).key


def test_cog_reads_like_the_source(shared_data, tmp_path):
    from rasterio.shutil import copy as rio_copy

    src = shared_data / "tiles" / "neon_osbs_029_10cm.tif"
    cog = tmp_path / "neon_cog.tif"
    rio_copy(src, cog, driver="COG", compress="deflate", blocksize=128)
    a, b = load_tile(src), load_tile(cog)
    np.testing.assert_array_equal(a.rgb(), b.rgb())
    assert b.crs == a.crs and b.gsd_m == a.gsd_m and b.transform == a.transform


def test_arrays_are_owned_and_read_only():
    arr = np.full((20, 20, 3), 9, np.uint8)
    tile = load_tile(arr)
    arr[:] = 0  # the caller's later edits do not leak into the tile
    assert (tile.pixels() == 9).all() and (tile.rgb() == 9).all()
    assert not tile.pixels().flags.writeable and not tile.rgb().flags.writeable
    assert arr.flags.writeable


def _write_mercator_tile(path, side: int = 64, pixel: float = 20.0, lat: float = 60.0) -> None:
    """A small EPSG:3857 GeoTIFF whose centre lies at (10°E, ``lat``), ``pixel`` map units per pixel."""
    x, y = Transformer.from_crs(4326, 3857, always_xy=True).transform(10.0, lat)
    half = side * pixel / 2
    tr = Affine(pixel, 0.0, x - half, 0.0, -pixel, y + half)
    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=3, dtype="uint8",
                       crs="EPSG:3857", transform=tr) as ds:
        ds.write(np.full((3, side, side), 120, np.uint8))


def test_web_mercator_areas_are_ground_areas(tmp_path):
    path = tmp_path / "mercator_60n.tif"
    _write_mercator_tile(path)
    tile = load_tile(path)
    with rasterio.open(path) as ds:
        t, h, w = ds.transform, ds.height, ds.width
    to_lonlat = Transformer.from_crs(3857, 4326, always_xy=True)
    geod = Geod(ellps="WGS84")
    lons, lats = to_lonlat.transform(*map_rect_ring(t, 0, 0, w, h))
    expected = abs(geod.polygon_area_perimeter(lons, lats)[0])
    total = tile.area_m2(np.ones((h, w), bool))
    assert total == pytest.approx(expected, rel=1e-5)
    assert total < (w * t.a) * (h * t.a) / 3.9  # the plane area is ~4x too large at 60°N
    # southern half: cells grow southwards, row by row
    half = np.zeros((h, w), bool)
    half[h // 2:] = True
    lons2, lats2 = to_lonlat.transform(*map_rect_ring(t, 0, h // 2, w, h))
    assert tile.area_m2(half) == pytest.approx(abs(geod.polygon_area_perimeter(lons2, lats2)[0]), rel=1e-5)
    assert tile.pixel_area_map()[0, 0] < tile.pixel_area_map()[-1, 0]
    # GSD: mean geodesic length of one column step and one row step at the centre (~10 m, not 20)
    lon0, lat0 = to_lonlat.transform(*(t @ (w / 2, h / 2)))
    steps = [geod.inv(lon0, lat0, *to_lonlat.transform(*(t @ (w / 2 + dc, h / 2 + dr))))[2]
             for dc, dr in ((1, 0), (0, 1))]
    assert tile.gsd_m == pytest.approx(sum(steps) / 2, rel=1e-6)


def test_row_areas_are_fast_and_cached(tmp_path):
    path = tmp_path / "tall.tif"
    tr = Affine(1.0, 0.0, 500000.0, 0.0, -1.0, 7000000.0)
    with rasterio.open(path, "w", driver="GTiff", width=16, height=5000, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=tr) as ds:
        ds.write(np.ones((1, 5000, 16), np.uint8))
    tile = load_tile(path)
    t0 = time.perf_counter()
    areas = tile.pixel_area_map()
    elapsed = time.perf_counter() - t0
    assert areas.shape == (5000, 1) and elapsed < 0.1, f"{elapsed * 1000:.0f} ms for 5,000 rows"
    assert tile.pixel_area_map() is areas


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "ten"])
def test_bad_explicit_gsd_is_an_unsupported_tile(bad):
    with pytest.raises(UnsupportedTileError, match="gsd_m must be a positive"):
        load_tile(np.zeros((20, 20, 3), np.uint8), gsd_m=bad)


def test_key_includes_explicit_gsd(shared_data):
    path = shared_data / "rsvqa_lr_sample" / "Images_LR" / "0.tif"
    keys = {load_tile(path).key, load_tile(path, gsd_m=10.0).key, load_tile(path, gsd_m=5.0).key}
    assert len(keys) == 3
    assert load_tile(path, gsd_m=10.0).key == load_tile(path, gsd_m=10.0).key
    assert load_tile(load_tile(path), gsd_m=5.0).key == load_tile(path, gsd_m=5.0).key


def test_load_tile_opens_the_file_once(shared_data, monkeypatch):
    from graft_vqa.core.tiles import sources

    opened = []
    real_open = sources.rasterio.open
    monkeypatch.setattr(sources.rasterio, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    tile = load_tile(shared_data / "tiles" / "rgbn_5m_utm18n.tif")
    assert len(opened) == 1 and tile.count == 4


def test_explicit_gsd_is_public(shared_data):
    path = shared_data / "tiles" / "rgbn_5m_utm18n.tif"
    assert not load_tile(path).explicit_gsd
    assert load_tile(path, gsd_m=2.0).explicit_gsd
