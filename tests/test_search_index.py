"""Search over a collection with a synthetic embedder of known vectors (tests/embedders.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Transformer

import graft_vqa
from graft_vqa.core.errors import (
    ConfigError, EmbedderMismatchError, GraftVQAError, IndexNotFoundError, TileNotFoundError,
)
from graft_vqa.retrieval.store import ChipStore

from .embedders import ColourEmbedder, colour_vector, solid, write_raster

REPO = Path(__file__).resolve().parents[1]
# Four 64 x 64 tiles: (name, colour, CRS, origin, pixel size)
TILES = [
    ("red_utm.tif", (220, 20, 20), "EPSG:32618", (500_000.0, 4_500_000.0), 10.0),
    ("pink_utm.tif", (200, 90, 90), "EPSG:32618", (520_000.0, 4_500_000.0), 10.0),
    ("green_wgs84.tif", (20, 200, 30), "EPSG:4326", (-75.5, 40.7), 0.001),
    ("orange_plain.tif", (240, 140, 10), None, (0.0, 0.0), 1.0),
]


def _write_tiles(folder: Path) -> dict[str, tuple[int, int, int]]:
    folder.mkdir(exist_ok=True)
    for name, colour, crs, origin, pixel in TILES:
        write_raster(folder / name, solid(colour), crs=crs, origin=origin, pixel=pixel)
    return {name: colour for name, colour, *_ in TILES}


def _expected_order(colours: dict[str, tuple[int, int, int]], text: str) -> list[tuple[str, float]]:
    axis = {"red": 0, "green": 1, "blue": 2}[text]
    scores = {name: float(colour_vector(c)[axis]) for name, c in colours.items()}
    return sorted(scores.items(), key=lambda kv: -kv[1])


def _table(index: Path) -> list[tuple]:
    """Every stored chip (path name, window, rounded vector), sorted: what an index holds."""
    store = ChipStore.open(index)
    table = store._chips.to_arrow()
    rows = zip(table.column("path").to_pylist(), table.column("row_off").to_pylist(),
               table.column("col_off").to_pylist(), table.column("height").to_pylist(),
               table.column("width").to_pylist(), table.column("vector").to_pylist())
    return sorted((Path(p).name, r, c, h, w, tuple(np.round(v, 6))) for p, r, c, h, w, v in rows)


def test_search_ranks_exactly_by_cosine(tmp_path):
    colours = _write_tiles(tmp_path / "tiles")
    report = graft_vqa.build_index(str(tmp_path / "tiles" / "*.tif"), tmp_path / "idx", embedder=ColourEmbedder())
    assert (report.added, report.chips_added, report.chips_total, report.failed) == (4, 4, 4, [])
    for text in ("red", "green", "blue"):
        hits = graft_vqa.search(tmp_path / "idx", text, top_k=4, embedder=ColourEmbedder())
        expected = _expected_order(colours, text)
        assert [Path(h.path).name for h in hits] == [name for name, _ in expected]
        assert [h.score for h in hits] == pytest.approx([score for _, score in expected], abs=1e-6)
    top = graft_vqa.search(tmp_path / "idx", "red", top_k=2, embedder=ColourEmbedder())
    assert len(top) == 2 and top[0].window == (0, 0, 64, 64)


def test_footprints_are_wgs84_and_place_filters_work_in_another_crs(tmp_path):
    _write_tiles(tmp_path / "tiles")
    graft_vqa.build_index(tmp_path / "tiles", tmp_path / "idx", embedder=ColourEmbedder())
    hits = {Path(h.path).name: h for h in graft_vqa.search(tmp_path / "idx", "red", 10, embedder=ColourEmbedder())}
    assert hits["orange_plain.tif"].footprint is None
    green = hits["green_wgs84.tif"].footprint
    assert green.bounds == pytest.approx((-75.5, 40.7 - 0.064, -75.5 + 0.064, 40.7))
    to_lonlat = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True)
    corner = to_lonlat.transform(500_000.0 + 320, 4_500_000.0 - 320)  # centre of red_utm.tif
    assert hits["red_utm.tif"].footprint.contains(shapely.Point(corner))

    # a box in UTM 18N around the red tile only (pink is 20 km east): found by its own CRS
    box_utm = (499_000.0, 4_499_000.0, 501_000.0, 4_501_000.0)
    inside = graft_vqa.search(tmp_path / "idx", "red", 10, embedder=ColourEmbedder(), bbox=box_utm,
                              aoi_crs="EPSG:32618")
    assert [Path(h.path).name for h in inside] == ["red_utm.tif"]
    # the same place as a GeoJSON polygon in EPSG:3857, from a file
    to_merc = Transformer.from_crs("EPSG:32618", "EPSG:3857", always_xy=True)
    ring = [to_merc.transform(x, y) for x, y in [(499_000, 4_499_000), (501_000, 4_499_000),
                                                 (501_000, 4_501_000), (499_000, 4_501_000), (499_000, 4_499_000)]]
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps({"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:3857"}},
                               "features": [{"type": "Feature", "properties": {},
                                             "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    by_file = graft_vqa.search(tmp_path / "idx", "red", 10, embedder=ColourEmbedder(), aoi=str(aoi))
    assert [Path(h.path).name for h in by_file] == ["red_utm.tif"]
    # a box over the whole world: every georeferenced tile, never the one without georeferencing
    world = graft_vqa.search(tmp_path / "idx", "red", 10, embedder=ColourEmbedder(), bbox=(-180, -90, 180, 90))
    assert sorted(Path(h.path).name for h in world) == ["green_wgs84.tif", "pink_utm.tif", "red_utm.tif"]
    assert graft_vqa.search(tmp_path / "idx", "red", 10, embedder=ColourEmbedder(), bbox=(10, 10, 11, 11)) == []


def test_large_raster_is_cut_into_chips_with_their_footprints(tmp_path):
    rgb = np.zeros((300, 500, 3), np.uint8)
    rgb[:, :] = (20, 20, 200)
    rgb[0:224, 224:448] = (230, 10, 10)  # the second chip of the first row is red
    rgb[224:, 448:] = 0  # the last chip is all nodata: not stored
    path = write_raster(tmp_path / "big.tif", rgb, crs="EPSG:32618", nodata=0,
                        tags={"TIFFTAG_DATETIME": "2021:05:03 10:20:30"})
    report = graft_vqa.build_index(path, tmp_path / "idx", embedder=ColourEmbedder(), chip=224)
    assert report.chips_added == 5  # 2 x 3 grid, one all-nodata chip
    best = graft_vqa.search(tmp_path / "idx", "red", 1, embedder=ColourEmbedder())[0]
    assert best.window == (0, 224, 224, 224) and best.date == "2021-05-03T10:20:30" and best.crs == "EPSG:32618"
    to_lonlat = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True)
    x0, y0 = 500_000.0 + 224 * 10, 4_500_000.0
    square = shapely.segmentize(shapely.box(x0, y0 - 2240, x0 + 2240, y0), 10.0)  # edges bend in lon/lat
    expected = shapely.transform(square, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1])))
    assert best.footprint.symmetric_difference(expected).area < 1e-6 * expected.area
    edge = [h for h in graft_vqa.search(tmp_path / "idx", "blue", 10, embedder=ColourEmbedder())
            if h.window[1] == 448]
    assert [h.window for h in edge] == [(0, 448, 224, 52)]


def test_incremental_indexing_embeds_only_new_and_changed_files(tmp_path):
    _write_tiles(tmp_path / "tiles")
    first = ColourEmbedder()
    graft_vqa.build_index(tmp_path / "tiles", tmp_path / "idx", embedder=first)
    assert sum(first.calls) == 4
    again = ColourEmbedder()
    report = graft_vqa.build_index(tmp_path / "tiles", tmp_path / "idx", embedder=again)
    assert again.calls == [] and (report.unchanged, report.chips_added, report.chips_total) == (4, 0, 4)

    write_raster(tmp_path / "tiles" / "blue_new.tif", solid((10, 10, 250)), crs="EPSG:32618")
    write_raster(tmp_path / "tiles" / "red_utm.tif", solid((10, 240, 10)), crs="EPSG:32618",
                 origin=(500_000.0, 4_500_000.0), pixel=10.0)  # the red tile is now green: changed
    third = ColourEmbedder()
    report = graft_vqa.build_index(tmp_path / "tiles", tmp_path / "idx", embedder=third)
    assert sum(third.calls) == 2
    assert (report.added, report.updated, report.unchanged, report.chips_total) == (1, 1, 3, 5)
    hits = graft_vqa.search(tmp_path / "idx", "green", 2, embedder=ColourEmbedder())
    assert {Path(h.path).name for h in hits} == {"red_utm.tif", "green_wgs84.tif"}  # old chip gone, new one in
    assert len([h for h in graft_vqa.search(tmp_path / "idx", "blue", 10, embedder=ColourEmbedder())
                if Path(h.path).name == "red_utm.tif"]) == 1


KILLED_RUN = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from tests.embedders import ColourEmbedder
    import graft_vqa
    graft_vqa.build_index({tiles!r}, {index!r}, embedder=ColourEmbedder(kill_after={kill_after}), chip=64,
                          batch_size=4)
""")


def test_a_killed_indexing_resumes_to_the_same_index(tmp_path):
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):  # three 192 x 192 rasters of nine 64-px chips each, random colours per chip
        rgb = np.repeat(np.repeat(rng.integers(1, 255, (3, 3, 3), dtype=np.uint8), 64, 0), 64, 1)
        write_raster(tiles / f"t{i}.tif", rgb, origin=(500_000.0 + 5000 * i, 4_500_000.0))
    script = KILLED_RUN.format(repo=str(REPO), tiles=str(tiles), index=str(tmp_path / "idx"), kill_after=4)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr  # SIGKILL in the 4th batch: 3 batches (12 chips) committed
    partial = _table(tmp_path / "idx")
    assert len(partial) == 12  # t0 whole, t1 a third done

    resumed_embedder = ColourEmbedder()
    report = graft_vqa.build_index(tiles, tmp_path / "idx", embedder=resumed_embedder, chip=64, batch_size=4)
    assert sum(resumed_embedder.calls) == 27 - 12  # only the chips the killed run had not committed
    assert (report.unchanged, report.resumed, report.added) == (1, 1, 1)
    graft_vqa.build_index(tiles, tmp_path / "whole", embedder=ColourEmbedder(), chip=64, batch_size=4)
    assert _table(tmp_path / "idx") == _table(tmp_path / "whole")
    assert len(_table(tmp_path / "idx")) == 27


def test_other_weights_missing_index_and_empty_collections_are_one_line_errors(tmp_path):
    _write_tiles(tmp_path / "tiles")
    graft_vqa.build_index(tmp_path / "tiles", tmp_path / "idx", embedder=ColourEmbedder())
    other = ColourEmbedder(model_id="colour-embedder-v2")
    with pytest.raises(EmbedderMismatchError) as err:
        graft_vqa.search(tmp_path / "idx", "red", embedder=other)
    assert "colour-embedder-v1" in str(err.value) and "colour-embedder-v2" in str(err.value)
    with pytest.raises(EmbedderMismatchError):
        graft_vqa.build_index(tmp_path / "tiles", tmp_path / "idx", embedder=other)
    with pytest.raises(ConfigError, match="chip"):
        graft_vqa.build_index(tmp_path / "tiles", tmp_path / "idx", embedder=ColourEmbedder(), chip=32)
    with pytest.raises(IndexNotFoundError, match="graft-vqa index"):
        graft_vqa.search(tmp_path / "nowhere", "red", embedder=ColourEmbedder())
    with pytest.raises(IndexNotFoundError, match="not a graft-vqa search index"):
        graft_vqa.search(tmp_path / "tiles", "red", embedder=ColourEmbedder())

    (tmp_path / "empty").mkdir()
    with pytest.raises(TileNotFoundError, match="holds no rasters"):
        graft_vqa.build_index(tmp_path / "empty", tmp_path / "new", embedder=ColourEmbedder())
    with pytest.raises(TileNotFoundError, match="no file matches"):
        graft_vqa.build_index(str(tmp_path / "empty" / "*.tif"), tmp_path / "new", embedder=ColourEmbedder())
    (tmp_path / "list.txt").write_text("# nothing\n")
    with pytest.raises(TileNotFoundError, match="names no tiles"):
        graft_vqa.build_index(tmp_path / "list.txt", tmp_path / "new", embedder=ColourEmbedder())
    missing = graft_vqa.build_index([str(tmp_path / "tiles" / "red_utm.tif"), str(tmp_path / "gone.tif")],
                                    tmp_path / "idx", embedder=ColourEmbedder())
    assert missing.unchanged == 1 and missing.failed == [(str(tmp_path / "gone.tif"), f"no file at {tmp_path}/gone.tif")]
    write_raster(tmp_path / "empty" / "void.tif", np.zeros((64, 64, 3), np.uint8), nodata=0)
    with pytest.raises(GraftVQAError, match="no index was written"):
        graft_vqa.build_index(tmp_path / "empty", tmp_path / "new", embedder=ColourEmbedder())
    assert not (tmp_path / "new").exists()  # nothing half-written


def test_a_list_file_names_paths_relative_to_itself(tmp_path):
    _write_tiles(tmp_path / "tiles")
    (tmp_path / "some.txt").write_text("# two tiles\ntiles/red_utm.tif\n\ntiles/green_wgs84.tif\n")
    report = graft_vqa.build_index(tmp_path / "some.txt", tmp_path / "idx", embedder=ColourEmbedder())
    assert report.files == 2 and report.chips_total == 2


class _LastFileFirst:
    """A ChipRunner that embeds the files last first, each alone and in units of at most 5 chips (as Ray's
    units come back: out of order, a file's chips in several commits)."""

    def __init__(self) -> None:
        self.embedder = ColourEmbedder()

    def start(self):
        return self.embedder.model_id, ["a warning from the runner"]

    def run(self, work, chips, batch_size):
        from graft_vqa.core.tiles import load_tile
        from graft_vqa.retrieval.runners import Batch, embed_chips, windows_to_embed

        for item in reversed(work):
            windows = windows_to_embed(load_tile(item.path), chips, item.stored)
            count = len(item.stored)
            for start in range(0, len(windows), 5):
                done = embed_chips(self.embedder, item.path, item.key, chips, windows[start:start + 5], batch_size)
                count += len(done.rows)
                last = start + 5 >= len(windows)
                yield Batch(done.rows, done.vectors, done=[(item.path, item.key, count)] if last else [])


def test_a_chip_runner_is_a_seam_and_its_index_equals_the_default_one(tmp_path):
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):  # 192 x 192 rasters of nine 64-px chips each
        rgb = np.repeat(np.repeat(rng.integers(1, 255, (3, 3, 3), dtype=np.uint8), 64, 0), 64, 1)
        write_raster(tiles / f"t{i}.tif", rgb, origin=(500_000.0 + 5000 * i, 4_500_000.0))
    report = graft_vqa.build_index(tiles, tmp_path / "idx", runner=_LastFileFirst(), chip=64, batch_size=2)
    assert (report.added, report.chips_added, report.warnings) == (3, 27, ["a warning from the runner"])
    graft_vqa.build_index(tiles, tmp_path / "one", embedder=ColourEmbedder(), chip=64, batch_size=4)
    assert _table(tmp_path / "idx") == _table(tmp_path / "one")
    again = graft_vqa.build_index(tiles, tmp_path / "idx", runner=_LastFileFirst(), chip=64)
    assert (again.unchanged, again.chips_added) == (3, 0)
    with pytest.raises(TypeError, match="one or the other"):
        graft_vqa.build_index(tiles, tmp_path / "x", embedder=ColourEmbedder(), runner=_LastFileFirst())
