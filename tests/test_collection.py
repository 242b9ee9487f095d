"""Many tiles at once: per-tile answers, totals, the table, unreadable tiles, and the CLI over a glob."""
from __future__ import annotations

import csv
import json
import pickle

import numpy as np
import pytest
from shapely.geometry import box

import graft_vqa
from graft_vqa import Engine, EngineConfig, FindConfig
from graft_vqa.collection import TileAnswer, answer_tile, expand_images, is_collection, totals
from graft_vqa.core.aoi import resolve_aoi
from graft_vqa.core.errors import OutputPathError, TileNotFoundError
from graft_vqa.core.tiles import load_tile
from graft_vqa.interfaces.cli import ask as ask_cmd
from graft_vqa.interfaces.cli import main
from tests.georaster import UTM18, utm_raster
from tests.synthetic import MaskScorer

COUNT = "How many buildings are there?"
PRESENCE = "Is there a pond?"
AREA = "What is the area covered by buildings?"


def _mask(*rects) -> np.ndarray:
    mask = np.zeros((200, 200), bool)
    for top, bottom, left, right in rects:
        mask[top:bottom, left:right] = True
    return mask


# tile a: 2 buildings, no pond; tile b: 3 buildings and a pond; tile c: nothing
PER_TILE = {
    "a.tif": {"building": _mask((10, 20, 10, 20), (100, 110, 100, 120))},
    "b.tif": {"building": _mask((0, 10, 0, 10), (50, 60, 50, 60), (150, 160, 150, 160)),
              "pond": _mask((80, 120, 20, 60))},
    "c.tif": {},
}
COUNTS = {"a.tif": 2, "b.tif": 3, "c.tif": 0}


def _engine() -> Engine:
    return Engine(scorer=MaskScorer({}, per_tile=PER_TILE),
                  config=EngineConfig(find=FindConfig(threshold=0.25, refine="none")))


@pytest.fixture
def tiles(tmp_path):
    folder = tmp_path / "tiles"
    folder.mkdir()
    for name in PER_TILE:
        utm_raster(folder / name)
    return folder


@pytest.fixture
def with_bad(tiles):
    (tiles / "broken.tif").write_bytes(b"not a raster at all")
    return tiles


# --- what a collection is ----------------------------------------------------------------------
def test_glob_folder_list_and_paths_expand_in_order(tiles, tmp_path):
    names = [str(tiles / n) for n in ("a.tif", "b.tif", "c.tif")]
    assert expand_images(str(tiles / "*.tif")) == names
    assert expand_images(tiles) == names
    assert expand_images(str(tmp_path / "**" / "*.tif")) == names
    listing = tmp_path / "tiles.txt"
    listing.write_text("# my tiles\ntiles/b.tif\n\ntiles/missing.tif  # not there yet\n" + names[0] + "\n")
    assert expand_images(listing) == [names[1], str(tmp_path / "tiles/missing.tif"), names[0]]
    assert expand_images([names[2], str(tiles / "a*.tif")]) == [names[2], names[0]]
    assert all(is_collection(s) for s in (str(tiles / "*.tif"), tiles, listing, [names[0]]))
    assert not is_collection(names[0])


@pytest.mark.parametrize("spec, words", [
    ("nothing/*.tif", "no file matches 'nothing/*.tif'"),
    ("empty_dir", "holds no rasters"),
    ("empty.txt", "names no tiles"),
    ("absent.txt", "does not exist"),
])
def test_collections_that_name_nothing_are_one_line_errors(tmp_path, monkeypatch, spec, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(TileNotFoundError) as info:
        expand_images(spec)
    assert words in str(info.value) and "\n" not in str(info.value)


# --- the unit of work and the totals ------------------------------------------------------------
def test_answer_tile_answers_every_question_and_records_travel(tiles):
    records = answer_tile(_engine(), str(tiles / "b.tif"), [COUNT, PRESENCE])
    assert [(r.question, r.status, r.answer.answer) for r in records] == [(COUNT, "ok", "3"), (PRESENCE, "ok", "yes")]
    again = pickle.loads(pickle.dumps(records))  # plain records: a scheduler can ship them
    assert [r.row() for r in again] == [r.row() for r in records]


def test_unreadable_tile_is_a_record_not_a_crash(with_bad):
    records = answer_tile(_engine(), str(with_bad / "broken.tif"), [COUNT, PRESENCE])
    assert [r.status for r in records] == ["unreadable", "unreadable"]
    assert "broken.tif" in records[0].error and records[0].answer is None
    assert records[0].row()["answer"] is None


def test_ask_many_totals_counts_presence_and_areas(with_bad):
    result = graft_vqa.ask_many(str(with_bad / "*.tif"), [COUNT, PRESENCE, AREA], engine=_engine())
    by_tile = {(r.tile.rsplit("/", 1)[-1], r.question): r for r in result.tiles}
    for name, n in COUNTS.items():
        assert by_tile[(name, COUNT)].answer.value == n
    count, presence, area = result.totals
    assert (count.kind, count.value, count.answer) == ("count", 5, "5")
    assert (count.answered, count.failed, count.skipped) == (3, 1, 0) and not result.ok
    assert (presence.kind, presence.value, presence.answer) == ("bool", True, "yes")
    per_tile = [by_tile[(n, AREA)].answer.value for n in PER_TILE]
    assert area.kind == "area_m2" and area.value == pytest.approx(sum(per_tile))
    assert area.value == pytest.approx(5 * 100 * 100 + 200 * 100 - 100 * 100, rel=2e-3)  # 10 m pixels
    assert count.summary() == "5  (3 tiles answered, 1 failed)"


def test_presence_is_no_only_when_no_tile_says_yes(tiles):
    result = graft_vqa.ask_many([str(tiles / "a.tif"), str(tiles / "c.tif")], PRESENCE, engine=_engine())
    assert (result.total.value, result.total.answer) == (False, "no")


def test_text_answers_are_tallied():
    from graft_vqa.answer import Answer

    records = [TileAnswer(f"t{i}.tif", "Rural or urban?", Answer(answer=a, value=a, kind="text"), "ok")
               for i, a in enumerate(["urban", "rural", "urban"])]
    (total,) = totals(["Rural or urban?"], records)
    assert total.value == {"urban": 2, "rural": 1} and total.answer == "urban: 2, rural: 1"
    mixed = records + [TileAnswer("t9.tif", "Rural or urban?", Answer(answer="3", value=3, kind="count"), "ok")]
    (total,) = totals(["Rural or urban?"], mixed)
    assert total.value is None and "different kinds (count, text)" in total.answer


def test_tiles_outside_the_aoi_are_skipped_not_failed(tiles, tmp_path):
    far_tile = tmp_path / "far.tif"
    from tests.georaster import write_raster
    from affine import Affine

    write_raster(far_tile, crs=UTM18, transform=Affine(10, 0, 500_000, 0, -10, 3_290_000))

    class AOIEngine:
        def __init__(self):
            self.engine = _engine()

        def ask(self, image, question, aoi=None, aoi_crs=None):
            resolve_aoi(aoi, load_tile(image), aoi_crs)  # as the lead's Engine.ask places the AOI
            return self.engine.ask(image, question)

    result = graft_vqa.ask_many([str(tiles / "a.tif"), str(far_tile)], COUNT, engine=AOIEngine(),
                                bbox="400000,3288000,402000,3290000")
    assert [r.status for r in result.tiles] == ["ok", "outside_aoi"]
    assert (result.total.value, result.total.skipped, result.total.failed, result.ok) == (2, 1, 0, True)


def test_table_is_written_atomically_as_csv_or_jsonl(with_bad, tmp_path):
    csv_path, jsonl_path = tmp_path / "r.csv", tmp_path / "r.jsonl"
    result = graft_vqa.ask_many(str(with_bad / "*.tif"), COUNT, engine=_engine(), out=csv_path)
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["tile"].rsplit("/", 1)[-1] for r in rows] == ["a.tif", "b.tif", "broken.tif", "c.tif"]
    assert [r["answer"] for r in rows] == ["2", "3", "", "0"] and rows[2]["status"] == "unreadable"
    result.write_table(jsonl_path)
    lines = [json.loads(line) for line in jsonl_path.read_text().splitlines()]
    assert [line["value"] for line in lines] == [2, 3, None, 0] and lines[0]["kind"] == "count"
    assert lines[0]["area_m2"] == pytest.approx(result.tiles[0].answer.detections[0].area_m2 * 3, rel=1e-6)


def test_bad_table_path_fails_before_any_tile(tiles, tmp_path):
    class NoEngine:
        def ask(self, *a, **k):
            pytest.fail("a tile was answered")

    with pytest.raises(OutputPathError, match="use one of .csv, .jsonl"):
        graft_vqa.ask_many(str(tiles / "*.tif"), COUNT, engine=NoEngine(), out=tmp_path / "r.xlsx")


# --- the command line --------------------------------------------------------------------------
@pytest.fixture
def cli_engine(monkeypatch):
    engine = _engine()
    monkeypatch.setattr(ask_cmd, "build_engine", lambda args: engine)
    return engine


def test_cli_glob_prints_each_tile_and_the_total(cli_engine, with_bad, tmp_path, capsys):
    out = tmp_path / "results.csv"
    assert main(["ask", str(with_bad / "*.tif"), COUNT, "--out", str(out)]) == 1  # one tile failed
    captured = capsys.readouterr()
    assert "tiles:" in captured.err and "/4 [" in captured.err  # the progress bar over tiles
    lines = captured.out.splitlines()
    assert lines[0] == f"{with_bad / 'a.tif'}\t2"
    assert lines[2].startswith(f"{with_bad / 'broken.tif'}\t[unreadable] ")
    assert lines[-1] == "total\t5  (3 tiles answered, 1 failed)"
    assert len(list(csv.DictReader(out.open()))) == 4


def test_cli_folder_json_and_shell_expanded_paths(cli_engine, tiles, capsys):
    assert main(["ask", str(tiles), COUNT, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["value"] for row in report["tiles"]] == [2, 3, 0] and report["total"]["value"] == 5
    assert main(["ask", str(tiles / "a.tif"), str(tiles / "b.tif"), COUNT]) == 0  # a glob the shell expanded
    assert capsys.readouterr().out.splitlines()[-1] == "total\t5  (2 tiles answered)"


def test_cli_glob_matching_nothing_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(ask_cmd, "build_engine", lambda args: pytest.fail("an engine was built"))
    assert main(["ask", str(tmp_path / "nothing" / "*.tif"), COUNT]) == 2
    err = capsys.readouterr().err
    assert "no file matches" in err and err.count("\n") == 1


def test_cli_vector_with_many_tiles_is_refused_before_work(monkeypatch, tiles, tmp_path, capsys):
    monkeypatch.setattr(ask_cmd, "build_engine", lambda args: pytest.fail("an engine was built"))
    assert main(["ask", str(tiles / "*.tif"), COUNT, "--vector", str(tmp_path / "b.gpkg")]) == 2
    assert "--out results.csv" in capsys.readouterr().err and not (tmp_path / "b.gpkg").exists()


def test_cli_aoi_over_many_tiles(monkeypatch, tiles, capsys):
    calls = []

    class Recorder:
        def __init__(self):
            self.engine = _engine()

        def ask(self, image, question, **aoi):
            calls.append(aoi)
            return self.engine.ask(image, question)

    monkeypatch.setattr(ask_cmd, "build_engine", lambda args: Recorder())
    assert main(["ask", str(tiles / "*.tif"), COUNT, "--bbox", "400000,3288000,402000,3290000"]) == 0
    assert len(calls) == 3 and all(c["aoi"].equals(box(400000, 3288000, 402000, 3290000)) for c in calls)
    assert all(c["aoi_crs"] is None for c in calls)


def test_cli_total_says_when_weights_are_untrained(monkeypatch, tiles, capsys):
    from graft_vqa.answer import Answer

    class Untrained:
        def ask(self, image, question, **aoi):
            return Answer(question=question, answer="1", value=1, kind="count",
                          warnings=["GRAFT has random weights (allow_untrained): answers are not meaningful"])

    monkeypatch.setattr(ask_cmd, "build_engine", lambda args: Untrained())
    assert main(["ask", str(tiles / "*.tif"), COUNT]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1].endswith("[untrained weights: these answers are not meaningful]")
    assert captured.err.count("random weights") == 1  # said once, not once per tile
