"""How long a new user waits for the rule planner to reject a question (issue 17).

The rule planner plans before any model or tile loads, so a question it cannot parse is answered at
once. Measured in fresh processes, as a user meets it: ``graft-vqa ask TILE QUESTION`` on the command
line, and ``graft_vqa.ask(...)`` from Python. The baseline is what used to happen: the models (ViT-B/16,
random weights) load first, then the question is rejected.

    .venv/bin/python bench/rejection.py
"""
from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TILE = REPO / "examples" / "rgbn_5m_utm18n.tif"
QUESTION = "how many houses r there"
RUNS = 5
TARGET_S = 1.0

BASELINE = f"""
import graft_vqa
engine = graft_vqa.Engine(allow_untrained=True, refine="none")
engine.image_patch({str(TILE)!r})  # models and tile first, as before the fix
print(engine.ask({str(TILE)!r}, {QUESTION!r}).status)
"""
PYTHON = f"""
import graft_vqa
print(graft_vqa.ask({str(TILE)!r}, {QUESTION!r}, allow_untrained=True).status)
"""


def _time(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one fresh process; CPU time does not grow with other load."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert "not_understood" in proc.stdout + proc.stderr or "did not understand" in proc.stderr, proc.stderr[-500:]
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "GRAFT_VQA_HOME": home}
        env.pop("GRAFT_VQA_WEIGHTS", None)
        cli = [sys.executable, "-m", "graft_vqa.interfaces.cli", "ask", str(TILE), QUESTION]
        figures = {
            "graft-vqa ask (CLI)": [_time(cli, env) for _ in range(RUNS)],
            "graft_vqa.ask (Python)": [_time([sys.executable, "-c", PYTHON], env) for _ in range(RUNS)],
            "baseline: models first": [_time([sys.executable, "-c", BASELINE], env) for _ in range(2)],
        }
    base = statistics.median(wall for wall, _ in figures["baseline: models first"])
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall times grow with it, CPU times do not)")
    for name, runs in figures.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        verdict = "" if name.startswith("baseline") else (" ✔" if cpu < TARGET_S else " ✘") + f" (CPU target < {TARGET_S} s)"
        print(f"{name:26} median wall {wall:6.2f} s, CPU {cpu:6.2f} s over {len(runs)} fresh processes; "
              f"wall ratio to baseline {wall / base:.3f}{verdict}")


if __name__ == "__main__":
    main()
