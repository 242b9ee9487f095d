"""Per-program overhead of ``graft_vqa.sandbox.run`` against a bare ``exec`` of the same program.

Usage: ``python bench/sandbox.py [--runs 200] [--gap-ms 20]``. Both sides run the same benign
program (compile, define ``execute_command``, call it with a patch that answers from memory), so
the difference is the sandbox's own cost: handing the program to a child forked and confined
ahead (uid, Landlock, seccomp), rlimits, RestrictedPython compilation (or the cached compile of
the same source), and the JSON channel for each API call.

Programs are measured the way an agent runs them, one at a time: a pause of ``--gap-ms`` (not
timed; a planner takes far longer) comes before each, so the next child is ready, as it is in
use. The same figures back to back (no pause) show the sandbox's throughput on these two cores,
where preparing the next child competes with the running program for CPU. Also measured:
programs never seen before (no compile cache) and how long a runaway loop runs before it is
stopped. Targets: median overhead (one at a time) <= 5 ms; a runaway loop stopped in <= 5 s.
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


def measure(fn, runs: int, gap_s: float = 0.0) -> list[float]:
    """Wall time of ``runs`` calls of ``fn`` in milliseconds, each after a pause of ``gap_s`` (not timed)."""
    times = []
    for _ in range(runs):
        if gap_s:
            time.sleep(gap_s)
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


def report(label: str, times: list[float], base: list[float], note: str = "") -> None:
    """One line: the median and p90 of ``times`` less those of ``base``."""
    print(f"{label:34s} overhead median: {statistics.median(times) - statistics.median(base):7.3f} ms   "
          f"p90: {percentile(times, 0.9) - percentile(base, 0.9):7.3f} ms{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="programs per measurement")
    parser.add_argument("--gap-ms", type=float, default=20.0,
                        help="untimed pause before each program measured one at a time")
    args = parser.parse_args()
    patch, gap_s = BenchPatch(), args.gap_ms / 1000.0
    expected = bare(PROGRAM, patch)
    for _ in range(5):  # warm the zygote
        result = sandbox.run(PROGRAM, patch)
        assert result.status == "ok" and result.value == expected, result.error
    caps = sandbox.capabilities()
    layers = ", ".join(f"{name}: {caps[key]}" for name, key in (
        ("seccomp", "seccomp"), ("landlock", "landlock"), ("unprivileged uid", "unprivileged_user"),
        ("/proc isolated", "proc_isolated")))
    base = measure(lambda: bare(PROGRAM, patch), args.runs)
    one = measure(lambda: sandbox.run(PROGRAM, patch), args.runs, gap_s)
    sources = fresh_programs()
    fresh = measure(lambda: sandbox.run(next(sources), patch), args.runs, gap_s)
    burst = measure(lambda: sandbox.run(PROGRAM, patch), args.runs)
    print(f"runs per measurement : {args.runs} ({layers})")
    print(f"bare exec      median: {statistics.median(base):8.3f} ms   p90: {percentile(base, 0.9):8.3f} ms")
    print(f"sandbox.run    median: {statistics.median(one):8.3f} ms   p90: {percentile(one, 0.9):8.3f} ms"
          f"   (one at a time, {args.gap_ms:g} ms apart)")
    report("one at a time", one, base, "   (target: median <= 5 ms)")
    report("one at a time, new programs", fresh, base, "   (compiled in the child, not cached)")
    report("back to back", burst, base, "   (throughput: the next child is prepared meanwhile)")
    print(f"ratio sandbox/bare (median, one at a time): {statistics.median(one) / statistics.median(base):.1f}x")
    stop_s, status = runaway_stop_s(sandbox.host.DEFAULT_CPU_S)
    print(f"runaway loop stopped after {stop_s:.2f} s wall ({status}; cpu_s={sandbox.host.DEFAULT_CPU_S:g}; "
          "target: <= 5 s)")


if __name__ == "__main__":
    main()
