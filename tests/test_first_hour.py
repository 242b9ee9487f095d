"""A new user's first hour (issue 17): each trap they met, reproduced, and what they get now.

Browser-side checks (badge, banner, progress, GSD advice on the page) are in tests/test_app_browser.py.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from graft_vqa import weights
from graft_vqa.config import UNTRAINED_SEED, EngineConfig
from graft_vqa.engine import Engine
from graft_vqa.interfaces.advice import for_cli
from graft_vqa.interfaces.app.handlers import handle_question, handle_upload
from graft_vqa.interfaces.app.banner import sam_found, weights_banner
from graft_vqa.interfaces.app.messages import error_message
from graft_vqa.interfaces.app.session import EnginePool, UISettings
from graft_vqa.interfaces.cli.main import main as cli_main
from graft_vqa.interfaces.evaluation.run import main as eval_main
from tests.fixtures.rsvqa_data import random_items, write_rsvqa
from tests.synthetic import RectScorer

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "rsvqa_lr_sample"
TILES = ("neon_osbs_029_10cm.tif", "rgbn_5m_utm18n.tif", "rmnp_rgb_epsg4326.tif")
FAKE = ["--answerer", "tests.fixtures.rsvqa_fake:make_answerer", "--no-progress"]
TINY = ["--graft-model", "graft-tiny", "--refine", "none", "--no-progress"]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graft_vqa.interfaces.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


# --- 1. tracebacks: eval --out is checked before any work, with one line -------------------------------
@pytest.mark.parametrize("where", ["/proc/nope", "file/sub", "existing file"])
def test_eval_out_is_checked_before_any_work(where, tmp_path, capsys):
    a_file = tmp_path / "some_file.tif"
    a_file.write_text("keep me")
    out = {"/proc/nope": Path("/proc/nope"), "file/sub": a_file / "sub", "existing file": a_file}[where]
    # the data root does not exist either: the --out error comes first, before any data is read
    assert eval_main(["--data-root", str(tmp_path / "no_data"), "--out", str(out), *FAKE]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and err.count("\n") == 1 and "Errno" not in err
    assert a_file.read_text() == "keep me" and not Path("/proc/nope").exists()


# --- 2. the eval trap: a run that never answered leaves nothing behind -------------------------------------
def test_an_eval_that_fails_before_its_first_answer_leaves_no_folder_and_reruns_cleanly(tmp_path, capsys):
    out = tmp_path / "runs" / "lr"
    args = ["--data-root", str(SAMPLE), "--limit", "6", *TINY, "--out", str(out)]
    assert eval_main(args) == 2  # no weights and no --allow-untrained
    err = capsys.readouterr().err
    assert "graft_sentinel_patch.ckpt" in err and "--allow-untrained" in err and "allow_untrained=" not in err
    assert not (tmp_path / "runs").exists()
    kept = tmp_path / "mine"  # a folder the user made is kept, empty
    kept.mkdir()
    assert eval_main([*args[:-1], str(kept)]) == 2 and list(kept.iterdir()) == []
    capsys.readouterr()

    assert eval_main([*args, "--allow-untrained"]) == 0  # no "pass --resume" trap
    again = tmp_path / "again"
    assert eval_main([*args[:-1], str(again), "--allow-untrained"]) == 0

    # 3. untrained is unmistakable in the report, and untrained runs repeat exactly (seeded)
    first_line = (out / "report.md").read_text().splitlines()[0]
    assert first_line.startswith("> **UNTRAINED WEIGHTS.** 6 of 6 answers came from random weights")
    assert f"seed {UNTRAINED_SEED}" in first_line and "UNTRAINED" in capsys.readouterr().out

    def predictions(folder: Path) -> list[dict]:
        rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if k != "timings"} for row in rows]

    assert predictions(out) == predictions(again) and all(row["untrained"] for row in predictions(out))
    report = json.loads((out / "report.json").read_text())
    assert report["untrained"] == {"n": 6, "of": 6, "seed": UNTRAINED_SEED}


def test_a_trained_report_has_no_untrained_line(tmp_path):
    root = write_rsvqa(tmp_path / "d", "lr", random_items("lr", 1, 2, 3))
    assert eval_main(["--data-root", str(root), "--out", str(tmp_path / "o"), *FAKE]) == 0
    assert (tmp_path / "o" / "report.md").read_text().startswith("# RSVQA-LR")


def test_untrained_engines_repeat_exactly_and_leave_the_callers_rng_alone(shared_data):
    import torch

    tile = shared_data / "tiles" / TILES[1]
    config = EngineConfig.from_options(graft_model="graft-tiny", allow_untrained=True, refine="none")
    torch.manual_seed(1)
    first = Engine(config=config)
    maps = first.scorer.score_maps(first.image_patch(tile).tile, ["building", "road"])
    after_build = torch.rand(3)
    torch.manual_seed(1)
    second = Engine(config=config)
    assert np.array_equal(maps, second.scorer.score_maps(second.image_patch(tile).tile, ["building", "road"]))
    assert torch.equal(after_build, torch.rand(3))  # building the random models did not move the caller's RNG
    a, b = first.ask(tile, "How many buildings are there?"), second.ask(tile, "How many buildings are there?")
    assert a.untrained and b.untrained and a.answer == b.answer
    assert [d.box for d in a.detections] == [d.box for d in b.detections]


# --- 5. the rule planner: a rejection comes before any model or tile loads ----------------------------------
def test_a_rejected_question_loads_no_model_and_reads_no_tile(tmp_path):
    code = ("import sys, graft_vqa\n"
            "a = graft_vqa.ask('no_such_tile.tif', 'how many houses r there')\n"
            "print(a.status, len(a.error.splitlines()), 'torch' in sys.modules, 'rasterio' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["not_understood", "2", "False", "False"], proc.stderr[-2000:]
    # the CLI too: no weights and no --allow-untrained, yet no weights error: nothing was loaded
    cli = _cli("ask", str(tmp_path / "no_such_tile.tif"), "Count the cars please now")
    assert cli.returncode == 1 and "Traceback" not in cli.stderr and "weights" not in cli.stderr
    assert "--planner openai" in cli.stderr and '"How many cars are there?"' in cli.stderr


# --- 6. advice that fits where the user is -----------------------------------------------------------------
def test_one_sam_warning_per_run(shared_data, caplog):
    engine = Engine(scorer=RectScorer({"building": [(10, 30, 10, 30)]}))  # refine="sam", no SAM weights
    with caplog.at_level(logging.WARNING, logger="graft_vqa"):
        answers = [engine.ask(shared_data / "tiles" / name, "How many buildings are there?") for name in TILES]
    said = [r for r in caplog.records if "SAM" in r.getMessage()]
    assert len(said) == 1 and "allow_untrained" not in said[0].getMessage()
    assert all(sum("SAM" in w for w in a.warnings) == 1 for a in answers)  # each answer still says it
    assert not any(a.untrained for a in answers)  # a missing SAM is no reason to call answers untrained


def test_cli_advice_uses_flags_and_never_repeats_a_flag_already_passed(tmp_path, shared_data):
    png = tmp_path / "forest.png"
    Image.open(shared_data / "tiles" / TILES[0]).convert("RGB").save(png)
    proc = _cli("ask", str(png), "How much of the picture is forest?", "--allow-untrained", "--graft-model",
                "graft-tiny")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "--gsd-m 10.0" in proc.stderr and "load_tile" not in proc.stderr and "gsd_m=" not in proc.stderr
    assert "--allow-untrained" not in proc.stderr  # it was passed
    sam = [line for line in proc.stderr.splitlines() if "SAM" in line]
    assert len(sam) == 1 and "--sam-checkpoint PATH" in sam[0] and "--refine none" in sam[0]
    assert "--graft-checkpoint PATH" in proc.stderr and "explicitly" not in proc.stderr


def test_app_messages_hide_the_servers_temporary_paths(tmp_path, monkeypatch):
    uploads = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    path = uploads / ("ab" * 32) / "file.tif"
    from graft_vqa.core.errors import UnreadableTileError

    text = error_message(UnreadableTileError(f"{path} is not a readable raster"), "Could not load file.tif")
    assert "file.tif is not a readable raster" in text and str(uploads) not in text and "ab" * 32 not in text
    named = error_message(UnreadableTileError(f"{tmp_path}/x/session.tif is broken"), names={
        f"{tmp_path}/x/session.tif": "my tile.tif"})
    assert "my tile.tif is broken" in named and str(tmp_path) not in named


# --- 7. the app: timings include model loading; real steps; SAM ticked only with SAM weights ----------------
def test_app_steps_are_real_and_timings_include_model_loading(tmp_path, shared_data, monkeypatch):
    import time

    import graft_vqa.models

    built = []

    def slow_scorer(config):
        time.sleep(0.3)
        built.append(config)
        return RectScorer({"building": [(10, 30, 10, 30)]}), []

    monkeypatch.setattr(graft_vqa.models, "build_default_scorer", slow_scorer)
    engine = Engine(refine="none")
    steps: list[tuple] = []

    def progress(value, desc=None, **_):
        steps.append((value, desc))

    state, _, _, history = handle_upload(str(shared_data / "tiles" / TILES[0]), None, [], 50, tmp_path)
    pool = EnginePool(lambda s: engine)
    history, *_ = handle_question("how many houses r there", state, history, UISettings(), pool, progress)
    assert steps == [((0, 4), "Planning the program")] and not built  # rejected before any model loaded
    assert "not understood" in history[-1]["content"]

    steps.clear()
    history, *_ = handle_question("How many buildings are there?", state, history, UISettings(), pool, progress)
    assert [desc for _, desc in steps] == ["Planning the program", "Loading the models", "Encoding the tile",
                                           "Running the program"]
    assert [value for value, _ in steps] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    text = history[-4]["content"]
    assert text.startswith("**1**") and "loading models 0.3" in text
    models = float(text.split("loading models ")[1].split(" s")[0])
    total = float(text.split("total ")[1].split(" s")[0])
    assert models >= 0.3 and total >= models


def test_the_weights_banner_and_the_sam_box_follow_the_weights_on_disk(isolated_home):
    folder = isolated_home / "weights"
    banner = weights_banner(EngineConfig(allow_untrained=True))
    assert "NOT meaningful" in banner and "graft_naip_patch.ckpt" in banner and f"{folder}/" in banner
    assert "clip_vit_b16_openai.safetensors" in banner and "restart the app" in banner
    assert "sam_vit_b_01ec64.pth" in banner and sam_found(EngineConfig()) is False
    failing = weights_banner(EngineConfig())
    assert "questions will fail" in failing and "--allow-untrained" in failing
    folder.mkdir(parents=True)
    for name in ("graft-naip-patch", "clip-vitb16", "sam-vit_b"):
        (folder / weights.WEIGHTS[name].filename).write_bytes(b"x")
    assert weights_banner(EngineConfig()) == "" and sam_found(EngineConfig()) is True
    assert weights_banner(None) == "" and sam_found(None) is None  # an injected engine brings its own models


# --- 8. weights list / weights path -----------------------------------------------------------------------
def test_weights_list_shows_found_paths_and_missing_folders(isolated_home, capsys):
    folder = isolated_home / "weights"
    folder.mkdir(parents=True)
    (folder / "sam_vit_b_01ec64.pth").write_bytes(b"x")
    assert cli_main(["weights", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert str(folder) in lines[0]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows.keys() == weights.WEIGHTS.keys()
    assert rows["sam-vit_b"].split()[1:] == ["found", str(folder / "sam_vit_b_01ec64.pth")]
    assert "missing" in rows["clip-vitb16"] and f"{folder}/" in rows["clip-vitb16"]
    assert "graft-vqa weights pull clip-vitb16" in rows["clip-vitb16"]


def test_weights_path_of_a_missing_file_gives_the_same_advice_as_ask(capsys):
    assert cli_main(["weights", "path", "clip-vitb16"]) == 2
    err = capsys.readouterr().err
    assert err == f"graft-vqa: error: {for_cli(weights.missing_message('clip-vitb16'))}\n"
    assert "--clip-checkpoint PATH" in err and "--allow-untrained" in err


def test_eval_help_is_graft_vqa_eval(capsys):
    with pytest.raises(SystemExit):
        cli_main(["eval", "--help"])
    assert capsys.readouterr().out.startswith("usage: graft-vqa eval")


def test_the_readme_agrees_with_the_code():
    from graft_vqa.interfaces.evaluation.run import build_parser as eval_parser

    readme = (REPO / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("graft-vqa eval"))
    assert "--out DIR" in line and "[--out" not in line  # shown as required, as the parser says
    assert next(a for a in eval_parser()._actions if "--out" in a.option_strings).required
    assert "Engine(config=graft_vqa.EngineConfig(" in readme
    assert f"`graft_vqa.config.UNTRAINED_SEED` ({UNTRAINED_SEED})" in readme  # the documented seed
    assert "graft-vqa weights list" in readme and "How much of the picture is forest?" in readme
