"""Answers as files a GIS opens: GeoPackage, GeoJSON (RFC 7946), FlatGeobuf, Shapefile, read back with
geopandas/pyogrio: CRS, one feature per instance, areas equal to the answer's, features in place."""
from __future__ import annotations

import json
import math

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely
from pyproj import CRS
from shapely.geometry import shape

from graft_vqa import Engine, EngineConfig, FindConfig
from graft_vqa.answer import RASTER_CRS, Answer
from graft_vqa.core.errors import OutputPathError
from tests.synthetic import MaskScorer
from tests.georaster import UTM18, UTM_ORIGIN, geodesic_area, to_crs, utm_raster, write_raster

FORMATS = ["out.gpkg", "out.geojson", "out.fgb", "out.shp"]


def _masks(size: int = 200) -> dict[str, np.ndarray]:
    buildings = np.zeros((size, size), bool)
    buildings[10:20, 10:20] = True  # 10 x 10 px = 100 m x 100 m
    buildings[20:30, 20:30] = True  # touches the first only at a corner: one instance, two parts
    buildings[100:130, 150:170] = True
    ponds = np.zeros((size, size), bool)
    ponds[50:90, 50:90] = True
    ponds[60:70, 60:70] = False  # an island: a hole
    return {"building": buildings, "pond": ponds}


@pytest.fixture(scope="module")
def utm_answers(tmp_path_factory):
    path = utm_raster(tmp_path_factory.mktemp("raster") / "utm.tif")
    engine = Engine(scorer=MaskScorer(_masks()), config=EngineConfig(find=FindConfig(threshold=0.25, refine="none")))
    return {"buildings": engine.ask(path, "How many buildings are there?"),
            "ponds": engine.ask(path, "How many ponds are there?"),
            "none": engine.ask(path, "How many cars are there?")}


def _read(path):
    frame = gpd.read_file(path, engine="pyogrio")
    if "id" in frame:
        frame = frame.sort_values("id").reset_index(drop=True)  # FlatGeobuf's spatial index reorders features
    return frame


def _utm(geometry_dict) -> shapely.Geometry:
    return shape(geometry_dict)


def test_detections_carry_their_perimeter(utm_answers):
    dets = utm_answers["buildings"].detections
    by_size = sorted(dets, key=lambda d: d.area_m2)
    assert by_size[0].perimeter_m == pytest.approx(2 * 400.0)  # two 100 m squares meeting at a corner
    assert by_size[1].perimeter_m == pytest.approx(2 * (300 + 200))  # 30 x 20 px at 10 m
    pond = utm_answers["ponds"].detections[0]
    assert pond.perimeter_m == pytest.approx(4 * 400 + 4 * 100)  # outline plus the island's shore


@pytest.mark.parametrize("name", FORMATS)
def test_each_format_reads_back_with_crs_count_areas_and_place(utm_answers, tmp_path, name):
    answer = utm_answers["buildings"]
    path = answer.to_file(tmp_path / name)
    frame = _read(path)
    geojson = name.endswith(".geojson")
    assert CRS.from_user_input(frame.crs) == CRS.from_user_input("EPSG:4326" if geojson else UTM18)
    assert len(frame) == answer.value == len(answer.detections) == 2
    assert frame["label"].tolist() == ["building", "building"]
    assert frame["area_m2"].tolist() == [d.area_m2 for d in answer.detections]
    perimeter = "perim_m" if name.endswith(".shp") else "perimeter_m"
    assert frame[perimeter].tolist() == pytest.approx([d.perimeter_m for d in answer.detections])
    assert set(frame["question"]) == {answer.question} and set(frame["answer"]) == {"2"}
    for row, det in zip(frame.itertuples(), answer.detections):
        assert row.geometry.is_valid
        truth = _utm(det.geometry)
        back = to_crs(row.geometry, "EPSG:4326", UTM18) if geojson else row.geometry
        assert back.centroid.distance(truth.centroid) < 0.01  # metres: in place
        assert back.symmetric_difference(truth).area < 1e-3 * truth.area
        ground = geodesic_area(row.geometry if geojson else to_crs(row.geometry, UTM18, "EPSG:4326"))
        assert ground == pytest.approx(row.area_m2, rel=1e-3)


@pytest.mark.parametrize("name", FORMATS)
def test_holes_and_parts_are_kept(utm_answers, tmp_path, name):
    ponds = _read(utm_answers["ponds"].to_file(tmp_path / ("ponds_" + name)))
    pond = ponds.geometry[0]
    polygon = pond.geoms[0] if pond.geom_type == "MultiPolygon" else pond
    assert len(polygon.interiors) == 1
    buildings = _read(utm_answers["buildings"].to_file(tmp_path / name))
    corner = buildings.geometry[int(np.argmin(buildings["area_m2"]))]
    assert corner.geom_type == "MultiPolygon" and len(corner.geoms) == 2 and corner.is_valid


def test_layer_metadata_holds_question_and_answer(utm_answers, tmp_path):
    answer = utm_answers["buildings"]
    for name in ("out.gpkg", "out.fgb"):
        meta = pyogrio.read_info(answer.to_file(tmp_path / name))["layer_metadata"]
        assert meta["question"] == answer.question and meta["answer"] == "2" and meta["coordinates"] == "EPSG:32618"


@pytest.mark.parametrize("name", FORMATS)
def test_crs_option_reprojects(utm_answers, tmp_path, name):
    answer = utm_answers["buildings"]
    frame = _read(answer.to_file(tmp_path / name, crs="EPSG:3857"))
    assert CRS.from_user_input(frame.crs) == CRS.from_epsg(3857)
    for row, det in zip(frame.itertuples(), answer.detections):
        back = to_crs(row.geometry, "EPSG:3857", UTM18)
        assert back.centroid.distance(_utm(det.geometry).centroid) < 0.01


@pytest.mark.parametrize("name", FORMATS)
def test_an_answer_without_detections_writes_an_empty_layer(utm_answers, tmp_path, name):
    answer = utm_answers["none"]
    assert answer.value == 0
    frame = _read(answer.to_file(tmp_path / name))
    assert len(frame) == 0
    assert CRS.from_user_input(frame.crs) == CRS.from_user_input("EPSG:4326" if name.endswith(".geojson") else UTM18)


# --- GeoJSON per RFC 7946 ---------------------------------------------------------------------
def test_geojson_is_rfc7946_wgs84_lon_lat_by_default(utm_answers):
    collection = utm_answers["buildings"].to_geojson()
    assert "crs" not in collection and collection["properties"]["rfc7946"] is True
    assert collection["properties"]["source_crs"] == "EPSG:32618"
    for feature in collection["features"]:
        geom = shape(feature["geometry"])
        lon, lat = geom.centroid.x, geom.centroid.y
        assert -76.1 < lon < -75.9 and 29.6 < lat < 29.8  # the raster's place, longitude first
        for polygon in getattr(geom, "geoms", [geom]):
            assert polygon.exterior.is_ccw and all(not ring.is_ccw for ring in polygon.interiors)
    json.dumps(collection)


def test_geojson_can_keep_the_raster_crs_and_says_so(utm_answers, tmp_path):
    answer = utm_answers["buildings"]
    collection = answer.to_geojson(crs=RASTER_CRS)
    assert collection["crs"] == {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32618"}}
    assert collection["properties"]["rfc7946"] is False and "not RFC 7946" in collection["properties"]["coordinates"]
    x0, y0 = UTM_ORIGIN
    assert shape(collection["features"][0]["geometry"]).bounds[0] >= x0  # metres, not degrees
    frame = _read(answer.to_file(tmp_path / "kept.geojson", crs=RASTER_CRS))
    assert CRS.from_user_input(frame.crs) == CRS.from_user_input(UTM18)  # GDAL reads the legacy member
    assert frame.geometry[0].equals_exact(_utm(answer.detections[0].geometry), 1e-6)


def test_geojson_file_equals_to_geojson(utm_answers, tmp_path):
    answer = utm_answers["ponds"]
    assert json.loads(answer.to_file(tmp_path / "p.geojson").read_text()) == json.loads(json.dumps(answer.to_geojson()))


def test_image_without_georeferencing_keeps_pixel_coordinates_and_says_so(tmp_path):
    path = write_raster(tmp_path / "plain.tif", crs=None, transform=None)
    engine = Engine(scorer=MaskScorer(_masks()), config=EngineConfig(find=FindConfig(threshold=0.25, refine="none")))
    answer = engine.ask(path, "How many buildings are there?")
    assert answer.crs is None and all(d.perimeter_m is None and d.area_m2 is None for d in answer.detections)
    collection = answer.to_geojson()
    assert collection["properties"]["pixel_coordinates"] is True and "pixel" in collection["properties"]["coordinates"]
    assert shape(collection["features"][-1]["geometry"]).bounds == (150.0, 100.0, 170.0, 130.0)  # col, row
    frame = _read(answer.to_file(tmp_path / "plain.gpkg"))
    assert frame.crs is None and len(frame) == 2 and math.isnan(frame["area_m2"][0])
    with pytest.raises(OutputPathError, match="no georeferencing"):
        answer.to_file(tmp_path / "plain4326.gpkg", crs="EPSG:4326")
    assert not (tmp_path / "plain4326.gpkg").exists()


# --- bad paths and interruptions --------------------------------------------------------------
@pytest.mark.parametrize("name, words", [("out.kml", "unknown extension"), ("missing/out.gpkg", "does not exist")])
def test_bad_paths_are_one_line_errors(utm_answers, tmp_path, name, words):
    with pytest.raises(OutputPathError, match=words):
        utm_answers["buildings"].to_file(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_unknown_crs_is_an_output_error(utm_answers, tmp_path):
    with pytest.raises(OutputPathError, match="--vector-crs"):
        utm_answers["buildings"].to_file(tmp_path / "out.gpkg", crs="EPSG:999999")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["out.gpkg", "out.shp"])
def test_an_interrupted_write_keeps_the_old_file_and_leaves_nothing_else(utm_answers, tmp_path, monkeypatch, name):
    answer = utm_answers["buildings"]
    path = answer.to_file(tmp_path / name)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_write = pyogrio.raw.write

    def write_then_interrupt(target, *args, **kwargs):
        real_write(target, *args, **kwargs)  # a whole file in the temporary folder ...
        raise KeyboardInterrupt  # ... and Ctrl-C before it is renamed

    monkeypatch.setattr(pyogrio.raw, "write", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        utm_answers["ponds"].to_file(path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.undo()
    answer_ponds = _read(utm_answers["ponds"].to_file(path))  # a later write replaces it whole
    assert answer_ponds["label"].tolist() == ["pond"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)


def test_answer_from_json_round_trip_still_writes(utm_answers, tmp_path):
    restored = Answer.model_validate_json(utm_answers["buildings"].model_dump_json())
    assert len(_read(restored.to_file(tmp_path / "again.fgb"))) == 2
