"""The evaluation's units on a Ray cluster (``--ray``): one actor per worker, each holding the system.

Each actor builds the evaluated system once (``setup``: the engine with its GRAFT scorer, text tower
and SAM, or an ``--answerer``) and answers whole units (an image with its questions). The driver
writes their records as units finish; a worker killed mid-unit is restarted by Ray and its unit
answered again, so the run ends with the same records as one process.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

from graft_vqa.distributed import WorkerPool, WorkerSpec
from graft_vqa.interfaces.evaluation.runner import Answered, System, Unit, answer_unit_whole


class RayExecutor:
    """Runs units on :class:`~graft_vqa.distributed.WorkerPool` actors (an :class:`Executor`)."""

    def __init__(self, setup: Callable[[], System], spec: WorkerSpec) -> None:
        self.pool = WorkerPool(setup, answer_unit_whole, spec)

    def start(self) -> list[dict[str, Any]]:
        """Start the actors (each builds the system); where they run."""
        return self.pool.start()

    def run(self, units: list[Unit]) -> Iterator[Answered]:
        for done in self.pool.map_unordered(units):
            yield Answered(done.unit, done.result, done.worker, True)

    def close(self) -> None:
        self.pool.close()
