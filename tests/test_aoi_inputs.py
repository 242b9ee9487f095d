"""Areas of interest as users give them: files (GeoJSON, GeoPackage, Shapefile), bounding boxes,
CRS defaults, areas against the geodesic truth, and every bad input as one AOIError line."""
from __future__ import annotations

import json

import pytest
import shapely
from affine import Affine
from shapely.geometry import Polygon, box

from graft_vqa.core.aoi import UserAOI, aoi_from_user, ground_area_m2, load_aoi_file, parse_bbox, resolve_aoi
from graft_vqa.core.errors import AOIError, AOIOutsideRasterError
from graft_vqa.core.tiles import load_tile
from tests.georaster import UTM18, geodesic_area, to_crs, utm_raster, write_raster, write_vector

# the UTM test raster covers x 400,000..402,000 and y 3,288,000..3,290,000 (10 m pixels, 200 x 200)
INNER = box(400_500, 3_288_500, 401_500, 3_289_500)  # 1 km² inside it


@pytest.fixture
def utm_tile(tmp_path):
    return load_tile(utm_raster(tmp_path / "utm.tif"))


def _lonlat_pentagon():
    """A pentagon with a hole, in lon/lat, well inside the UTM raster."""
    ring = [(400_300, 3_288_300), (401_700, 3_288_400), (401_800, 3_289_300), (401_000, 3_289_800),
            (400_200, 3_289_200)]
    hole = [(400_800, 3_288_800), (401_200, 3_288_800), (401_200, 3_289_100), (400_800, 3_289_100)]
    return to_crs(Polygon(ring, [hole]), UTM18, "EPSG:4326")


# --- bounding boxes -----------------------------------------------------------------------------
def test_bbox_is_parsed_into_a_rectangle():
    assert parse_bbox("400500, 3288500,401500,3289500").equals(INNER)
    assert parse_bbox([400500, 3288500, 401500, 3289500]).equals(INNER)


@pytest.mark.parametrize("text, words", [
    ("1,2,3", "has 3 value(s)"),
    ("1,2,3,4,5", "has 5 value(s)"),
    ("1,two,3,4", "'two' is not a number"),
    ("1,2,nan,4", "not a finite number"),
    ("5,0,1,4", "MINX (5) must be less than MAXX (1)"),
    ("0,9,4,1", "MINY (9) must be less than MAXY (1)"),
    ("0,1,0,4", "MINX (0) must be less than MAXX (0)"),
])
def test_bad_bbox_is_one_line_that_says_the_order(text, words):
    with pytest.raises(AOIError) as info:
        parse_bbox(text)
    message = str(info.value)
    assert words in message and "MINX,MINY,MAXX,MAXY" in message and "\n" not in message


def test_bbox_defaults_to_the_raster_crs(utm_tile):
    user = aoi_from_user(bbox="400500,3288500,401500,3289500")
    assert user.crs is None  # decided when placed on the raster: the raster's own
    placed = resolve_aoi(user.geometry, utm_tile, user.crs)
    assert placed.window == (50, 50, 100, 100)
    assert placed.area_m2 == pytest.approx(geodesic_area(to_crs(shapely.segmentize(INNER, 10), UTM18, "EPSG:4326")),
                                           rel=1e-6)
    assert aoi_from_user(bbox="400500,3288500,401500,3289500", raster_crs=UTM18).crs == "EPSG:32618"


def test_bbox_with_aoi_crs_is_reprojected(utm_tile):
    lon0, lat0, lon1, lat1 = to_crs(INNER, UTM18, "EPSG:4326").bounds
    user = aoi_from_user(bbox=f"{lon0},{lat0},{lon1},{lat1}", aoi_crs="EPSG:4326")
    assert user.crs == "EPSG:4326"
    placed = resolve_aoi(user.geometry, utm_tile, user.crs)
    row, col, h, w = placed.window
    assert 45 <= row <= 50 and 45 <= col <= 50 and 100 <= h <= 110 and 100 <= w <= 110


# --- CRS defaults and choices -------------------------------------------------------------------
def test_file_crs_is_the_default_and_aoi_crs_overrides_it(tmp_path, utm_tile):
    path = write_vector(tmp_path / "parcel.gpkg", [INNER], crs=UTM18)
    assert aoi_from_user(aoi=path).crs == "EPSG:32618"
    # --aoi-crs says what the coordinates are: the same numbers read as EPSG:32617 land elsewhere
    assert aoi_from_user(aoi=path, aoi_crs="EPSG:32617").crs == "EPSG:32617"
    with pytest.raises(AOIOutsideRasterError):
        resolve_aoi(path, utm_tile, aoi_crs="EPSG:32617")


def test_unknown_aoi_crs_is_an_aoi_error():
    with pytest.raises(AOIError, match="EPSG:4326") as info:
        aoi_from_user(bbox="0,0,1,1", aoi_crs="EPSG:999999")
    assert "--aoi-crs" in str(info.value)


def test_both_or_crs_alone_are_errors(tmp_path):
    path = write_vector(tmp_path / "parcel.gpkg", [INNER], crs=UTM18)
    with pytest.raises(AOIError, match="not both"):
        aoi_from_user(aoi=path, bbox="0,0,1,1")
    with pytest.raises(AOIError, match="--aoi FILE or --bbox"):
        aoi_from_user(aoi_crs="EPSG:4326")
    assert aoi_from_user() is None


def test_geojson_dict_without_crs_is_wgs84_and_with_legacy_crs_member_is_that(utm_tile):
    lonlat = to_crs(shapely.segmentize(INNER, 10), UTM18, "EPSG:4326")
    feature = {"type": "Feature", "geometry": shapely.geometry.mapping(lonlat), "properties": {}}
    assert aoi_from_user(aoi=feature).crs == "EPSG:4326"
    legacy = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:32618"}},
              "features": [{"type": "Feature", "geometry": shapely.geometry.mapping(INNER), "properties": {}}]}
    assert aoi_from_user(aoi=legacy).crs == "EPSG:32618"
    assert resolve_aoi(legacy, utm_tile).window == (50, 50, 100, 100)


def test_user_aoi_gives_the_engine_keywords():
    user = aoi_from_user(bbox="1,2,3,4", aoi_crs="EPSG:4326")
    assert isinstance(user, UserAOI) and user.ask_options() == {"aoi": user.geometry, "aoi_crs": "EPSG:4326"}


# --- files -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, driver", [("parcel.geojson", "GeoJSON"), ("parcel.gpkg", "GPKG"),
                                          ("parcel.shp", "ESRI Shapefile")])
def test_each_format_resolves_to_the_same_area(tmp_path, utm_tile, name, driver):
    lonlat = _lonlat_pentagon()
    crs = "EPSG:4326" if driver == "GeoJSON" else UTM18
    geometry = lonlat if driver == "GeoJSON" else to_crs(lonlat, "EPSG:4326", UTM18)
    path = write_vector(tmp_path / name, [geometry], crs=crs, driver=driver)
    geom, file_crs = load_aoi_file(path)
    assert file_crs is not None and geom.geom_type == "Polygon" and len(geom.interiors) == 1
    placed = resolve_aoi(str(path), utm_tile)  # a path, as the CLI gives it
    assert placed.area_m2 == pytest.approx(geodesic_area(lonlat), rel=1e-3)


def test_union_of_the_first_layers_polygons(tmp_path, utm_tile):
    a, b = box(400_000, 3_288_000, 400_500, 3_288_500), box(401_000, 3_289_000, 401_500, 3_289_500)
    overlapping = box(400_250, 3_288_250, 400_750, 3_288_750)
    path = write_vector(tmp_path / "parts.gpkg", [a, b, overlapping], crs=UTM18)
    geom, _ = load_aoi_file(path)
    assert geom.area == pytest.approx(shapely.union_all([a, b, overlapping]).area)
    assert resolve_aoi(path, utm_tile).window == (50, 0, 150, 150)


def test_epsg4326_polygon_over_a_utm_raster_matches_the_geodesic_area(tmp_path, utm_tile):
    lonlat = _lonlat_pentagon()
    placed = resolve_aoi(lonlat, utm_tile, aoi_crs="EPSG:4326")
    truth = geodesic_area(lonlat)
    assert abs(placed.area_m2 - truth) / truth < 1e-3
    assert placed.geometry.area == pytest.approx(to_crs(lonlat, "EPSG:4326", UTM18).area, rel=1e-4)
    row, col, h, w = placed.window
    assert (row, col) == (20, 20) and (row + h, col + w) == (170, 180)  # pentagon's pixel extent


def test_aoi_in_a_third_crs_matches_the_geodesic_area(utm_tile):
    lonlat = shapely.segmentize(_lonlat_pentagon(), 0.0005)  # dense, so edges survive Web Mercator
    mercator = to_crs(lonlat, "EPSG:4326", "EPSG:3857")
    placed = resolve_aoi(mercator, utm_tile, aoi_crs="EPSG:3857")
    truth = geodesic_area(lonlat)
    assert abs(placed.area_m2 - truth) / truth < 1e-3
    assert mercator.area > 1.1 * truth  # Web Mercator's plane area is far off: the geodesic area is used


def test_utm_aoi_over_an_epsg4326_raster(tmp_path):
    lon0, lat0 = -76.04, 29.73
    path = write_raster(tmp_path / "geo.tif", crs="EPSG:4326", transform=Affine(0.0001, 0, lon0, 0, -0.0001, lat0))
    tile = load_tile(path)
    lonlat = box(lon0 + 0.005, lat0 - 0.015, lon0 + 0.015, lat0 - 0.005)
    utm = to_crs(shapely.segmentize(lonlat, 0.0001), "EPSG:4326", UTM18)
    placed = resolve_aoi(utm, tile, aoi_crs=UTM18)
    assert placed.area_m2 == pytest.approx(geodesic_area(shapely.segmentize(lonlat, 0.0001)), rel=1e-3)
    assert placed.window == (50, 50, 100, 100)


def test_ground_area_subtracts_holes_whatever_their_winding():
    outer = [(0, 0), (0.01, 0), (0.01, 0.01), (0, 0.01)]
    hole = [(0.004, 0.004), (0.006, 0.004), (0.006, 0.006), (0.004, 0.006)]  # wound like the exterior
    same, opposite = Polygon(outer, [hole]), Polygon(outer, [hole[::-1]])
    assert ground_area_m2(same, "EPSG:4326") == pytest.approx(ground_area_m2(opposite, "EPSG:4326"))
    assert ground_area_m2(same, "EPSG:4326") == pytest.approx(
        ground_area_m2(Polygon(outer), "EPSG:4326") - ground_area_m2(Polygon(hole), "EPSG:4326"))


def test_aoi_partly_outside_is_clipped_to_the_raster(utm_tile):
    half_out = box(401_000, 3_289_000, 403_000, 3_291_000)  # a quarter of it lies on the raster
    placed = resolve_aoi(half_out, utm_tile)
    assert placed.window == (0, 100, 100, 100)
    assert placed.geometry.area == pytest.approx(1_000_000)


# --- bad input: one line that says what to do --------------------------------------------------
def _one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_aoi_that_misses_the_raster(utm_tile, tmp_path):
    far = write_vector(tmp_path / "far.geojson", [box(10.0, 50.0, 10.01, 50.01)], crs="EPSG:4326", driver="GeoJSON")
    with pytest.raises(AOIOutsideRasterError) as info:
        resolve_aoi(far, utm_tile)
    assert "does not overlap the raster" in _one_line(info) and "--aoi-crs" in str(info.value)


def test_shapefile_without_crs_needs_aoi_crs(tmp_path, utm_tile):
    path = write_vector(tmp_path / "nocrs.shp", [INNER], crs=None)
    assert not path.with_suffix(".prj").exists()
    with pytest.raises(AOIError) as info:
        aoi_from_user(aoi=path)
    assert "has no CRS" in _one_line(info) and "--aoi-crs" in str(info.value)
    with pytest.raises(AOIError, match="has no CRS"):
        resolve_aoi(path, utm_tile)
    assert resolve_aoi(path, utm_tile, aoi_crs=UTM18).window == (50, 50, 100, 100)


@pytest.mark.parametrize("name, driver", [("empty.geojson", "GeoJSON"), ("empty.gpkg", "GPKG"),
                                          ("empty.shp", "ESRI Shapefile")])
def test_empty_aoi_file(tmp_path, name, driver):
    path = write_vector(tmp_path / name, [], crs=UTM18, driver=driver)
    with pytest.raises(AOIError) as info:
        aoi_from_user(aoi=path)
    assert "holds no features" in _one_line(info) and "--bbox" in str(info.value)


def test_aoi_file_of_points_is_not_an_area(tmp_path):
    path = write_vector(tmp_path / "points.gpkg", [shapely.Point(400_500, 3_288_500)], crs=UTM18)
    with pytest.raises(AOIError) as info:
        aoi_from_user(aoi=path)
    assert "holds no polygons (only Point)" in _one_line(info)


def test_missing_and_unreadable_aoi_files(tmp_path):
    with pytest.raises(AOIError) as info:
        aoi_from_user(aoi=tmp_path / "nope.gpkg")
    assert "does not exist" in _one_line(info)
    junk = tmp_path / "junk.geojson"
    junk.write_text("this is not json")
    with pytest.raises(AOIError) as info:
        aoi_from_user(aoi=junk)
    assert "cannot read" in _one_line(info) and "GeoPackage" in str(info.value)


def test_aoi_with_a_crs_on_a_raster_without_one(tmp_path):
    plain = load_tile(write_raster(tmp_path / "plain.tif", crs=None, transform=None))
    path = tmp_path / "parcel.geojson"
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}))
    with pytest.raises(AOIError) as info:
        resolve_aoi(path, plain)
    assert "has no CRS" in _one_line(info)
    # in pixels (col, row) on a raster without a CRS, a bbox is fine
    assert resolve_aoi(parse_bbox("10,20,60,120"), plain).window == (20, 10, 100, 50)
