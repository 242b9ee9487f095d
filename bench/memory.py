"""Host memory a program leaves behind: the review's 195-name ``find`` program, through the engine.

Usage: ``python bench/memory.py [--names 195] [--unbounded]``. For the 515x403 example tile and a
2048x2048 tile, asks one question whose program calls ``find('bloat ' + str(i))`` for ``--names``
names and prints what the host still holds afterwards: Python and numpy allocations
(``tracemalloc``) and the resident set (RSS). ``--unbounded`` keeps what a question cached instead of
trimming it to ``find_cache_mb`` when the question ends (the caches' working bounds, 512 MB of maps
and 256 MB of instances per tile, still apply). Target: < 20 MB retained.
"""
from __future__ import annotations

import argparse
import gc
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from graft_vqa import Engine
from graft_vqa.config import EngineConfig
from graft_vqa.planner.program import Program

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rgbn_5m_utm18n.tif"


class BlobScorer:
    """Four bright squares per name, placed by the name (full-resolution maps, like a real scorer's)."""

    def score_maps(self, tile, queries):
        maps = np.zeros((len(queries), tile.height, tile.width), dtype=np.float32)
        for i, name in enumerate(queries):
            rng = np.random.default_rng(sum(map(ord, name)) * 7919)
            for r, c in rng.integers(0, [tile.height - 12, tile.width - 12], size=(4, 2)):
                maps[i, r:r + 10, c:c + 10] = 0.5
        return maps


WARM_UP = "def execute_command(image_patch):\n    return len(image_patch.find('warm-up'))\n"
"""Runs find once before measuring, so what find loads for good on first use is there already."""


class Bloat:
    """Plans the review's program for every question but "warm-up"."""

    deterministic = True
    prompt_version = "bench"
    planner_id = "bloat"

    def __init__(self, names: int) -> None:
        self.source = ("def execute_command(image_patch):\n    total = 0\n"
                       f"    for i in range({names}):\n        total += len(image_patch.find('bloat ' + str(i)))\n"
                       "    return total\n")

    def plan(self, question: str, feedback: str | None = None) -> Program:
        source = WARM_UP if question == "warm-up" else self.source
        return Program(source=source, planner=self.planner_id, question=question)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(image: object, names: int, unbounded: bool, cache_dir: str) -> tuple[float, float, float, str]:
    config = EngineConfig(sandbox_cost_budget=1e12, sandbox_timeout_s=3600.0, sandbox_call_budget=names + 10,
                          cache_dir=cache_dir, gsd_m=1.0, find_cache_mb=1e6 if unbounded else 16.0)
    config.find.refine = "none"
    engine = Engine(scorer=BlobScorer(), planner=Bloat(names), config=config)
    engine.ask(image, "warm-up")
    gc.collect()
    tracemalloc.start()
    before, rss_before = tracemalloc.get_traced_memory()[0], rss_mb()
    start = time.perf_counter()
    answer = engine.ask(image, "bloat")
    seconds = time.perf_counter() - start
    gc.collect()
    after, rss_after = tracemalloc.get_traced_memory()[0], rss_mb()
    tracemalloc.stop()
    status = answer.status if answer.error else f"ok, {answer.value} instances"
    return (after - before) / 2 ** 20, rss_after - rss_before, seconds, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=195, help="distinct names the program finds")
    parser.add_argument("--unbounded", action="store_true", help="no trim when a question ends")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for label, image in (("515x403 example tile", EXAMPLE), ("2048x2048 tile", np.zeros((2048, 2048, 3), np.uint8))):
            traced, rss, seconds, status = measure(image, args.names, args.unbounded, tmp)
            print(f"{label:22s} {args.names} names{' (no trim)' if args.unbounded else ''}: "
                  f"retained {traced:7.1f} MB traced, RSS {rss:+7.1f} MB   ({seconds:.1f} s, {status}; "
                  "target: < 20 MB)")


if __name__ == "__main__":
    main()
