"""Where a runner's work runs, and what the Ray runners share about it.

:class:`Placement` holds the settings that say where the actors run (the cluster, how many actors and
what each holds). :class:`PoolRunner` is the part :class:`~graft_vqa.distributed.RayWindowRunner`,
:class:`~graft_vqa.distributed.RayTiles` and :class:`~graft_vqa.distributed.RayChips` have in common:
join the cluster when they were given none, start a :class:`~graft_vqa.distributed.pool.WorkerPool`
sized to it, and on close stop the actors and leave the cluster if they joined it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from graft_vqa.distributed.cluster import Cluster, connect, disconnect
from graft_vqa.distributed.pool import WorkerPool, WorkerSpec, worker_spec

Setup = Callable[[str | None], Callable[[], Any]]  # the actors' device -> the picklable setup each actor calls once


@dataclass
class Placement:
    """Where a runner's actors run."""

    address: str | None = None  # the cluster (host:port, ray://host:port, auto), or None to start a local Ray
    workers: int | None = None  # actors (None: one per GPU, else one per CPU of the cluster)
    worker_cpus: float = 1.0  # CPUs per actor
    device: str | None = None  # the actors' torch device (None: cuda when the cluster has GPUs, else cpu)
    spec: WorkerSpec | None = None  # instead of workers/worker_cpus/device, the actors exactly
    cluster: Cluster | None = None  # a cluster this process already joined (address is then not used)

    def actors(self, cluster: Cluster) -> tuple[WorkerSpec, str | None]:
        """The actors on ``cluster`` and their device: ``spec`` and ``device`` as given, or
        :func:`~graft_vqa.distributed.pool.worker_spec` sized to the cluster."""
        if self.spec is not None:
            return self.spec, self.device
        return worker_spec(cluster, workers=self.workers, cpus=self.worker_cpus, device=self.device)


class PoolRunner:
    """A runner whose units run on a :class:`WorkerPool` placed by a :class:`Placement`."""

    def __init__(self, placement: Placement) -> None:
        self.placement = placement
        self.pool: WorkerPool | None = None
        self._joined = False  # this runner joined (or started) the cluster, so it leaves it on close

    def _start_pool(self, setup: Setup, work: Callable[[Any, Any], Any]) -> list[dict[str, Any]]:
        """Join the cluster if none was given, start the actors (each calls ``setup(device)()`` once);
        where they run, as :meth:`WorkerPool.start` says."""
        if self.placement.cluster is None:
            self.placement.cluster, self._joined = connect(self.placement.address), True
        spec, device = self.placement.actors(self.placement.cluster)
        self.pool = WorkerPool(setup(device), work, spec)
        return self.pool.start()

    def close(self) -> None:
        """Stop the actors; leave the cluster if this runner joined it (a local Ray it started stops)."""
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self._joined:
            disconnect(self.placement.cluster)
            self.placement.cluster, self._joined = None, False
