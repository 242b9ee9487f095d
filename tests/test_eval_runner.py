"""The evaluation run: end to end on the real LR sample, kill and resume, shards and merge, bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graft_vqa.interfaces.evaluation.report import TIMING_FIELDS
from graft_vqa.interfaces.evaluation.rsvqa import load_rsvqa
from graft_vqa.interfaces.evaluation.run import main
from graft_vqa.interfaces.evaluation.runner import Selection, run, select
from graft_vqa.core.errors import TileError
from tests.fixtures.rsvqa_data import random_items, write_rsvqa
from tests.fixtures.rsvqa_fake import ScriptedAnswerer

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "rsvqa_lr_sample"
FAKE = ["--answerer", "tests.fixtures.rsvqa_fake:make_answerer", "--no-progress"]


def _script(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "eval" / "run_vqa.py"), *args]


def _env(**extra: str) -> dict[str, str]:
    """The environment of a script run: the fake answerer's module (tests.fixtures) importable."""
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def _report(out: Path) -> dict:
    rep = json.loads((out / "report.json").read_text())
    return {k: v for k, v in rep.items() if k not in TIMING_FIELDS}


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def test_real_sample_end_to_end_accounts_for_every_active_question(tmp_path: Path) -> None:
    out = tmp_path / "full"
    proc = subprocess.run(_script("--benchmark", "rsvqa", "--data-root", str(SAMPLE), "--out", str(out), *FAKE),
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    raw = json.loads((SAMPLE / "LR_split_test_questions.json").read_text())["questions"]
    active = sorted(q["id"] for q in raw if q["active"])
    recs = _lines(out)
    assert sorted(r["qid"] for r in recs) == active  # each active question exactly once
    rep = json.loads((out / "report.json").read_text())
    assert rep["accounting"]["expected"] == rep["accounting"]["answered"] == 5005
    assert rep["failures"]["n"] == sum(r["failed"] for r in recs) > 0
    assert rep["metrics"]["correct"] == sum(r["correct"] for r in recs)
    assert sum(v["n"] for v in rep["metrics"]["per_type"].values()) == 5005
    assert "| **OA** | 5005 |" in (out / "report.md").read_text()
    assert "5005/5005 questions" in proc.stdout


def test_kill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    common = ["--data-root", str(SAMPLE), "--limit", "400", "--types", "presence,count,comp"]
    assert main([*common, "--out", str(tmp_path / "ref"), *FAKE]) == 0
    out = tmp_path / "killed"
    env = _env(RSVQA_FAKE_DELAY_S="0.01")
    proc = subprocess.Popen(_script(*common, "--out", str(out), *FAKE), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pred = out / "predictions.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not pred.exists() or pred.read_text().count("\n") < 60):
        time.sleep(0.02)
    proc.kill()
    proc.wait(timeout=10)
    n_before = pred.read_text().count("\n")
    assert 60 <= n_before < 400, "the run should have been killed part-way"
    assert not (out / "report.json").exists()
    with open(pred, "a") as f:
        f.write('{"qid": 399, "correct": tr')  # a torn last line, as a kill during a write leaves
    assert main([*common, "--out", str(out), "--resume", *FAKE]) == 0
    recs = _lines(out)
    assert len(recs) == len({r["qid"] for r in recs}) == 400
    assert _report(out) == _report(tmp_path / "ref")


def test_shards_are_image_disjoint_and_merge_to_the_unsharded_report(tmp_path: Path) -> None:
    root = write_rsvqa(tmp_path / "data", "hr", random_items("hr", seed=5, n_images=7, per_image=6))
    base = ["--data-root", str(root), "--limit", "35", *FAKE]
    assert main([*base, "--out", str(tmp_path / "all")]) == 0
    shard_imgs = []
    for i in range(3):
        assert main([*base, "--shard", f"{i}/3", "--out", str(tmp_path / f"s{i}")]) == 0
        shard_imgs.append({r["img_id"] for r in _lines(tmp_path / f"s{i}")})
    assert all(not (a & b) for j, a in enumerate(shard_imgs) for b in shard_imgs[j + 1:])
    assert sum(len(_lines(tmp_path / f"s{i}")) for i in range(3)) == 35
    assert main(["merge", *(str(tmp_path / f"s{i}") for i in range(3)), "--out", str(tmp_path / "m")]) == 0
    assert _report(tmp_path / "m") == _report(tmp_path / "all")
    assert main(["merge", str(tmp_path / "s0"), "--out", str(tmp_path / "m0")]) == 1  # shards missing
    assert main([*base, "--shard", "1/2", "--out", str(tmp_path / "h1")]) == 0
    assert main(["merge", str(tmp_path / "s0"), str(tmp_path / "h1"), "--out", str(tmp_path / "mx")]) == 2
    timings = [r["timings"] for r in _lines(tmp_path / "s0")]
    assert all("total_s" in t and "total" not in t for t in timings)  # one total-time field


def test_each_image_is_loaded_once_and_its_questions_asked_in_a_row(tmp_path: Path) -> None:
    items = random_items("lr", seed=9, n_images=4, per_image=5)
    items = items[::2] + items[1::2]  # interleave images in id order
    data = load_rsvqa(write_rsvqa(tmp_path / "d", "lr", items), "test")
    fake = ScriptedAnswerer()
    run(data, data.questions, fake, tmp_path / "o", load_image=fake.load_image, progress=False)
    assert [p.name for p in fake.loaded] == ["0.tif", "1.tif", "2.tif", "3.tif"]
    images = [img for img, _ in fake.asked]
    assert images == sorted(images) and len(images) == 20


def test_unreadable_tile_fails_its_questions_and_the_run_goes_on(tmp_path: Path) -> None:
    data = load_rsvqa(write_rsvqa(tmp_path / "d", "lr", random_items("lr", 4, 3, 4)), "test")
    fake = ScriptedAnswerer()

    def load(path: Path, gsd: float):
        if path.name == "1.tif":
            raise TileError(f"{path} is truncated")
        return fake.load_image(path, gsd)

    run(data, data.questions, fake, tmp_path / "o", load_image=load, progress=False)
    recs = _lines(tmp_path / "o")
    assert len(recs) == 12
    assert {r["status"] for r in recs if r["img_id"] == 1} == {"tile_error"}
    assert not any(r["correct"] for r in recs if r["img_id"] == 1)


def test_geochat_protocol_uses_test_phili_and_its_types(tmp_path: Path) -> None:
    root = write_rsvqa(tmp_path / "d", "hr", random_items("hr", 8, 5, 8), split="test_phili")
    assert main(["--data-root", str(root), "--protocol", "geochat", "--out", str(tmp_path / "o"), *FAKE]) == 0
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["dataset"]["split"] == "test_phili"
    assert set(rep["metrics"]["per_type"]) == {"presence", "comp"}
    n = sum(1 for it in random_items("hr", 8, 5, 8) if it[1] in ("presence", "comp"))
    assert rep["accounting"]["answered"] == n


def test_selection_limit_applies_before_the_shard() -> None:
    data_items = [type("Q", (), {"qid": i, "img_id": i // 3, "type": "count"})() for i in range(12)]
    kept = [q.qid for i in range(2) for q in select(data_items, Selection(limit=7, shard=(i, 2)))]
    assert sorted(kept) == list(range(7))


def test_bad_input_gets_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    env_free = {k: v for k, v in _env().items() if k != "GRAFT_VQA_RSVQA_ROOT"}
    proc = subprocess.run(_script("--out", str(tmp_path / "o"), *FAKE), cwd=REPO, env=env_free,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--data-root" in proc.stderr and "Traceback" not in proc.stderr
    assert main(["--data-root", str(tmp_path / "none"), "--out", str(tmp_path / "o"), *FAKE]) == 2
    assert "rsvqa.sylvainlobry.com" in capsys.readouterr().err
    root = write_rsvqa(tmp_path / "d", "lr", random_items("lr", 1, 2, 3))
    assert main(["--data-root", str(root), "--out", str(tmp_path / "r"), *FAKE]) == 0
    assert main(["--data-root", str(root), "--out", str(tmp_path / "r"), *FAKE]) == 2  # no silent overwrite
    assert main(["--data-root", str(root), "--limit", "2", "--out", str(tmp_path / "r"), "--resume", *FAKE]) == 2
    assert "different settings: limit (was None, now 2)" in capsys.readouterr().err
    assert main(["--data-root", str(root), "--shard", "3/2", "--out", str(tmp_path / "s"), *FAKE]) == 2


@pytest.mark.parametrize("extra,message", [
    (["--types", "presence,comparison"], "comparison"),
    (["--types", ","], "no type"),
    (["--limit", "0"], "--limit"),
    (["--limit", "-3"], "--limit"),
])
def test_bad_selection_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture, extra, message) -> None:
    root = write_rsvqa(tmp_path / "d", "lr", random_items("lr", 1, 2, 3))
    assert main(["--data-root", str(root), "--out", str(tmp_path / "o"), *extra, *FAKE]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if "--types" in extra:
        assert "presence, comp, count, rural_urban" in err  # names the valid types
    assert not (tmp_path / "o" / "predictions.jsonl").exists()
