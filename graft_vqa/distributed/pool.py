"""A pool of Ray actors that each build their models once and then answer unit after unit.

``WorkerPool(setup, work, spec)`` starts ``spec.workers`` actors spread over the cluster's nodes.
Each actor runs ``setup()`` once (build an engine: GRAFT, text tower, SAM) and then ``work(state,
unit)`` for every unit it is handed (a tile with its questions, a batch of scene windows).
:meth:`WorkerPool.map_unordered` hands a unit to each idle actor and yields results as they finish,
so the caller can write them at once.

Faults: an actor whose process dies (killed, out of memory, its node lost) is restarted by Ray, which
runs ``setup`` again and retries the unit it held (``max_restarts``, ``max_task_retries``). An actor
that cannot be restarted any more is dropped and its unit goes to another actor. Units must
therefore be safe to run twice (they are pure: answers depend only on the unit and the models).
Errors raised by ``setup`` or ``work`` are not faults: they reach the caller as the original exception.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import ray
from ray.exceptions import ActorUnavailableError, NodeDiedError, OutOfMemoryError, RayActorError, WorkerCrashedError

from graft_vqa.core.errors import DistributedError
from graft_vqa.distributed.cluster import Cluster, worker_info

log = logging.getLogger(__name__)

LOST = (RayActorError, WorkerCrashedError, OutOfMemoryError, NodeDiedError)  # a worker process is gone


@dataclass(frozen=True)
class WorkerSpec:
    """How many actors, and what each one holds of the cluster."""

    workers: int = 1  # actors
    cpus: float = 1.0  # CPUs reserved per actor (also its torch threads: Ray sets OMP_NUM_THREADS)
    gpus: float = 0.0  # GPUs per actor (1: one actor per GPU)
    max_restarts: int = 3  # times Ray restarts an actor whose process died (setup runs again)
    max_task_retries: int = 3  # times Ray retries the unit an actor held when it died
    unit_retries: int = 2  # times a unit goes to another actor once its actor cannot be restarted


def worker_spec(cluster: Cluster, *, workers: int | None = None, cpus: float = 1.0,
                device: str | None = None) -> tuple[WorkerSpec, str]:
    """Actors sized to ``cluster`` and the torch device they use.

    With a CUDA ``device``, or no ``device`` on a cluster with GPUs: one actor per GPU (``num_gpus=1``;
    Ray shows each actor its own GPU as ``cuda``). Otherwise CPU actors of ``cpus`` CPUs each, as many
    as the cluster's CPUs hold. ``workers`` overrides the count.
    """
    if workers is not None and workers < 1:
        raise DistributedError(f"--workers must be at least 1, got {workers}")
    if cpus <= 0:
        raise DistributedError(f"--worker-cpus must be positive, got {cpus}")
    if device.startswith("cuda") if device else cluster.gpus >= 1:
        if cluster.gpus < 1:
            raise DistributedError(f"--device {device} but the Ray cluster has no GPU: start the nodes with GPUs "
                                   f"(ray start --num-gpus=N) or use --device cpu")
        spec = WorkerSpec(workers=workers or int(cluster.gpus), cpus=cpus, gpus=1.0)
        device = device or "cuda"
    else:
        spec = WorkerSpec(workers=workers or max(1, int(cluster.cpus // cpus)), cpus=cpus)
        device = device or "cpu"
    if spec.workers * spec.cpus > cluster.cpus or spec.workers * spec.gpus > cluster.gpus:
        log.warning("%d worker(s) need %g CPU(s) and %g GPU(s); the cluster has %g and %g now: some wait for "
                    "nodes to join", spec.workers, spec.workers * spec.cpus, spec.workers * spec.gpus,
                    cluster.cpus, cluster.gpus)
    return spec, device


@dataclass
class Done:
    """One finished unit."""

    index: int  # position of the unit in the input
    unit: Any  # the unit as given
    result: Any  # what work(state, unit) returned
    worker: dict[str, Any]  # where it ran: node, host, pid
    seconds: float  # wall time of work() on the worker


class _Failed:
    """An exception raised by setup or work, carried back as a value (so it is not mistaken for a fault)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Worker:
    """The actor: the state ``setup`` built, and ``work`` applied to units."""

    def __init__(self, setup: Callable[[], Any], work: Callable[[Any, Any], Any]) -> None:
        self._work = work
        self._info = worker_info()
        try:
            self._state: Any = setup()
        except Exception as exc:  # noqa: BLE001 - reported to the caller by ready()/run()
            self._state = _Failed(exc)

    def ready(self) -> dict[str, Any] | _Failed:
        """Where this actor runs, the model id and warnings of what it holds, or why setup failed."""
        if isinstance(self._state, _Failed):
            return self._state
        return {**self._info, "model_id": getattr(self._state, "model_id", None),
                "warnings": list(getattr(self._state, "warnings", None) or [])}

    def run(self, unit: Any) -> tuple[Any, dict[str, Any], float]:
        if isinstance(self._state, _Failed):
            return self._state, self._info, 0.0
        start = time.perf_counter()
        try:
            result = self._work(self._state, unit)
        except Exception as exc:  # noqa: BLE001 - re-raised on the driver as itself
            result = _Failed(exc)
        return result, self._info, time.perf_counter() - start


@dataclass
class _Slot:
    actor: Any  # the actor handle
    info: dict[str, Any] = field(default_factory=dict)  # from ready()


class WorkerPool:
    """Actors that run ``work(setup(), unit)`` over units (see the module's documentation)."""

    def __init__(self, setup: Callable[[], Any], work: Callable[[Any, Any], Any], spec: WorkerSpec) -> None:
        if spec.workers < 1:
            raise DistributedError(f"--workers must be at least 1, got {spec.workers}")
        self.spec = spec
        remote = ray.remote(_Worker).options(
            num_cpus=spec.cpus, num_gpus=spec.gpus, max_restarts=spec.max_restarts,
            max_task_retries=spec.max_task_retries, scheduling_strategy="SPREAD")
        self._slots = [_Slot(remote.remote(setup, work)) for _ in range(spec.workers)]
        self.start_s: float | None = None  # seconds until every actor had built its state

    def start(self) -> list[dict[str, Any]]:
        """Wait until every actor has run ``setup``; their node, host, pid, model id and warnings (each
        distinct warning is logged once). Raises what a ``setup`` raised (missing weights on a node, bad
        settings)."""
        begin = time.perf_counter()
        infos = ray.get([slot.actor.ready.remote() for slot in self._slots])
        for slot, info in zip(self._slots, infos):
            if isinstance(info, _Failed):
                raise info.error
            slot.info = info
        for warning in dict.fromkeys(w for info in infos for w in info["warnings"]):
            log.warning("workers: %s", warning)
        self.start_s = time.perf_counter() - begin
        log.info("%d worker(s) ready on %d node(s) in %.1f s", len(infos), len({i["node"] for i in infos}),
                 self.start_s)
        return infos

    def map_unordered(self, units: Iterable[Any]) -> Iterator[Done]:
        """Run every unit once (retried on other actors when one is lost); results as they finish."""
        pending: deque[tuple[int, Any, int]] = deque((i, u, 0) for i, u in enumerate(units))
        running: dict[Any, tuple[_Slot, int, Any, int]] = {}
        idle = list(self._slots)
        while pending or running:
            while idle and pending:
                slot = idle.pop(0)
                index, unit, tries = pending.popleft()
                running[slot.actor.run.remote(unit)] = (slot, index, unit, tries)
            ref = ray.wait(list(running), num_returns=1)[0][0]
            slot, index, unit, tries = running.pop(ref)
            try:
                result, info, seconds = ray.get(ref)
            except LOST as exc:
                self._lost(slot, index, unit, tries, exc, pending, idle)
                continue
            if isinstance(result, _Failed):
                raise result.error
            idle.append(slot)
            yield Done(index, unit, result, info, seconds)

    def _lost(self, slot: _Slot, index: int, unit: Any, tries: int, exc: Exception, pending: deque,
              idle: list[_Slot]) -> None:
        """An actor Ray could not bring back: drop it (or, only unreachable for now, keep it) and give its
        unit to another actor."""
        if isinstance(exc, ActorUnavailableError):
            idle.append(slot)
        else:
            self._slots.remove(slot)
        log.warning("worker %s on node %s is lost (%s)", slot.info.get("pid"), slot.info.get("node"),
                    type(exc).__name__)
        if tries >= self.spec.unit_retries:
            raise DistributedError(f"unit {index} was lost with {tries + 1} workers ({exc}); check the workers' "
                                   f"memory and the Ray logs (/tmp/ray/session_latest/logs on each node)") from None
        if not self._slots:
            raise DistributedError(f"every worker was lost ({exc}); check the workers' memory and the Ray logs "
                                   f"(/tmp/ray/session_latest/logs on each node)") from None
        pending.appendleft((index, unit, tries + 1))

    def close(self) -> None:
        """Stop the actors."""
        for slot in self._slots:
            ray.kill(slot.actor)
        self._slots = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
