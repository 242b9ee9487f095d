"""``build_index``: embed every chip of a collection into a search index, incrementally and resumably.

Per file, the chips (:mod:`graft_vqa.core.chips`) are read, embedded in batches that span files, and
committed batch by batch; a file is marked indexed once all its chips are committed. Running again:

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
from rasterio.windows import Window

from graft_vqa.config import DEFAULT_CHIP, ChipConfig, EmbedConfig, apply_options
from graft_vqa.core.chips import chip_windows, footprint
from graft_vqa.core.errors import ConfigError, GraftVQAError, TileError
from graft_vqa.core.tiles import load_tile
from graft_vqa.models import embedder_id, embedder_model_id, resolve_embedder
from graft_vqa.retrieval.files import acquisition_date, expand_paths, file_key
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


@dataclass
class _Pending:
    """Chips read and waiting for the next batch, and the files they complete."""

    tiles: list[Any] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    files: list[tuple[str, str, int]] = field(default_factory=list)  # (path, key, chips) complete after the batch


class _Run:
    """One indexing run over an opened (or not yet created) store."""

    def __init__(self, out: Path, embedder: Any, model_id: str, chips: ChipConfig, batch_size: int) -> None:
        self.out = out
        self.embedder = embedder
        self.model_id = model_id
        self.chips = chips
        self.batch_size = batch_size
        self.store: ChipStore | None = ChipStore.open(out) if (out / "index.json").is_file() else None
        self.pending = _Pending()
        self.report = IndexReport(index=str(out))

    def flush(self) -> None:
        """Embed and commit the pending chips, then mark the files they complete."""
        p, self.pending = self.pending, _Pending()
        if p.rows:
            vectors = np.asarray(self.embedder.embed_images(p.tiles), dtype=np.float32)
            if self.store is None:
                meta = new_meta(self.model_id, vectors.shape[1], dataclasses.asdict(self.chips))
                self.store = ChipStore.create(self.out, meta)
            self.store.add_chips(p.rows, vectors)
            self.report.chips_added += len(p.rows)
        if p.files and self.store is not None:
            self.store.finish_files(p.files)

    def add_file(self, path: Path, key: str, stored: set[tuple[int, int, int, int]]) -> None:
        """Queue the chips of ``path`` not already ``stored``; flush full batches."""
        tile = load_tile(path)
        windows = chip_windows(tile.height, tile.width, chip=self.chips.chip, default_chip=DEFAULT_CHIP,
                               whole_max=self.chips.whole_max, overlap=self.chips.chip_overlap)
        date = acquisition_date(path)
        crs = tile.crs.to_string() if tile.crs is not None else None
        count = len(stored)
        for window in windows:
            if window in stored:
                continue
            row, col, height, width = window
            chip = tile if (height, width) == (tile.height, tile.width) else tile.read(Window(col, row, width, height))
            if not np.asarray(chip.valid_mask()).any():
                continue
            self.pending.tiles.append(chip)
            self.pending.rows.append(_row(str(path), key, window, footprint(tile, window), crs, date))
            count += 1
            if len(self.pending.rows) >= self.batch_size:
                self.flush()
        self.pending.files.append((str(path), key, count))
        if self.store is None and not self.pending.rows:
            return  # nothing to commit yet: the store is created with the first chips
        if not self.pending.rows:
            self.flush()


def _row(path: str, key: str, window: tuple[int, int, int, int], geom: Any, crs: str | None,
         date: str | None) -> dict[str, Any]:
    row, col, height, width = window
    out: dict[str, Any] = {"path": path, "file_key": key, "row_off": row, "col_off": col, "height": height,
                           "width": width, "crs": crs, "date": date, "footprint": None,  # WKB, in meta
                           "minx": None, "miny": None, "maxx": None, "maxy": None}
    if geom is not None:
        out["minx"], out["miny"], out["maxx"], out["maxy"] = (float(v) for v in geom.bounds)
        out["footprint"] = geom.wkb
    return out


def _check_existing(out: Path, model_id: str, chips: ChipConfig) -> None:
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
                chips: ChipConfig | None = None, progress: Progress | None = None, **options: Any) -> IndexReport:
    """Embed every chip of the collection ``paths`` into the index folder ``out`` (created on first use).

    Args:
        paths: a raster path, a folder, a glob, a text file of paths, or a list of these.
        out: the index folder.
        embedder: an :class:`~graft_vqa.perception.protocols.Embedder`; ``None`` builds the image-level GRAFT
            model from ``config`` (its weights id is recorded and checked on every later use).
        config: :class:`~graft_vqa.config.EmbedConfig` of the default embedder.
        chips: :class:`~graft_vqa.config.ChipConfig` (recorded; an existing index keeps its own).
        progress: called as ``progress(files_done, files, path)``.
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
    if embedder is None:  # an index built with other weights fails before the model loads
        _check_existing(out, embedder_id(config), chips)
    embedder, warnings = resolve_embedder(embedder, config)
    model_id = embedder_model_id(embedder)
    _check_existing(out, model_id, chips)
    run = _Run(out, embedder, model_id, chips, batch_size=config.batch_size)
    run.report.files, run.report.warnings = len(files), warnings
    for done, (path, key, stored, kind) in enumerate(_plan(run, files)):
        if progress is not None:
            progress(done, len(files), str(path))
        if kind == "unchanged":
            run.report.unchanged += 1
            continue
        if kind == "missing":
            run.report.failed.append((str(path), f"no file at {path}"))
            continue
        try:
            run.add_file(path, key, stored)
        except (TileError, OSError) as exc:
            log.warning("%s: not indexed (%s)", path, exc)
            run.report.failed.append((str(path), str(exc)))
            continue
        setattr(run.report, kind, getattr(run.report, kind) + 1)
    run.flush()
    if progress is not None:
        progress(len(files), len(files), "")
    if run.store is None:
        reasons = "; ".join(f"{p}: {e}" for p, e in run.report.failed[:3]) or "every chip is nodata"
        raise GraftVQAError(f"no chip could be indexed, so no index was written ({reasons})")
    run.store.optimize()
    run.report.chips_total = run.store.count()
    run.report.seconds = time.perf_counter() - start
    log.info(run.report.summary())
    return run.report


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
