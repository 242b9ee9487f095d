"""The app's Search tab and Segment action handlers, without a browser (synthetic embedder and scorer)."""
from __future__ import annotations

import json
from pathlib import Path

import pyogrio
import pytest
import rasterio

import graft_vqa
from graft_vqa.core.tiles import load_tile
from graft_vqa.interfaces.app.handlers import handle_upload
from graft_vqa.interfaces.app.search_tab import SearchBackend, handle_search
from graft_vqa.interfaces.app.segment_panel import NO_TILE, handle_segment
from graft_vqa.interfaces.app.session import EnginePool, UISettings

from .browser.fakes import blob_engine_factory
from .embedders import ColourEmbedder, solid, write_raster

TILE = "neon_osbs_029_10cm.tif"


def _index(tmp_path: Path) -> Path:
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    write_raster(tiles / "red.tif", solid((230, 20, 20)))
    write_raster(tiles / "green.tif", solid((20, 220, 20)), crs="EPSG:4326", origin=(-75.5, 40.7), pixel=0.001)
    graft_vqa.build_index(tiles, tmp_path / "idx", embedder=ColourEmbedder())
    return tmp_path / "idx"


def test_search_tab_shows_the_best_chips_with_footprints_and_a_geojson(tmp_path):
    index = _index(tmp_path)
    backend = SearchBackend(lambda: ColourEmbedder())
    gallery, rows, geojson, status, state = handle_search(str(index), "green", 5, "", None, backend, str(tmp_path))
    assert [row[2] for row in rows] == ["green.tif", "red.tif"] and "2 chip(s)" in status
    assert gallery[0][0].shape == (64, 64, 3) and gallery[0][1].startswith("1. ")
    assert rows[0][4] == "-75.50000, 40.63600, -75.43600, 40.70000"
    features = json.loads(Path(geojson).read_text())["features"]
    assert [f["properties"]["rank"] for f in features] == [1, 2]
    _, rows, _, status, _ = handle_search(str(index), "green", 5, "-75.6,40.6,-75.4,40.75", state, backend)
    assert [row[2] for row in rows] == ["green.tif"] and "inside the box" in status


def test_search_tab_errors_are_messages(tmp_path):
    backend = SearchBackend(lambda: ColourEmbedder())
    _, rows, geojson, status, _ = handle_search(str(tmp_path / "none"), "green", 5, "", None, backend)
    assert rows == [] and geojson is None and "Could not search" in status and "graft-vqa index" in status
    _, _, _, status, _ = handle_search(str(_index(tmp_path)), "green", 5, "1,2,3", None, backend)
    assert "four numbers" in status
    _, _, _, status, _ = handle_search(str(tmp_path), "", 5, "", None, backend)
    assert "Type what to look for" in status


def test_segment_action_writes_a_geotiff_and_a_geopackage(tmp_path, shared_data):
    path = shared_data / "tiles" / TILE
    pool = EnginePool(blob_engine_factory({400: {"building": 3}}))
    history, files, state = handle_segment("building", None, [], UISettings(refine="none"), pool, str(tmp_path))
    assert files is None and history[-1]["content"] == NO_TILE
    state, _, _, history = handle_upload(str(path), state, history, 50)
    history, files, state = handle_segment("building", state, history, UISettings(refine="none"), pool)
    mask, vector = (Path(f) for f in files)
    assert mask.suffix == ".tif" and vector.suffix == ".gpkg"
    asked = max(i for i, m in enumerate(history) if m == {"role": "user", "content": "Segment: building"})
    said = history[asked + 1]["content"]
    assert said.startswith("**building: ") and "3 instance(s)" in said
    assert history[-1]["content"]["path"].endswith(".png")
    with rasterio.open(mask) as src, rasterio.open(path) as tile:
        assert src.crs == tile.crs and src.transform == tile.transform
        masked = src.read(1) == 1
    frame = pyogrio.read_dataframe(vector)
    assert len(frame) == 3 and frame["area_m2"].sum() == pytest.approx(load_tile(path).area_m2(masked), rel=1e-12)
