"""Calibration time against one evaluation of the same split (target: at most 2x).

    python bench/calibrate.py [--data-root DIR] [--graft-model graft-vitb16] [--limit N]

Runs, one after the other and each in a fresh process with random (seeded) GRAFT weights and SAM off:

* one evaluation: ``eval/run_vqa.py`` on every question of the RSVQA-LR sample (5,005 questions, 50 tiles);
* one calibration: ``eval/calibrate.py`` on the same questions (``--split test``, the sample's only split),
  which scores every tile once, searches the thresholds on 80 % of the tiles and answers the held-out
  20 % twice with the sandboxed engine.

Prints both wall and CPU times (user + system, the calibration's figure that other processes on the
machine disturb least), their ratios (target <= 2), each process's peak RSS and the calibration's
phases (from its report.json). Both runs get an empty weights folder (random weights) and their own home.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "rsvqa_lr_sample"


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in GiB) of one child process (its own rusage, via wait4)."""
    t0 = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{command[1]} failed with status {child.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, default=SAMPLE, help="RSVQA-LR folder")
    p.add_argument("--graft-model", default="graft-vitb16", help="GRAFT architecture (random weights)")
    p.add_argument("--limit", type=int, default=None, help="first N questions only")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-calibrate-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "weights").mkdir()
        common = ["--data-root", str(args.data_root), "--allow-untrained", "--graft-model", args.graft_model,
                  "--refine", "none", "--no-progress"] + (["--limit", str(args.limit)] if args.limit else [])
        runs = {}
        for name, command in (
                ("evaluation", [sys.executable, "eval/run_vqa.py", "--out", str(tmp_path / "eval"), "--no-fsync"]),
                ("calibration", [sys.executable, "eval/calibrate.py", "--split", "test",
                                 "--out", str(tmp_path / "thresholds.json")])):
            env = {**os.environ, "GRAFT_VQA_WEIGHTS": str(tmp_path / "weights"),
                   "GRAFT_VQA_HOME": str(tmp_path / f"home-{name}")}
            runs[name] = _timed(command + common, env)
            wall, cpu, rss = runs[name]
            print(f"{name}: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {rss:.2f} GiB, load average "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
        report = json.loads((tmp_path / "thresholds_report" / "report.json").read_text())
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in report["timings"].items())
        search = report["search"]
        print(f"calibration phases: {phases}")
        print(f"search: {search['programs_run']} programs run for {search['answers_asked']} answers; score maps: "
              f"{search['maps']['calls']} scorer calls on {search['maps']['tiles']} tiles, "
              f"{search['maps']['recomputed']} re-scored")
        print(f"held-out OA {report['heldout']['before']['OA']:.4f} -> {report['heldout']['after']['OA']:.4f} "
              f"on {report['heldout']['questions']} questions")
        (ew, ec, _), (cw, cc, _) = runs["evaluation"], runs["calibration"]
        print(f"ratio calibration/evaluation: wall {cw / ew:.2f}, CPU {cc / ec:.2f} (target <= 2)")


if __name__ == "__main__":
    main()
