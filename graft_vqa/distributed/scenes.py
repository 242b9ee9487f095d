"""Scenes on a Ray cluster: batches of windows scored on actors that hold the scorer.

:class:`RayWindowRunner` is a :class:`~graft_vqa.scene.windows.WindowRunner`. Each actor builds the
scorer once (the GRAFT model and text tower: :func:`default_scorer`), then reads its windows itself
from the raster's path (shared storage: every node must see the same path) and returns their core
cells. This process assembles the scene-wide maps, or writes the feature store, as batches come
back: it never holds more than the batches in flight, so memory stays within the one-machine bound.
The cells are computed by the same :func:`~graft_vqa.scene.windows.run_window`, so the answers are
the same as in one process.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from collections import Counter
from typing import Any, Callable, Iterator

from graft_vqa.config import EngineConfig
from graft_vqa.core.errors import DistributedError
from graft_vqa.distributed.cluster import Cluster
from graft_vqa.distributed.placement import Placement, PoolRunner
from graft_vqa.distributed.pool import WorkerPool, WorkerSpec
from graft_vqa.models import build_default_scorer
from graft_vqa.scene.plan import PlannedWindow
from graft_vqa.scene.windows import LocalWindowRunner, WindowJob, WindowResult, run_window

log = logging.getLogger(__name__)

WINDOWS_PER_BATCH = 4  # windows per unit of work sent to an actor


def default_scorer(config: EngineConfig) -> Any:
    """The engine's default scorer for ``config`` (built on the worker, from that node's weights)."""
    scorer, _ = build_default_scorer(config)
    return scorer


def score_windows(scorer: Any, unit: tuple[Any, list[PlannedWindow], WindowJob]) -> list[WindowResult]:
    """The actor's work: one batch of windows of one scene."""
    tile, windows, job = unit
    return [run_window(tile, win, scorer, job) for win in windows]


class RayWindowRunner(PoolRunner):
    """Runs a scene's windows on Ray actors (see the module's documentation).

    Args:
        config: the engine's settings; the actors build its default scorer (GRAFT and the text tower).
        scorer_factory: instead, a picklable ``() -> scorer`` each actor calls once.
        address: the cluster (``host:port``, ``auto``), or ``None`` to start a local Ray.
        workers: actors (default: :func:`~graft_vqa.distributed.pool.worker_spec`: one per GPU, else
            one per CPU of the cluster).
        worker_cpus: CPUs per actor.
        device: the actors' torch device (default: ``cuda`` when the cluster has GPUs, else ``cpu``).
        spec: instead of ``workers``/``worker_cpus``/``device``, the actors exactly.
        batch: windows per unit of work.
        cluster: a cluster this process already joined (``address`` is then not used).

    The cluster is joined and the actors started on the first scene, so a question about a small tile
    never starts Ray.
    """

    def __init__(self, config: EngineConfig | None = None, *, scorer_factory: Callable[[], Any] | None = None,
                 address: str | None = None, workers: int | None = None, worker_cpus: float = 1.0,
                 device: str | None = None, spec: WorkerSpec | None = None, batch: int = WINDOWS_PER_BATCH,
                 cluster: Cluster | None = None) -> None:
        if config is None and scorer_factory is None:
            raise DistributedError("RayWindowRunner needs the engine's config or a scorer factory")
        super().__init__(Placement(address=address, workers=workers, worker_cpus=worker_cpus, device=device,
                                   spec=spec, cluster=cluster))
        self.config = config
        self.scorer_factory = scorer_factory
        self.batch = max(1, batch)
        self.windows_by_node: Counter[str] = Counter()  # windows scored per Ray node (for tests and benchmarks)

    def _setup(self, device: str | None) -> Callable[[], Any]:
        """What each actor calls once: the scorer factory, or the config's default scorer on ``device``."""
        if self.scorer_factory is not None:
            return self.scorer_factory
        config = self.config if device is None else dataclasses.replace(self.config, device=device)
        return functools.partial(default_scorer, config)

    def _ensure_pool(self, scorer: Any) -> WorkerPool:
        if self.pool is None:
            _check_same_model(scorer, self._start_pool(self._setup, score_windows))
        assert self.pool is not None
        return self.pool

    def run(self, tile: Any, windows: list[PlannedWindow], scorer: Any, job: WindowJob) -> Iterator[WindowResult]:
        if tile.path is None:  # an in-memory raster: nothing for the workers to read
            log.info("the scene is in memory, not in a file: scoring it in this process")
            yield from LocalWindowRunner().run(tile, windows, scorer, job)
            return
        pool = self._ensure_pool(scorer)
        batches = [(tile, windows[i:i + self.batch], job) for i in range(0, len(windows), self.batch)]
        for done in pool.map_unordered(batches):
            self.windows_by_node[done.worker["node"]] += len(done.result)
            yield from done.result

    def close(self) -> None:
        """Stop the actors; leave the cluster if this runner joined it (a local Ray it started stops)."""
        if self.windows_by_node:
            log.info("scene windows per node: %d nodes (%s)", len(self.windows_by_node),
                     ", ".join(f"{node}: {n}" for node, n in sorted(self.windows_by_node.items())))
        super().close()


def _check_same_model(scorer: Any, infos: list[dict[str, Any]]) -> None:
    """The workers' scorer must be this process's (the same weights file): features from other weights
    would be stored under this model's name."""
    here = getattr(scorer, "model_id", None)
    there = {info.get("model_id") for info in infos}
    if here is not None and there != {here}:
        raise DistributedError(
            f"the workers' scorer is {sorted(map(str, there))} but this process's is {here!r}: every node must find "
            f"the same weights (a shared path, or the same file in each node's $GRAFT_VQA_WEIGHTS)")
