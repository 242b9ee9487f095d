"""The ``graft-vqa`` command line: help, version, weights, and clear errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graft_vqa import __version__
from graft_vqa.interfaces.cli import main


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rgbn_5m_utm18n.tif"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graft_vqa.interfaces.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_version_and_help_list_the_subcommands():
    out = run_cli("--version")
    assert out.returncode == 0 and __version__ in out.stdout
    helptext = run_cli("--help").stdout
    for command in ("ask", "eval", "app", "weights"):
        assert command in helptext


def test_weights_list_names_every_registry_entry(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("GRAFT_VQA_HOME", str(tmp_path))
    assert main(["weights", "list"]) == 0
    listing = capsys.readouterr().out
    for name in ("graft-naip-patch", "clip-vitb16", "sam-vit_h"):
        assert name in listing


def test_weights_path_offline_is_a_clear_error(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("GRAFT_VQA_HOME", str(tmp_path))
    monkeypatch.delenv("GRAFT_VQA_WEIGHTS", raising=False)
    assert main(["weights", "path", "sam-vit_b"]) == 2
    err = capsys.readouterr().err
    assert "sam_vit_b_01ec64.pth" in err and "Traceback" not in err


def test_ask_missing_tile_is_a_clear_error(tmp_path):
    out = run_cli("ask", str(tmp_path / "nope.tif"), "Is there a road?", "--allow-untrained",
                  "--graft-model", "graft-tiny", "--refine", "none")
    assert out.returncode == 2
    assert "nope.tif" in out.stderr and "Traceback" not in out.stderr


def test_ask_without_weights_says_what_to_fetch(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "GRAFT_VQA_WEIGHTS"}
    env["GRAFT_VQA_HOME"] = str(tmp_path / "home")
    out = subprocess.run([sys.executable, "-m", "graft_vqa.interfaces.cli", "ask", str(EXAMPLE),
                          "Is there a road?", "--refine", "none"], capture_output=True, text=True, timeout=300,
                         env=env)
    assert out.returncode == 2
    assert "graft_naip_patch.ckpt" in out.stderr and "--allow-untrained" in out.stderr


@pytest.mark.parametrize("argv", [["ask"], ["weights", "fetch"], ["frobnicate"]])
def test_bad_usage_exits_with_usage_message(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


@pytest.mark.parametrize("command", ["eval", "app"])
def test_eval_and_app_options_reach_their_own_parsers(command):
    out = run_cli(command, "--help")
    assert out.returncode == 0, out.stderr
    assert "--help" in out.stdout and ("--data-root" in out.stdout or "--port" in out.stdout)


def test_ask_json_and_geojson_outputs(tmp_path):
    out_geojson = tmp_path / "detections.geojson"
    out = run_cli("ask", str(EXAMPLE), "How many buildings are there?", "--graft-model", "graft-tiny",
                  "--allow-untrained", "--refine", "none", "--threshold", "-1", "--json",
                  "--geojson", str(out_geojson))
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["kind"] == "count" and answer["error"] is None
    assert "def execute_command(image_patch)" in answer["program"]
    assert any("random weights" in w for w in answer["warnings"])
    collection = json.loads(out_geojson.read_text())
    assert collection["type"] == "FeatureCollection"
    assert len(collection["features"]) == answer["value"] == len(answer["detections"])
    assert collection["properties"]["rfc7946"] is True and "crs" not in collection  # WGS84 lon/lat
    assert collection["properties"]["source_crs"] == "EPSG:32618"


def test_building_the_parser_does_not_import_torch():
    code = "import sys; from graft_vqa.interfaces.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_graft_model_choices_match_the_registry():
    from graft_models import GRAFT_MODELS
    from graft_vqa.config import GRAFT_MODEL_NAMES

    assert GRAFT_MODEL_NAMES == tuple(GRAFT_MODELS)


@pytest.mark.parametrize("value", ["-1", "0", "nan", "ten"])
def test_gsd_must_be_a_positive_number(value, capsys):
    with pytest.raises(SystemExit) as info:
        main(["ask", "tile.tif", "Is there water?", "--gsd-m", value])
    assert info.value.code == 2
    assert "--gsd-m" in capsys.readouterr().err
