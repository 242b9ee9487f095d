"""One end-to-end run of eval/run_vqa.py with the real engine (rule planner, tiny random GRAFT, no SAM)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from graft_vqa.interfaces.evaluation.metrics import is_correct

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "rsvqa_lr_sample"


def test_real_engine_answers_the_first_questions_of_the_real_sample(tmp_path: Path) -> None:
    env = {**os.environ, "GRAFT_VQA_WEIGHTS": str(tmp_path / "weights"), "GRAFT_VQA_HOME": str(tmp_path / "home")}
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "eval" / "run_vqa.py"), "--benchmark", "rsvqa", "--data-root", str(SAMPLE),
           "--limit", "40", "--planner", "rules", "--graft-model", "graft-tiny", "--allow-untrained",
           "--refine", "none", "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    raw = json.loads((SAMPLE / "LR_split_test_questions.json").read_text())["questions"]
    assert sorted(r["qid"] for r in recs) == [q["id"] for q in raw if q["active"]][:40]
    assert not [r for r in recs if r["status"] == "exception"], "the engine raised instead of answering"
    ok = [r for r in recs if not r["failed"]]
    assert len(ok) >= 30, {r["status"] for r in recs}
    for r in ok:
        assert r["program_id"] and r["prediction"]
        assert r["correct"] == is_correct("lr", r["type"], r["gt"], r["prediction"], r["value"])
        if r["type"] == "count":
            assert isinstance(r["value"], int) and not isinstance(r["value"], bool)
        if r["type"] in ("presence", "comp"):
            assert r["prediction"] in ("yes", "no")
    by_text: dict[str, set] = {}
    for r in ok:
        by_text.setdefault(r["question"], set()).add(r["program_id"])
    assert all(len(ids) == 1 for ids in by_text.values())  # one program per question text
    rep = json.loads((out / "report.json").read_text())
    assert rep["accounting"]["complete"] and rep["system"]["graft_model"] == "graft-tiny"
    assert rep["system"]["graft_weights"] == "graft-sentinel-patch"  # LR is Sentinel-2 imagery
    assert "graft_sentinel_patch.ckpt" in proc.stderr  # the untrained warning names the file it looked for
    assert rep["throughput"]["questions"] == 40 and rep["timings"]["total_s"] > 0
