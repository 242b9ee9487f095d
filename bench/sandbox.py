"""Per-program overhead of ``graft_vqa.sandbox.run`` against a bare ``exec`` of the same program.

Usage: ``python bench/sandbox.py [--runs 200]``. Both sides run the same benign program
(compile, define ``execute_command``, call it with a patch that answers from memory), so the
difference is the sandbox's own cost: handing the program to a child the zygote forked and
confined ahead (uid, Landlock, seccomp), rlimits, RestrictedPython compilation (or the cached
compile of the same source), and the JSON channel for each API call. Also measured: programs
never seen before (no compile cache) and how long a runaway loop runs before it is stopped.
Targets: median overhead <= 5 ms; a runaway loop stopped in <= 5 s.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import time
from typing import Iterator

from graft_vqa import sandbox
from graft_vqa.api import api

PROGRAM = '''
import math

def execute_command(image_patch):
    cars = image_patch.find("car")
    areas = sorted([c.area_m2 for c in cars], key=lambda a: -a)
    total = sum(areas)
    return {"count": len(cars), "largest": areas[0], "summary": f"{len(cars)} cars, {math.floor(total)} m2"}
'''


class BenchPatch:
    """Answers from memory, so only the sandbox's cost is measured."""

    def __init__(self, area: float = 100.0) -> None:
        self._area = area

    @api
    def find(self, name: str) -> list["BenchPatch"]:
        """Three fixed patches."""
        return [BenchPatch(a) for a in (12.5, 30.0, 7.5)]

    @property
    @api
    def area_m2(self) -> float:
        """Area in m²."""
        return self._area


def bare(source: str, patch: BenchPatch) -> object:
    """What an unsandboxed agent does: exec the program and call it."""
    scope: dict = {}
    exec(compile(source, "<program>", "exec"), scope)  # noqa: S102 - the baseline being measured
    return scope["execute_command"](patch)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(fn, runs: int) -> list[float]:
    """Wall time of ``runs`` calls of ``fn`` in milliseconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def fresh_programs() -> Iterator[str]:
    """The benchmark program with a new constant each time: a source the compile cache never saw."""
    for i in itertools.count():
        yield PROGRAM.replace("return {", f"unique = {i}\n    return {{")


def runaway_stop_s(cpu_s: float) -> tuple[float, str]:
    """Wall seconds until ``while True: pass`` is stopped, and its status."""
    start = time.perf_counter()
    result = sandbox.run("def execute_command(image_patch):\n    while True:\n        pass\n", BenchPatch(),
                         cpu_s=cpu_s)
    return time.perf_counter() - start, f"{result.status} at line {result.line}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="programs per side")
    args = parser.parse_args()
    patch = BenchPatch()
    expected = bare(PROGRAM, patch)
    for _ in range(5):  # warm the zygote
        result = sandbox.run(PROGRAM, patch)
        assert result.status == "ok" and result.value == expected, result.error
    caps = sandbox.capabilities()
    layers = ", ".join(f"{name}: {caps[key]}" for name, key in (
        ("seccomp", "seccomp"), ("landlock", "landlock"), ("unprivileged uid", "unprivileged_user"),
        ("/proc isolated", "proc_isolated")))
    base = measure(lambda: bare(PROGRAM, patch), args.runs)
    boxed = measure(lambda: sandbox.run(PROGRAM, patch), args.runs)
    sources = fresh_programs()
    fresh = measure(lambda: sandbox.run(next(sources), patch), args.runs)
    print(f"runs per side        : {args.runs} ({layers})")
    print(f"bare exec      median: {statistics.median(base):8.3f} ms   p90: {percentile(base, 0.9):8.3f} ms")
    print(f"sandbox.run    median: {statistics.median(boxed):8.3f} ms   p90: {percentile(boxed, 0.9):8.3f} ms")
    print(f"overhead       median: {statistics.median(boxed) - statistics.median(base):8.3f} ms   "
          f"p90: {percentile(boxed, 0.9) - percentile(base, 0.9):8.3f} ms   (target: median <= 5 ms)")
    print(f"new programs   median: {statistics.median(fresh) - statistics.median(base):8.3f} ms overhead   "
          f"p90: {percentile(fresh, 0.9) - percentile(base, 0.9):8.3f} ms   (compiled in the child, not cached)")
    print(f"ratio sandbox/bare (median): {statistics.median(boxed) / statistics.median(base):.1f}x")
    stop_s, status = runaway_stop_s(sandbox.host.DEFAULT_CPU_S)
    print(f"runaway loop stopped after {stop_s:.2f} s wall ({status}; cpu_s={sandbox.host.DEFAULT_CPU_S:g}; "
          "target: <= 5 s)")


if __name__ == "__main__":
    main()
