"""The ``graft-vqa`` command line: help, version, weights, and clear errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from graft_vqa import __version__
from graft_vqa.cli import main


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rgbn_5m_utm18n.tif"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graft_vqa.cli", *args], capture_output=True, text=True,
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
    out = subprocess.run([sys.executable, "-m", "graft_vqa.cli", "ask", str(EXAMPLE),
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
