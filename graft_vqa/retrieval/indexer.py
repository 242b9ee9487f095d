"""``build_index``: embed every chip of a collection into a search index, incrementally and resumably.

Per file, the chips (:mod:`graft_vqa.core.chips`) are read and embedded by a runner
(:mod:`graft_vqa.retrieval.runners`: this process, in batches that span files, or Ray workers) and
committed batch by batch by this process alone; a file is marked indexed once all its chips are
committed. Running again:

- files whose key (path, modification time, size) is indexed are skipped;
- a changed file's old chips are deleted and the file is indexed afresh;
- a file an interrupted run left half done keeps its committed chips and gets the rest, so the
  index ends as an uninterrupted run would have made it.

Chips without a single valid pixel (all nodata) are not stored.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from graft_vqa.config import ChipConfig, EmbedConfig, apply_options
from graft_vqa.core.errors import ConfigError, GraftVQAError
from graft_vqa.models import embedder_id, resolve_embedder
from graft_vqa.retrieval.files import expand_paths, file_key
from graft_vqa.retrieval.runners import Batch, ChipRunner, FileWork, LocalChips
from graft_vqa.retrieval.store import ChipStore, check_model, new_meta, read_meta

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # (files done, files in all, current path)


@dataclass
class IndexReport:
    """What one ``build_index`` run did."""

    index: str  # the index folder
    files: int = 0  # files named by the collection
    added: int = 0  # files indexed for the first time
    updated: int = 0  # changed files indexed again (their old chips deleted)
    resumed: int = 0  # files an interrupted run had started
    unchanged: int = 0  # files already indexed with the same key (skipped)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, error) of files that could not be read
    chips_added: int = 0  # chips embedded and stored by this run
    chips_total: int = 0  # chips in the index afterwards
    seconds: float = 0.0  # wall-clock time of the run
    warnings: list[str] = field(default_factory=list)  # untrained weights and similar

    def summary(self) -> str:
        """One line for people."""
        failed = f", {len(self.failed)} failed" if self.failed else ""
        return (f"{self.index}: {self.chips_added} chips added from {self.added} new, {self.updated} changed and "
                f"{self.resumed} resumed files; {self.unchanged} unchanged{failed}; {self.chips_total} chips in all "
                f"({self.seconds:.1f} s)")


def check_existing(out: Path, model_id: str, chips: ChipConfig) -> None:
    """Refuse to add to the index at ``out`` (if there is one) with another embedder or other chip settings.

    Raises:
        EmbedderMismatchError: the index was built with other weights.
        ConfigError: other chip settings, or ``out`` is a file.
    """
    if not (out / "index.json").is_file():
        if out.exists() and not out.is_dir():
            raise ConfigError(f"{out} is a file; give a folder for the index (--out)")
        return
    meta = read_meta(out)
    check_model(meta, out, model_id)
    if meta.chips and meta.chips != dataclasses.asdict(chips):
        raise ConfigError(f"the index {out} was built with chips {meta.chips}, not {dataclasses.asdict(chips)}: "
                          "index with the same chip settings, or into a new folder")


def build_index(paths: Any, out: str | Path, embedder: Any = None, *, config: EmbedConfig | None = None,
                chips: ChipConfig | None = None, progress: Progress | None = None, runner: ChipRunner | None = None,
                **options: Any) -> IndexReport:
    """Embed every chip of the collection ``paths`` into the index folder ``out`` (created on first use).

    Args:
        paths: a raster path, a folder, a glob, a text file of paths, or a list of these.
        out: the index folder.
        embedder: an :class:`~graft_vqa.perception.protocols.Embedder`; ``None`` builds the image-level GRAFT
            model from ``config`` (its weights id is recorded and checked on every later use).
        config: :class:`~graft_vqa.config.EmbedConfig` of the default embedder.
        chips: :class:`~graft_vqa.config.ChipConfig` (recorded; an existing index keeps its own).
        progress: called as ``progress(files_done, files, path)``.
        runner: where the chips are embedded (a :class:`~graft_vqa.retrieval.runners.ChipRunner`; default
            :class:`~graft_vqa.retrieval.runners.LocalChips` with ``embedder``; ``graft_vqa.distributed.build_index``
            passes Ray's). This process alone writes the index, whatever the runner.
        **options: ``EmbedConfig`` or ``ChipConfig`` fields (``allow_untrained=True``, ``chip=224``).

    Raises:
        TileNotFoundError: an empty collection or a path that does not exist.
        EmbedderMismatchError: ``out`` holds an index built with other weights.
        ConfigError: ``out`` holds an index built with other chip settings, or an unknown option.
    """
    start = time.perf_counter()
    config, chips = apply_options(options, config or EmbedConfig(), chips or ChipConfig())
    files = expand_paths(paths)
    out = Path(out).expanduser()
    if runner is not None and embedder is not None:
        raise TypeError("build_index got an embedder and a runner; give one or the other (the runner holds its own)")
    if runner is None:
        if embedder is None:  # an index built with other weights fails before the model loads
            check_existing(out, embedder_id(config), chips)
        runner = LocalChips(*resolve_embedder(embedder, config))
    model_id, warnings = runner.start()
    check_existing(out, model_id, chips)
    run = _Run(out, model_id, chips, progress)
    run.report.files, run.report.warnings = len(files), list(warnings)
    work = run.plan(files)
    run.tell("")
    for batch in runner.run(work, chips, config.batch_size):
        run.commit(batch)
    run.finish()
    if run.store is None:
        reasons = "; ".join(f"{p}: {e}" for p, e in run.report.failed[:3]) or "every chip is nodata"
        raise GraftVQAError(f"no chip could be indexed, so no index was written ({reasons})")
    run.store.optimize()
    run.report.chips_total = run.store.count()
    run.report.seconds = time.perf_counter() - start
    log.info(run.report.summary())
    return run.report


class _Run:
    """One indexing run: the plan, and the commits of what the runner embedded (this process alone writes)."""

    def __init__(self, out: Path, model_id: str, chips: ChipConfig, progress: Progress | None) -> None:
        self.out = out
        self.model_id = model_id
        self.chips = chips
        self.progress = progress
        self.store: ChipStore | None = ChipStore.open(out) if (out / "index.json").is_file() else None
        self.report = IndexReport(index=str(out))
        self.kinds: dict[str, str] = {}  # path -> added/updated/resumed of the files to embed
        self.held: list[tuple[str, str, int]] = []  # files complete before the store exists (no chips yet)
        self.finished = 0  # files done, unchanged, missing or failed

    def plan(self, files: list[Path]) -> list[FileWork]:
        """The files to embed (after deleting what changed files left behind); counts the others."""
        work = []
        for path, key, stored, kind in _plan(self, files):
            if kind == "unchanged":
                self.report.unchanged += 1
            elif kind == "missing":
                self.report.failed.append((str(path), f"no file at {path}"))
            else:
                work.append(FileWork(str(path), key, frozenset(stored), kind))
                self.kinds[str(path)] = kind
                continue
            self.finished += 1
        return work

    def commit(self, batch: Batch) -> None:
        """Store the batch's chips (one commit), then mark the files it completes (another)."""
        for path, error in batch.failed:
            log.warning("%s: not indexed (%s)", path, error)
        self.report.failed.extend(batch.failed)
        self.finished += len(batch.failed)
        if batch.rows:
            vectors = np.asarray(batch.vectors, dtype=np.float32)
            if self.store is None:
                meta = new_meta(self.model_id, vectors.shape[1], dataclasses.asdict(self.chips))
                self.store = ChipStore.create(self.out, meta)
            self.store.add_chips(batch.rows, vectors)
            self.report.chips_added += len(batch.rows)
        self.held.extend(batch.done)
        if self.held and self.store is not None:
            self.store.finish_files(self.held)
            for path, _, _ in self.held:
                kind = self.kinds[path]
                setattr(self.report, kind, getattr(self.report, kind) + 1)
            self.finished += len(self.held)
            self.held = []
        self.tell(batch.done[-1][0] if batch.done else "")

    def tell(self, path: str) -> None:
        if self.progress is not None:
            self.progress(self.finished, self.report.files, path)

    def finish(self) -> None:
        self.finished = self.report.files
        self.tell("")


def _plan(run: _Run, files: list[Path]) -> Iterator[tuple[Path, str, set, str]]:
    """``(path, key, stored windows, kind)`` per file, after deleting what changed files left behind."""
    keys = {path: file_key(path) for path in files if path.is_file()}
    if run.store is None:
        for path in files:
            yield path, keys.get(path, ""), set(), "added" if path in keys else "missing"
        return
    indexed = run.store.indexed_files()
    changed = [str(p) for p in keys if str(p) in indexed and indexed[str(p)] != keys[p]]
    run.store.drop_files(changed)
    run.store.drop_stale_chips(keep={(str(p), key): None for p, key in keys.items()})
    stored = run.store.stored_windows()
    for path in files:
        key = keys.get(path)
        if key is None:
            yield path, "", set(), "missing"
        elif indexed.get(str(path)) == key:
            yield path, key, set(), "unchanged"
        elif str(path) in changed:
            yield path, key, set(), "updated"
        elif (str(path), key) in stored:
            yield path, key, stored[(str(path), key)], "resumed"
        else:
            yield path, key, set(), "added"
