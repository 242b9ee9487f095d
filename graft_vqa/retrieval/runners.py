"""Where an index's chips are read and embedded: the :class:`ChipRunner` seam of :func:`build_index`.

``build_index`` plans the work (the files to embed, each with the chips an interrupted run already
stored) and commits what a runner yields, in order: :class:`Batch` after :class:`Batch` of embedded
chips, each naming the files it completes. Only the process that calls ``build_index`` writes to the
store, so incremental indexing and resuming work the same wherever the chips are embedded.

- :class:`LocalChips` (the default): this process, batches of chips that span files;
- ``graft_vqa.distributed.RayChips``: Ray actors that each build the embedder once, a file (or a
  batch of chips of a large file) per unit of work.

:func:`embed_chips` is the unit both use: the chips of one file, read, cut and embedded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

import numpy as np
from rasterio.windows import Window as RasterWindow

from graft_vqa.config import DEFAULT_CHIP, ChipConfig
from graft_vqa.core.chips import Window, chip_windows, footprint
from graft_vqa.core.errors import TileError
from graft_vqa.core.tiles import load_tile
from graft_vqa.models import embedder_model_id
from graft_vqa.retrieval.files import acquisition_date

READ_ERRORS = (TileError, OSError)  # a file that cannot be read is reported and skipped, never fatal


@dataclass(frozen=True)
class FileWork:
    """One file to embed."""

    path: str  # the file (every worker must see it at this path)
    key: str  # its file key (path, modification time, size)
    stored: frozenset[Window] = frozenset()  # its chips an interrupted run already committed
    kind: str = "added"  # "added", "updated" or "resumed" (for the report)


@dataclass
class Batch:
    """Embedded chips to commit together, and the files complete once they are committed."""

    rows: list[dict[str, Any]] = field(default_factory=list)  # chip metadata (``build_index``'s columns)
    vectors: np.ndarray | None = None  # (len(rows), dim) float32 embeddings
    done: list[tuple[str, str, int]] = field(default_factory=list)  # (path, key, chips stored in all)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, error) of files that could not be read


class ChipRunner(Protocol):
    """Embeds the chips of planned files; yields :class:`Batch` es to commit in the order given."""

    def start(self) -> tuple[str, list[str]]:
        """Build (or reach) the embedder: its model id (what the index records) and warnings."""
        ...  # pragma: no cover

    def run(self, work: list[FileWork], chips: ChipConfig, batch_size: int) -> Iterator[Batch]:
        """Every chip of ``work`` not yet stored, embedded; each file named in ``done`` (or ``failed``) once,
        in the batch with its last chip (or a later one)."""
        ...  # pragma: no cover


def windows_to_embed(tile: Any, chips: ChipConfig, stored: Iterable[Window] = ()) -> list[Window]:
    """The chip windows of ``tile`` (:func:`~graft_vqa.core.chips.chip_windows`) not in ``stored``."""
    skip = set(stored)
    return [w for w in chip_windows(tile.height, tile.width, chip=chips.chip, default_chip=DEFAULT_CHIP,
                                    whole_max=chips.whole_max, overlap=chips.chip_overlap) if w not in skip]


def read_chips(path: str, key: str, chips: ChipConfig, *, stored: Iterable[Window] = (),
               windows: list[Window] | None = None) -> Iterator[tuple[Any, dict[str, Any]]]:
    """``(chip tile, row)`` for the chips of ``path`` (``windows``, else all not in ``stored``) that hold
    at least one valid pixel; all-nodata chips are not stored.

    Raises:
        TileError, OSError: the file cannot be read.
    """
    tile = load_tile(Path(path))
    if windows is None:
        windows = windows_to_embed(tile, chips, stored)
    date = acquisition_date(Path(path))
    crs = tile.crs.to_string() if tile.crs is not None else None
    for window in windows:
        row, col, height, width = window
        chip = tile if (height, width) == (tile.height, tile.width) else tile.read(RasterWindow(col, row, width, height))
        if np.asarray(chip.valid_mask()).any():
            yield chip, chip_row(path, key, window, footprint(tile, window), crs, date)


def chip_row(path: str, key: str, window: Window, geom: Any, crs: str | None, date: str | None) -> dict[str, Any]:
    """A chip's metadata as the store takes it (the footprint as WKB and its bounds in EPSG:4326)."""
    row, col, height, width = window
    out: dict[str, Any] = {"path": path, "file_key": key, "row_off": row, "col_off": col, "height": height,
                           "width": width, "crs": crs, "date": date, "footprint": None,  # WKB, in meta
                           "minx": None, "miny": None, "maxx": None, "maxy": None}
    if geom is not None:
        out["minx"], out["miny"], out["maxx"], out["maxy"] = (float(v) for v in geom.bounds)
        out["footprint"] = geom.wkb
    return out


def embed(embedder: Any, tiles: list[Any]) -> np.ndarray:
    """``embedder.embed_images(tiles)`` as float32."""
    return np.asarray(embedder.embed_images(tiles), dtype=np.float32)


@dataclass
class ChipsEmbedded:
    """What :func:`embed_chips` returns: one unit's chips, or why its file could not be read."""

    rows: list[dict[str, Any]]  # chip metadata
    vectors: np.ndarray | None  # their embeddings (None without chips)
    error: str | None = None  # the file could not be read (then rows holds nothing)


def embed_chips(embedder: Any, path: str, key: str, chips: ChipConfig, windows: list[Window],
                batch_size: int) -> ChipsEmbedded:
    """The chips ``windows`` of ``path``, read and embedded in batches of ``batch_size`` (a worker's unit)."""
    tiles, rows, parts = [], [], []
    try:
        for chip, row in read_chips(path, key, chips, windows=windows):
            tiles.append(chip)
            rows.append(row)
            if len(tiles) >= batch_size:
                parts.append(embed(embedder, tiles))
                tiles = []
    except READ_ERRORS as exc:
        return ChipsEmbedded([], None, str(exc))
    if tiles:
        parts.append(embed(embedder, tiles))
    return ChipsEmbedded(rows, np.concatenate(parts) if parts else None)


class LocalChips:
    """Chips embedded in this process, in batches that span files (the default runner)."""

    def __init__(self, embedder: Any, warnings: list[str] | None = None) -> None:
        self.embedder = embedder
        self.warnings = list(warnings or [])

    def start(self) -> tuple[str, list[str]]:
        return embedder_model_id(self.embedder), self.warnings

    def run(self, work: list[FileWork], chips: ChipConfig, batch_size: int) -> Iterator[Batch]:
        pending = Batch()
        tiles: list[Any] = []
        for item in work:
            count = len(item.stored)
            try:
                for chip, row in read_chips(item.path, item.key, chips, stored=item.stored):
                    tiles.append(chip)
                    pending.rows.append(row)
                    count += 1
                    if len(tiles) >= batch_size:
                        pending.vectors = embed(self.embedder, tiles)
                        yield pending
                        pending, tiles = Batch(), []
            except READ_ERRORS as exc:
                yield Batch(failed=[(item.path, str(exc))])
                continue
            pending.done.append((item.path, item.key, count))
            if not tiles:  # the file's last chip ended a batch: mark it now
                yield pending
                pending = Batch()
        if tiles:
            pending.vectors = embed(self.embedder, tiles)
        if pending.rows or pending.done:
            yield pending
