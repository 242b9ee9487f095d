"""Search indexing on a Ray cluster: actors hold the embedder, this process writes the index.

:class:`RayChips` is a :class:`~graft_vqa.retrieval.runners.ChipRunner`. Each actor builds the
embedder once (the image-level GRAFT model, from that node's weights, or what a picklable factory
makes) and embeds units: a file, or a batch of ``CHIP_BATCHES_PER_UNIT`` batches of chips of a large
file, read by the worker itself from the file's path (shared storage: every node must see the same
path). This process commits each unit's chips as it comes back and marks a file indexed once all its
units are committed, so :func:`graft_vqa.retrieval.build_index`'s incremental and resume semantics
hold unchanged: an interrupted run on Ray resumes (on Ray or not) to the same index.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from graft_vqa.config import ChipConfig, EmbedConfig, apply_options
from graft_vqa.core.chips import Window
from graft_vqa.core.errors import DistributedError
from graft_vqa.core.tiles import load_tile
from graft_vqa.distributed.cluster import Cluster
from graft_vqa.distributed.placement import Placement, PoolRunner
from graft_vqa.distributed.pool import WorkerSpec
from graft_vqa.models import embedder_id, embedder_model_id, resolve_embedder
from graft_vqa.retrieval import IndexReport, build_index as build_index_here
from graft_vqa.retrieval.files import expand_paths
from graft_vqa.retrieval.indexer import Progress, check_existing
from graft_vqa.retrieval.runners import (
    READ_ERRORS, Batch, ChipsEmbedded, FileWork, embed_chips, windows_to_embed,
)

log = logging.getLogger(__name__)

CHIP_BATCHES_PER_UNIT = 4  # a large file is cut into units of this many embedding batches of chips


@dataclass
class Embedding:
    """What an actor holds: the embedder, its model id and the warnings building it gave."""

    embedder: Any  # embed_images(tiles) -> (N, D)
    model_id: str  # what the index records (WorkerPool reports it)
    warnings: list[str]  # untrained weights and similar


def default_embedding(config: EmbedConfig) -> Embedding:
    """The default embedder for ``config`` (built on the worker, from that node's weights)."""
    embedder, warnings = resolve_embedder(None, config)
    return Embedding(embedder, embedder_model_id(embedder), warnings)


def factory_embedding(factory: Callable[[], Any]) -> Embedding:
    """The embedder ``factory()`` makes."""
    embedder, warnings = resolve_embedder(factory(), EmbedConfig())
    return Embedding(embedder, embedder_model_id(embedder), warnings)


@dataclass(frozen=True)
class ChipUnit:
    """One unit of work: chips of one file."""

    path: str  # the file
    key: str  # its file key
    windows: tuple[Window, ...]  # the chips to embed
    chips: ChipConfig  # how the file is cut
    batch_size: int  # chips per forward pass


def embed_unit(state: Embedding, unit: ChipUnit) -> ChipsEmbedded:
    """The actor's work: one unit's chips, read and embedded."""
    return embed_chips(state.embedder, unit.path, unit.key, unit.chips, list(unit.windows), unit.batch_size)


class RayChips(PoolRunner):
    """Embeds an index's chips on Ray actors (see the module's documentation).

    Args:
        config: the default embedder's settings (each actor builds it on its device, from its node's weights).
        embedder_factory: instead, a picklable callable each actor calls once for its embedder.
        address: the cluster (``host:port``, ``auto``), or ``None`` to start a local Ray.
        workers, worker_cpus, device: the actors (default: one per CPU of the cluster, on the CPU; with
            ``device=None``, one per GPU on ``cuda`` when the cluster has GPUs, as :func:`build_index` asks).
        spec: instead, the actors exactly.
        cluster: a cluster this process already joined (``address`` is then not used).
        chip_batches: embedding batches of chips per unit of a large file.
    """

    def __init__(self, config: EmbedConfig | None = None, embedder_factory: Callable[[], Any] | None = None, *,
                 address: str | None = None, workers: int | None = None, worker_cpus: float = 1.0,
                 device: str | None = "cpu", spec: WorkerSpec | None = None, cluster: Cluster | None = None,
                 chip_batches: int = CHIP_BATCHES_PER_UNIT) -> None:
        super().__init__(Placement(address=address, workers=workers, worker_cpus=worker_cpus, device=device,
                                   spec=spec, cluster=cluster))
        self.config = config or EmbedConfig()
        self.embedder_factory = embedder_factory
        self.chip_batches = max(1, chip_batches)
        self.chips_by_worker: Counter[str] = Counter()  # chips embedded per "node/pid" (for tests and benchmarks)

    def _setup(self, device: str | None) -> Callable[[], Embedding]:
        """What each actor calls once: the factory's embedder, or the config's default one on ``device``."""
        if self.embedder_factory is not None:
            return functools.partial(factory_embedding, self.embedder_factory)
        config = self.config if device is None else dataclasses.replace(self.config, device=device)
        return functools.partial(default_embedding, config)

    def start(self) -> tuple[str, list[str]]:
        """Join the cluster, start the actors; the embedder's model id (the same on every actor) and warnings."""
        infos = self._start_pool(self._setup, embed_unit)
        ids = sorted({str(info["model_id"]) for info in infos})
        if len(ids) != 1:
            raise DistributedError(f"the workers' embedders differ ({', '.join(ids)}): every node must find the "
                                   f"same weights (a shared path, or the same file in each node's $GRAFT_VQA_WEIGHTS)")
        return ids[0], list(dict.fromkeys(w for info in infos for w in info["warnings"]))

    def run(self, work: list[FileWork], chips: ChipConfig, batch_size: int) -> Iterator[Batch]:
        if self.pool is None:
            raise DistributedError("RayChips.run before start()")
        units, left, counts = [], {}, {}
        for item in work:
            try:
                windows = windows_to_embed(load_tile(Path(item.path)), chips, item.stored)  # the header only
            except READ_ERRORS as exc:
                yield Batch(failed=[(item.path, str(exc))])
                continue
            size = batch_size * self.chip_batches
            parts = [tuple(windows[i:i + size]) for i in range(0, len(windows), size)]
            if not parts:  # an interrupted run had stored all its chips
                yield Batch(done=[(item.path, item.key, len(item.stored))])
                continue
            units += [ChipUnit(item.path, item.key, part, chips, batch_size) for part in parts]
            left[item.path], counts[item.path] = len(parts), len(item.stored)
        yield from self._embed(units, left, counts)

    def _embed(self, units: list[ChipUnit], left: dict[str, int], counts: dict[str, int]) -> Iterator[Batch]:
        """Each unit's chips as it comes back; a file is done with its last unit (failed with its first error)."""
        assert self.pool is not None
        failed: set[str] = set()
        for done in self.pool.map_unordered(units):
            unit, result = done.unit, done.result
            self.chips_by_worker[f"{done.worker['node']}/{done.worker['pid']}"] += len(result.rows)
            batch = Batch(rows=result.rows, vectors=result.vectors)
            if result.error is not None and unit.path not in failed:
                failed.add(unit.path)
                batch.failed.append((unit.path, result.error))
            counts[unit.path] += len(result.rows)
            left[unit.path] -= 1
            if left[unit.path] == 0 and unit.path not in failed:
                batch.done.append((unit.path, unit.key, counts[unit.path]))
            yield batch

    def close(self) -> None:
        """Stop the actors; leave the cluster if this runner joined it (a local Ray it started stops)."""
        if self.chips_by_worker:
            log.info("chips per worker: %s", ", ".join(f"{k}: {n}" for k, n in sorted(self.chips_by_worker.items())))
        super().close()


def build_index(paths: Any, out: str | Path, *, address: str | None = None, workers: int | None = None,
                worker_cpus: float = 1.0, device: str | None = None, embedder_factory: Callable[[], Any] | None = None,
                config: EmbedConfig | None = None, chips: ChipConfig | None = None,
                progress: Progress | None = None, cluster: Cluster | None = None, **options: Any) -> IndexReport:
    """:func:`graft_vqa.build_index` on a Ray cluster: the same index, its chips embedded by actors that each
    build the embedder once (the default image-level GRAFT model from ``config``/``options``, or
    ``embedder_factory()``, a picklable callable), this process alone writing the index.

    ``address``: ``host:port``, ``auto`` or ``None`` (a local Ray for this call). ``workers``: actors
    (default one per GPU, else one per CPU); ``device``: theirs (default ``cuda`` when the cluster has
    GPUs, else ``cpu``). ``cluster``: one this process already joined (else it is joined, or a local Ray
    started, for this call).
    """
    config, chips = apply_options(options, config or EmbedConfig(), chips or ChipConfig())
    files = expand_paths(paths)  # an empty collection fails before Ray starts
    out = Path(out).expanduser()
    if embedder_factory is None:
        check_existing(out, embedder_id(config), chips)  # and so does an index of other weights
    runner = RayChips(config, embedder_factory, address=address, workers=workers, worker_cpus=worker_cpus,
                      device=device, cluster=cluster)
    try:
        return build_index_here(files, out, config=config, chips=chips, progress=progress, runner=runner)
    finally:
        runner.close()  # and leave the cluster if it joined it (a local Ray it started stops)
