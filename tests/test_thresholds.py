"""thresholds.json: per-concept thresholds in find, the weights check, and clear errors for bad files and modes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from graft_vqa import Engine, EngineConfig, FindConfig
from graft_vqa.core.errors import ConfigError, ThresholdsError
from graft_vqa.interfaces.cli import main as cli_main
from graft_vqa.thresholds import Threshold, ThresholdTable, load_thresholds, table_from_dict

from .synthetic import RectScorer

# "building" scores 0.5 in its rectangle; "water area" only 0.05: one absolute cut cannot find both
IMAGE = np.full((64, 64, 3), 90, np.uint8)


class LevelScorer(RectScorer):
    weights_id = "levels-v1"

    def score_maps(self, tile, queries):
        maps = super().score_maps(tile, queries)
        for i, q in enumerate(queries):
            if q == "water area":
                maps[i] *= 0.1
        return maps


def _scorer() -> LevelScorer:
    return LevelScorer({"building": [(5, 15, 5, 15), (30, 40, 30, 40)], "water area": [(40, 60, 5, 25)]})


def _file(tmp_path: Path, concepts: dict, glob: dict | None = None, weights_id: str = "levels-v1", **extra) -> Path:
    data = {"format": "graft-vqa-thresholds", "version": 1, "model": {"weights_id": weights_id, "graft_model": "x"},
            "global": glob or {"mode": "absolute", "value": 0.3, "min_area_m2": 0.0}, "concepts": concepts, **extra}
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(data))
    return path


def test_each_concept_gets_its_threshold_and_others_the_global_one(tmp_path):
    path = _file(tmp_path, {"Water  Area": {"mode": "absolute", "value": 0.02, "min_area_m2": 0.0, "questions": 40}})
    engine = Engine(scorer=_scorer(), refine="none", thresholds=str(path))
    assert engine.ask(IMAGE, "How many buildings are there?").answer == "2"  # global 0.3 < 0.5
    assert engine.ask(IMAGE, "Is there a water area?").answer == "yes"  # its own 0.02 < 0.05
    plain = Engine(scorer=_scorer(), refine="none", threshold=0.3)
    assert plain.ask(IMAGE, "Is there a water area?").answer == "no"
    assert not any("thresholds" in w for w in engine.ask(IMAGE, "Is there a road?").warnings)


def test_min_area_and_modes_come_from_the_file(tmp_path):
    # the buildings are 100 px: a minimum area of 150 px (gsd 1 m) drops them; relative 0.5 finds them
    path = _file(tmp_path, {"building": {"mode": "relative", "value": 0.5, "min_area_m2": 150.0}})
    engine = Engine(scorer=_scorer(), refine="none", thresholds=str(path), gsd_m=1.0)
    assert engine.ask(IMAGE, "How many buildings are there?").answer == "0"
    path = _file(tmp_path, {"building": {"mode": "relative", "value": 0.5, "min_area_m2": 50.0}})
    assert Engine(scorer=_scorer(), refine="none", thresholds=str(path), gsd_m=1.0).ask(
        IMAGE, "How many buildings are there?").answer == "2"


def test_lookup_ignores_case_spacing_and_a_plural_s():
    table = table_from_dict({"format": "graft-vqa-thresholds", "version": 1, "model": {"weights_id": "w"},
                             "global": {"mode": "absolute", "value": 0.1},
                             "concepts": {"Parking Lot": {"mode": "contrast", "value": 0.6, "min_area_m2": 10}}})
    own = Threshold("contrast", 0.6, 10.0)
    assert table.lookup("parking  lot") == table.lookup("parking lots") == own
    assert table.lookup("road") == table.global_threshold == Threshold("absolute", 0.1, 0.0)
    config = table.config_for("parking lot", FindConfig(min_pixels=2))
    assert (config.threshold_mode, config.contrast_threshold, config.min_area_m2, config.min_pixels) == (
        "contrast", 0.6, 10.0, 2)


def test_a_file_for_other_weights_warns_on_every_answer(tmp_path):
    path = _file(tmp_path, {}, weights_id="graft-vitb16[123:abc]+clip-vitb16[456:def]+template=raw")
    engine = Engine(scorer=_scorer(), refine="none", thresholds=str(path))
    for question in ("How many buildings are there?", "Is there a water area?", "What is it?"):
        answer = engine.ask(IMAGE, question)
        warning = [w for w in answer.warnings if "calibrated for other weights" in w]
        assert len(warning) == 1 and "levels-v1" in warning[0] and "graft-vitb16[123:abc]" in warning[0]
        assert "recalibrate" in warning[0]


def test_save_and_load_round_trip(tmp_path):
    table = ThresholdTable(Threshold("absolute", 0.08), {"road": Threshold("relative", 0.7, 400.0)},
                           {"weights_id": "w1"}, record={"benchmark": {"name": "rsvqa"}, "concepts": {
                               "road": {"questions": 31}}})
    path = table.save(tmp_path / "sub" / "t.json")
    back = load_thresholds(path)
    assert back.lookup("road") == Threshold("relative", 0.7, 400.0) and back.global_threshold.value == 0.08
    data = json.loads(path.read_text())
    assert data["concepts"]["road"]["questions"] == 31 and data["benchmark"] == {"name": "rsvqa"}
    assert back.path == str(path) and back.weights_id == "w1"


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON (line 1"),
    (json.dumps({"hello": 1}), "is not a graft-vqa thresholds file"),
    (json.dumps({"format": "graft-vqa-thresholds", "version": 7}), "format version 7"),
    (json.dumps({"format": "graft-vqa-thresholds", "version": 1, "global": {"mode": "absolute", "value": 0.1}}),
     "model.weights_id"),
    (json.dumps({"format": "graft-vqa-thresholds", "version": 1, "model": {"weights_id": "w"},
                 "global": {"mode": "absolute", "value": 0.1},
                 "concepts": {"road": {"mode": "fuzzy", "value": 0.1}}}), "concept 'road': unknown mode 'fuzzy'"),
    (json.dumps({"format": "graft-vqa-thresholds", "version": 1, "model": {"weights_id": "w"},
                 "global": {"mode": "relative", "value": 1.5}}), "between 0 and 1"),
    (json.dumps({"format": "graft-vqa-thresholds", "version": 1, "model": {"weights_id": "w"},
                 "global": {"mode": "absolute", "value": "0.1"}}), "value must be a finite number"),
    (json.dumps({"format": "graft-vqa-thresholds", "version": 1, "model": {"weights_id": "w"}}), '"global" must be'),
])
def test_malformed_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ThresholdsError) as info:
        Engine(scorer=_scorer(), thresholds=str(path))
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(ThresholdsError, match="does not exist; make one with `graft-vqa calibrate`"):
        Engine(scorer=_scorer(), thresholds=str(tmp_path / "nope.json"))


def test_cli_reports_bad_files_and_unknown_modes_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    tile = tmp_path / "t.png"
    from PIL import Image

    Image.fromarray(IMAGE).save(tile)
    assert cli_main(["ask", str(tile), "Is there a road?", "--thresholds", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("graft-vqa: error:") and "is not valid JSON" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["ask", str(tile), "Is there a road?", "--threshold-mode", "fuzzy"])
    assert exit_info.value.code == 2 and "invalid choice: 'fuzzy'" in capsys.readouterr().err


def test_unknown_modes_are_config_errors():
    with pytest.raises(ConfigError, match="unknown threshold_mode 'fuzzy'; use one of absolute, relative, contrast"):
        FindConfig(threshold_mode="fuzzy")
    with pytest.raises(ConfigError, match="unknown threshold_mode"):
        Engine(scorer=_scorer(), threshold_mode="fuzzy")
    with pytest.raises(ConfigError, match="unknown refine 'yes'"):
        EngineConfig.from_options(refine="yes")
