"""graft-vqa calibrate: the search recovers thresholds known by construction, and the file it writes works."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from graft_vqa.interfaces.cli import main as cli_main
from graft_vqa.interfaces.evaluation.calibrate.questions import program_concepts, split_tiles
from graft_vqa.interfaces.evaluation.calibrate.run import build_parser, calibrate
from graft_vqa.thresholds import load_thresholds

from .calibration_scenes import BEST, ROAD_AREA, write_scenes


def _run(tmp_path: Path, *options: str, n_tiles: int = 24):
    root, scorer, truth = write_scenes(tmp_path / "data", n_tiles=n_tiles)
    out = tmp_path / "thresholds.json"
    args = build_parser().parse_args(["--data-root", str(root), "--split", "test", "--out", str(out),
                                      "--holdout", "0.25", "--min-questions", "10", "--refine", "none",
                                      "--no-progress", *options])
    report = calibrate(args, scorer=scorer)
    return report, load_thresholds(out), scorer, out


@pytest.fixture(scope="module")
def absolute(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("absolute"), "--modes", "absolute")


def test_the_grid_holds_a_right_cut_for_every_concept(absolute):
    report, *_ = absolute
    values = report["search"]["space"]["values"]["absolute"]
    for concept, (low, high) in BEST.items():
        assert any(low < v <= high for v in values), f"no candidate in ({low}, {high}] for {concept}: {values}"


def test_search_recovers_the_per_concept_thresholds_known_by_construction(absolute):
    report, table, _, _ = absolute
    for concept, (low, high) in BEST.items():
        chosen = table.lookup(concept)
        assert chosen.mode == "absolute" and low < chosen.value <= high, (concept, chosen)
    # no single cut fits both, so at least one of them has its own; the other may be the global one
    sources = {report["concepts"][c]["source"] for c in BEST}
    assert "calibrated" in sources and sources <= {"calibrated", "global: none better"}, sources
    road = table.lookup("road")
    assert ROAD_AREA[0] < road.min_area_m2 <= ROAD_AREA[1] and road.value <= 0.30, road
    # on the search tiles every question about these concepts is answered right
    for concept in (*BEST, "road"):
        c = report["concepts"][concept]
        assert c["search_correct"] == c["questions"] > 0


def test_concepts_with_too_few_questions_keep_the_global_value(absolute):
    report, table, _, _ = absolute
    parking = report["concepts"]["parking"]
    assert parking["source"] == "global: too few questions" and parking["questions"] < 10
    assert table.entry("parking") is None and table.lookup("parking") == table.global_threshold
    assert (parking["mode"], parking["value"], parking["min_area_m2"]) == (
        table.global_threshold.mode, table.global_threshold.value, table.global_threshold.min_area_m2)
    assert table.record["uncalibrated"]["parking"]["questions"] == parking["questions"]


def test_held_out_accuracy_after_is_at_least_before(absolute):
    report, *_ = absolute
    held = report["heldout"]
    assert held["tiles"] == 6 and held["questions"] > 0
    assert held["after"]["OA"] >= held["before"]["OA"]
    assert held["after"]["OA"] > held["before"]["OA"]  # the engine's 0.12 fits neither building nor water area
    for concept in (*BEST, "road"):
        after = held["per_concept"][concept]["after"]
        assert after["correct"] == after["n"] > 0, (concept, held["per_concept"][concept])
    # the in-process search answers exactly as the sandboxed engine on the held-out tiles
    assert held["agreement"]["same"] == held["agreement"]["checked"] == held["questions"]


def test_each_tile_is_scored_once(absolute):
    report, _, scorer, _ = absolute
    paths = [path for path, _ in scorer.calls]
    assert len(paths) == len(set(paths)) == 24  # one call per tile, search and held-out runs included
    assert report["search"]["maps"] == {"calls": 24, "tiles": 24, "recomputed": 0}


def test_the_file_is_self_describing(absolute):
    report, table, _, out = absolute
    data = json.loads(out.read_text())
    assert data["format"] == "graft-vqa-thresholds" and data["version"] == 1
    assert data["model"]["weights_id"] == "synthetic-scenes-v1"
    assert data["benchmark"]["split"] == "test" and data["benchmark"]["heldout_tiles"] == 6
    assert data["search"]["space"]["values"]["absolute"] and data["created"]
    assert data["heldout"]["after"]["OA"] == report["heldout"]["after"]["OA"]
    calibrated = {c for c, v in report["concepts"].items() if v["source"] == "calibrated"}
    assert set(data["concepts"]) == calibrated and set(data["uncalibrated"]) == set(report["concepts"]) - calibrated
    for name in calibrated:
        assert data["concepts"][name]["questions"] == report["concepts"][name]["questions"] > 0
    md = (out.parent / "thresholds_report" / "report.md").read_text()
    assert "| building |" in md and "Held-out accuracy" in md
    assert (out.parent / "thresholds_report" / "heldout_after" / "predictions.jsonl").is_file()


def test_all_modes_answer_the_search_tiles_right(tmp_path):
    report, table, _, _ = _run(tmp_path, n_tiles=16)
    assert set(report["search"]["space"]["values"]) == {"absolute", "relative", "contrast"}
    for concept in (*BEST, "road"):
        c = report["concepts"][concept]
        assert c["search_correct"] == c["questions"], (concept, c)
    assert report["heldout"]["after"]["OA"] >= report["heldout"]["before"]["OA"]


def test_program_concepts_and_what_the_search_may_run():
    assert program_concepts('def execute_command(image_patch):\n    return len(image_patch.find("road"))\n') == (
        ("road",), True)
    related = ('def execute_command(image_patch):\n    a = image_patch.find("building")\n'
               '    return len(image_patch.filter_related(a, "is_next_to", image_patch.find("road"))) > 0\n')
    assert program_concepts(related) == (("building", "road"), True)
    crop = 'def execute_command(image_patch):\n    return image_patch.crop(0, 0, 5, 5).exists("road")\n'
    assert program_concepts(crop)[1] is False
    dynamic = 'def execute_command(image_patch):\n    n = "road"\n    return image_patch.exists(n)\n'
    assert program_concepts(dynamic)[1] is False


def test_tiles_are_held_out_whole_and_stably():
    search, held = split_tiles(range(50), 0.2, seed=0)
    assert len(held) == 10 and not set(search) & set(held) and sorted(search + held) == list(range(50))
    assert split_tiles(range(50), 0.2, seed=0) == (search, held)
    assert split_tiles(range(50), 0.2, seed=1)[1] != held
    with pytest.raises(ValueError, match="holdout"):
        split_tiles(range(5), 1.0)


@pytest.mark.parametrize("options, message", [
    (["--modes", "absolute,fuzzy"], "unknown mode"),
    (["--planner", "openai"], "rule planner"),
    (["--min-questions", "0"], "min-questions"),
])
def test_bad_calibrate_options_are_one_line_errors(tmp_path, capsys, options, message):
    root, _, _ = write_scenes(tmp_path / "data", n_tiles=2)
    code = cli_main(["calibrate", "--data-root", str(root), "--split", "test", "--out", str(tmp_path / "t.json"),
                     *options])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
