"""``graft-vqa ask`` with areas of interest and vector outputs: every input checked before any work,
one-line errors, nothing written on failure, the AOI handed to ``Engine.ask``."""
from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
from pyproj import CRS
from shapely.geometry import box

from graft_vqa import Engine, EngineConfig, FindConfig
from graft_vqa.core.aoi import resolve_aoi
from graft_vqa.core.tiles import load_tile
from graft_vqa.interfaces.cli import ask as ask_cmd
from graft_vqa.interfaces.cli import main
from tests.georaster import UTM18, to_crs, utm_raster, write_vector
from tests.synthetic import MaskScorer

QUESTION = "How many buildings are there?"


def _buildings(size: int = 200) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[10:20, 10:20] = True
    mask[100:130, 150:170] = True
    return mask


class AOIEngine:
    """A real engine (known score maps) that takes the AOI keywords as the lead's Engine.ask will:
    it places the AOI on the tile (so an AOI that misses the raster fails the same way) and records it."""

    def __init__(self) -> None:
        self.engine = Engine(scorer=MaskScorer({"building": _buildings()}),
                             config=EngineConfig(find=FindConfig(threshold=0.25, refine="none")))
        self.calls: list[dict] = []

    def ask(self, image, question, **aoi):
        self.calls.append({"image": image, "question": question, **aoi})
        if aoi:
            resolve_aoi(aoi["aoi"], load_tile(image), aoi.get("aoi_crs"))
        return self.engine.ask(image, question)


@pytest.fixture
def engine(monkeypatch):
    fake = AOIEngine()
    monkeypatch.setattr(ask_cmd, "build_engine", lambda args: fake)
    return fake


@pytest.fixture
def tile(tmp_path):
    return utm_raster(tmp_path / "scene.tif")


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("graft-vqa: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


# --- outputs -------------------------------------------------------------------------------------
def test_vector_and_geojson_outputs(engine, tile, tmp_path, capsys):
    gpkg, geojson = tmp_path / "b.gpkg", tmp_path / "b.geojson"
    assert main(["ask", str(tile), QUESTION, "--vector", str(gpkg), "--geojson", str(geojson)]) == 0
    assert capsys.readouterr().out.strip() == "2"
    frame = gpd.read_file(gpkg)
    assert CRS.from_user_input(frame.crs) == CRS.from_user_input(UTM18) and len(frame) == 2
    collection = json.loads(geojson.read_text())
    assert collection["properties"]["rfc7946"] is True and "crs" not in collection
    assert CRS.from_user_input(gpd.read_file(geojson).crs) == CRS.from_epsg(4326)


def test_vector_crs_reprojects_and_raster_keeps_geojson_in_the_raster_crs(engine, tile, tmp_path):
    fgb, kept = tmp_path / "b.fgb", tmp_path / "kept.geojson"
    assert main(["ask", str(tile), QUESTION, "--vector", str(fgb), "--vector-crs", "EPSG:3857"]) == 0
    assert CRS.from_user_input(gpd.read_file(fgb).crs) == CRS.from_epsg(3857)
    assert main(["ask", str(tile), QUESTION, "--vector", str(kept), "--vector-crs", "raster"]) == 0
    collection = json.loads(kept.read_text())
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32618"
    assert collection["properties"]["rfc7946"] is False


def test_out_table_for_one_tile(engine, tile, tmp_path):
    table = tmp_path / "r.jsonl"
    assert main(["ask", str(tile), QUESTION, "--out", str(table)]) == 0
    (row,) = [json.loads(line) for line in table.read_text().splitlines()]
    assert (row["tile"], row["answer"], row["value"], row["status"], row["detections"]) == (str(tile), "2", 2, "ok", 2)


@pytest.mark.parametrize("extra, words", [
    (["--geojson", "missing_dir/b.geojson"], "--geojson"),
    (["--vector", "missing_dir/b.gpkg"], "does not exist"),
    (["--vector", "b.kml"], "unknown extension '.kml'"),
    (["--vector", "b.gpkg", "--vector-crs", "EPSG:999999"], "--vector-crs"),
    (["--vector-crs", "EPSG:4326"], "add --vector OUT"),
    (["--out", "/proc/nope.csv"], "cannot write in /proc"),
    (["--out", "results.txt"], "use one of .csv, .jsonl"),
    (["--geojson", "b.gpkg"], "use one of .geojson, .json"),
])
def test_bad_output_paths_fail_before_any_work(monkeypatch, tile, tmp_path, capsys, extra, words):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ask_cmd, "build_engine", lambda args: pytest.fail("an engine was built"))
    before = _files(tmp_path)
    assert main(["ask", str(tile), QUESTION, *extra]) == 2
    assert words in _error_line(capsys)
    assert _files(tmp_path) == before


def test_a_failed_answer_writes_no_vector(engine, tile, tmp_path, capsys):
    gpkg = tmp_path / "b.gpkg"
    assert main(["ask", str(tile), "What is the meaning of life?", "--vector", str(gpkg)]) == 1
    assert "nothing written to --vector" in capsys.readouterr().err and not gpkg.exists()


# --- areas of interest ---------------------------------------------------------------------------
def test_aoi_file_reaches_the_engine_in_its_own_crs(engine, tile, tmp_path):
    parcel = write_vector(tmp_path / "parcel.gpkg", [box(400_000, 3_288_000, 401_000, 3_290_000)], crs=UTM18)
    assert main(["ask", str(tile), QUESTION, "--aoi", str(parcel)]) == 0
    call = engine.calls[-1]
    assert call["aoi_crs"] == "EPSG:32618" and call["aoi"].equals(box(400_000, 3_288_000, 401_000, 3_290_000))


def test_bbox_reaches_the_engine_in_the_raster_crs_unless_aoi_crs(engine, tile):
    assert main(["ask", str(tile), QUESTION, "--bbox", "400000,3288000,401000,3290000"]) == 0
    assert engine.calls[-1]["aoi_crs"] is None  # None: the raster's own CRS
    lonlat = to_crs(box(400_000, 3_288_000, 401_000, 3_290_000), UTM18, "EPSG:4326").bounds
    assert lonlat[0] < 0  # western longitudes: the value starts with "-"
    assert main(["ask", str(tile), QUESTION, "--bbox", ",".join(map(str, lonlat)), "--aoi-crs", "EPSG:4326"]) == 0
    assert engine.calls[-1]["aoi_crs"] == "EPSG:4326"
    assert engine.calls[-1]["aoi"].bounds == pytest.approx(lonlat)


def test_without_an_aoi_engine_ask_gets_no_aoi_keywords(engine, tile):
    assert main(["ask", str(tile), QUESTION]) == 0
    assert set(engine.calls[-1]) == {"image", "question"}


def _empty(tmp_path):
    return write_vector(tmp_path / "empty.geojson", [], crs="EPSG:4326", driver="GeoJSON")


def _no_crs(tmp_path):
    return write_vector(tmp_path / "nocrs.shp", [box(400_000, 3_288_000, 401_000, 3_290_000)], crs=None)


@pytest.mark.parametrize("make, words", [
    (lambda t: ["--bbox", "5,0,1,4"], "MINX (5) must be less than MAXX (1)"),
    (lambda t: ["--bbox", "1,2,3"], "four numbers"),
    (lambda t: ["--aoi", str(_no_crs(t))], "pass --aoi-crs"),
    (lambda t: ["--aoi", str(_empty(t))], "holds no features"),
    (lambda t: ["--aoi", str(t / "nope.gpkg")], "does not exist"),
    (lambda t: ["--aoi", str(_empty(t)), "--bbox", "0,0,1,1"], "not both"),
    (lambda t: ["--bbox", "0,0,1,1", "--aoi-crs", "nonsense"], "--aoi-crs"),
])
def test_bad_aoi_fails_before_any_work(monkeypatch, tile, tmp_path, capsys, make, words):
    monkeypatch.setattr(ask_cmd, "build_engine", lambda args: pytest.fail("an engine was built"))
    extra = make(tmp_path)
    before = _files(tmp_path)
    assert main(["ask", str(tile), QUESTION, "--vector", str(tmp_path / "b.gpkg"), *extra]) == 2
    assert words in _error_line(capsys)
    assert _files(tmp_path) == before


def test_aoi_that_misses_the_raster_is_one_line_and_writes_nothing(engine, tile, tmp_path, capsys):
    far = write_vector(tmp_path / "far.geojson", [box(10.0, 50.0, 10.01, 50.01)], crs="EPSG:4326", driver="GeoJSON")
    before = _files(tmp_path)
    assert main(["ask", str(tile), QUESTION, "--aoi", str(far), "--vector", str(tmp_path / "b.gpkg")]) == 2
    assert "does not overlap the raster" in _error_line(capsys)
    assert _files(tmp_path) == before


def test_real_engine_counts_and_writes_inside_an_epsg4326_aoi(monkeypatch, tile, tmp_path, capsys):
    engine = Engine(scorer=MaskScorer({"building": _buildings()}),
                    config=EngineConfig(find=FindConfig(threshold=0.25, refine="none")))
    monkeypatch.setattr(ask_cmd, "build_engine", lambda args: engine)
    quadrant = box(400_000, 3_289_000, 401_000, 3_290_000).segmentize(10)  # holds the 10 x 10 px building only
    parcel = write_vector(tmp_path / "parcel.geojson", [to_crs(quadrant, UTM18, "EPSG:4326")], crs="EPSG:4326",
                          driver="GeoJSON")
    out = tmp_path / "inside.gpkg"
    assert main(["ask", str(tile), QUESTION, "--aoi", str(parcel), "--vector", str(out)]) == 0
    assert capsys.readouterr().out.strip() == "1"
    frame = gpd.read_file(out)
    assert len(frame) == 1 and frame.geometry[0].bounds == pytest.approx((400_100, 3_289_800, 400_200, 3_289_900))
    assert frame["area_m2"][0] == pytest.approx(100 * 100, rel=2e-3)
