"""Tile collections on a Ray cluster: each worker holds an engine and answers whole tiles.

The unit is :func:`graft_vqa.collection.answer_tile` (one tile with all its questions), run by a
:class:`~graft_vqa.distributed.pool.WorkerPool` actor that built its engine once (GRAFT scorer, text
tower, SAM). :class:`RayTiles` is a :class:`~graft_vqa.collection.TileRunner`, so
:func:`graft_vqa.collection.ask_many` totals and tabulates the tiles exactly as in one process.
Workers read the tiles themselves: the paths must be the same on every node (shared storage).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any, Callable, Iterator

from graft_vqa.collection import CollectionAnswer, TileAnswer, answer_tile, ask_many as ask_many_here
from graft_vqa.config import EngineConfig
from graft_vqa.distributed.cluster import Cluster, connect, disconnect
from graft_vqa.distributed.placement import Placement, PoolRunner
from graft_vqa.distributed.pool import WorkerSpec, worker_spec

log = logging.getLogger(__name__)

_PARTS = ("scorer", "refiner", "planner")  # Engine parts passed as objects (pickled to the workers)


def ready_engine(engine: Any) -> Any:
    """``engine`` with its lazily built models built now (a worker's start: missing weights show at once)."""
    for part in ("scorer", "refiner"):
        getattr(engine, part, None)
    return engine


def engine_from_options(options: dict[str, Any]) -> Any:
    """An engine from :class:`~graft_vqa.engine.Engine` keywords (``config=``, ``scorer=``, field names)."""
    from graft_vqa.engine import Engine

    return ready_engine(Engine(**options))


def answer_tile_unit(engine: Any, unit: tuple[str, list[str], dict[str, Any]]) -> list[TileAnswer]:
    """The actor's work: one tile and its questions (``aoi_options`` as :func:`answer_tile` takes them)."""
    path, questions, aoi_options = unit
    return answer_tile(engine, path, questions, **aoi_options)


class RayTiles(PoolRunner):
    """Runs tiles on Ray actors, each holding the engine ``setup()`` builds (a ``TileRunner``).

    Args:
        setup: a picklable ``() -> engine`` each actor calls once.
        spec: the actors; ``None`` sizes them to the cluster (:func:`worker_spec`, one per GPU or CPU).
        cluster: the cluster this process joined.
        workers, worker_cpus: the actors when ``spec`` is ``None``.
    """

    def __init__(self, setup: Callable[[], Any], cluster: Cluster, *, spec: WorkerSpec | None = None,
                 workers: int | None = None, worker_cpus: float = 1.0) -> None:
        spec = spec or worker_spec(cluster, workers=workers, cpus=worker_cpus, device="cpu")[0]  # sized now, as before
        super().__init__(Placement(spec=spec, cluster=cluster))
        self.setup = setup
        self.workers: list[dict[str, Any]] = []  # node, host, pid of each actor (after the first run)
        self.tiles_by_worker: dict[str, int] = {}  # tiles answered per "node/pid"

    def run(self, paths: list[str], questions: list[str],
            aoi_options: dict[str, Any]) -> Iterator[tuple[int, list[TileAnswer]]]:
        if self.pool is None:
            self.workers = self._start_pool(lambda _device: self.setup, answer_tile_unit)
        units = [(path, list(questions), aoi_options) for path in paths]
        for done in self.pool.map_unordered(units):
            key = f"{done.worker['node']}/{done.worker['pid']}"
            self.tiles_by_worker[key] = self.tiles_by_worker.get(key, 0) + 1
            yield done.index, done.result

    def close(self) -> None:
        """Stop the actors (the cluster, joined by the caller, stays)."""
        if self.tiles_by_worker:
            log.info("tiles per worker: %s", ", ".join(f"{k}: {n}" for k, n in sorted(self.tiles_by_worker.items())))
        super().close()


def ask_many(images: Any, questions: Any, *, address: str | None = None, workers: int | None = None,
             worker_cpus: float = 1.0, device: str | None = None, aoi: Any = None, bbox: Any = None,
             aoi_crs: Any = None, out: Any = None, progress: bool = False, **options: Any) -> CollectionAnswer:
    """:func:`graft_vqa.ask_many` on a Ray cluster: the same rows and totals, the tiles answered by workers
    that each build the engine from ``options`` once (``config=``, ``allow_untrained=True``, ...).

    ``address``: ``host:port``, ``auto`` or ``None`` (a local Ray for this call). ``workers``: actors
    (default one per GPU, else one per CPU); ``device``: theirs (default ``cuda`` when the cluster has GPUs).
    """
    cluster = connect(address)
    try:
        spec, device = worker_spec(cluster, workers=workers, cpus=worker_cpus, device=device)
        config = EngineConfig.from_options(options.pop("config", None),
                                           **{k: options.pop(k) for k in list(options) if k not in _PARTS})
        options["config"] = dataclasses.replace(config, device=device)
        runner = RayTiles(functools.partial(engine_from_options, options), cluster, spec=spec)
        try:
            return ask_many_here(images, questions, aoi=aoi, bbox=bbox, aoi_crs=aoi_crs, out=out, progress=progress,
                                 runner=runner)
        finally:
            runner.close()
    finally:
        if cluster.started_here:
            disconnect(cluster)

