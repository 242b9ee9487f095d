"""The chip store: embeddings and their metadata in a LanceDB folder (see ``docs/search.md`` for why LanceDB).

An index folder holds ``index.json`` (what made it: the embedder's ``model_id``, the embedding size,
the chip settings; written once, atomically) and a LanceDB database with two tables:

- ``chips``: one row per chip: ``path``, ``file_key``, the window (``row_off``, ``col_off``, ``height``,
  ``width``), the footprint's bounds in EPSG:4326 (``minx``..``maxy``, for filters; null without
  georeferencing), the raster's ``crs``, the acquisition ``date``, ``meta`` (all a hit shows, the
  footprint's WKB included, as one JSON string: fetching one column for the best chips costs a
  third of fetching a dozen) and the ``vector``;
- ``files``: one row per file whose chips are all stored (``path``, ``file_key``, ``chips``).

Every ``add``/``delete`` is one LanceDB commit, atomic: a killed process leaves the last commit. A file
counts as indexed only once its ``files`` row is committed, after its chips; chips of a file without
that row are the remains of an interrupted run, which the next run keeps and completes.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from graft_vqa.core.errors import EmbedderMismatchError, IndexNotFoundError, SearchIndexError

log = logging.getLogger(__name__)

FORMAT = "graft-vqa-index"  # index.json "format"
VERSION = 1  # index.json "version"; other versions are refused with a message
META_FILE = "index.json"
DB_FOLDER = "lance"
CHIPS, FILES = "chips", "files"
ANN_MIN_ROWS = 50_000  # below this many chips, searches are exact (a flat scan takes a few ms)
ANN_ROWS_PER_PARTITION = 1_000  # IVF partitions: rows / this (capped below), as LanceDB advises
ANN_MAX_PARTITIONS = 4_096  # most IVF partitions
ANN_NPROBES = 24  # IVF partitions searched per query (bench/search.py: recall@10 and latency at 1M chips)
ANN_STALE_FRACTION = 0.1  # rebuild the ANN index when more than this share of chips is outside it


def _lancedb() -> Any:
    """Import LanceDB on first use (it takes seconds; ``graft-vqa --help`` must not pay for it)."""
    os.environ.setdefault("LANCE_LOG", "error")  # the Rust side logs a WARN for every new table otherwise
    try:
        import lancedb
    except ImportError:
        raise SearchIndexError("search indexes need LanceDB, the optional [search] extra: "
                               "pip install 'graft-vqa[search]'") from None
    return lancedb


def chips_schema(dim: int) -> Any:
    """The Arrow schema of the ``chips`` table for ``dim``-sized embeddings."""
    import pyarrow as pa

    return pa.schema([
        pa.field("path", pa.string(), nullable=False),
        pa.field("file_key", pa.string(), nullable=False),
        pa.field("row_off", pa.int32(), nullable=False),
        pa.field("col_off", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("minx", pa.float64()),
        pa.field("miny", pa.float64()),
        pa.field("maxx", pa.float64()),
        pa.field("maxy", pa.float64()),
        pa.field("crs", pa.string()),
        pa.field("date", pa.string()),
        pa.field("meta", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
    ])


def files_schema() -> Any:
    """The Arrow schema of the ``files`` table."""
    import pyarrow as pa

    return pa.schema([pa.field("path", pa.string(), nullable=False), pa.field("file_key", pa.string(), nullable=False),
                      pa.field("chips", pa.int32(), nullable=False)])


META_FIELDS = ("path", "row_off", "col_off", "height", "width", "crs", "date")  # what a hit shows, with the footprint


def meta_json(row: dict[str, Any]) -> str:
    """The ``meta`` column of a chip row: its ``META_FIELDS`` and its footprint's WKB (hex) as compact JSON."""
    meta = {k: row.get(k) for k in META_FIELDS}
    footprint = row.get("footprint")
    meta["footprint"] = footprint.hex() if footprint is not None else None
    return json.dumps(meta, separators=(",", ":"))


def quote(text: str) -> str:
    """``text`` as an SQL string literal for LanceDB filters."""
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class IndexMeta:
    """What ``index.json`` records."""

    model_id: str  # the embedder's id: queries must use the same
    dim: int  # embedding size
    chips: dict[str, Any]  # the ChipConfig the chips were cut with
    created: str  # ISO 8601 UTC time of creation

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "model_id": self.model_id, "dim": self.dim,
                "chips": self.chips, "created": self.created}


def read_meta(folder: Path) -> IndexMeta:
    """``folder``'s ``index.json``.

    Raises:
        IndexNotFoundError: no folder, or a folder that is not an index.
        SearchIndexError: an index of another format version.
    """
    meta_path = folder / META_FILE
    if not folder.is_dir():
        raise IndexNotFoundError(f"no search index at {folder}: build one with `graft-vqa index TILES... --out "
                                 f"{folder}`")
    if not meta_path.is_file():
        raise IndexNotFoundError(f"{folder} is not a graft-vqa search index (it has no {META_FILE}); build one with "
                                 f"`graft-vqa index TILES... --out {folder}` or give the index folder")
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SearchIndexError(f"{meta_path} cannot be read ({exc}); rebuild the index into a new folder") from None
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise SearchIndexError(f"{folder} is a {data.get('format')} index of version {data.get('version')}; this "
                               f"graft-vqa reads {FORMAT} version {VERSION}: rebuild it into a new folder")
    return IndexMeta(str(data["model_id"]), int(data["dim"]), dict(data.get("chips") or {}), str(data["created"]))


def _write_meta(folder: Path, meta: IndexMeta) -> None:
    tmp = folder / f".{META_FILE}.tmp"
    tmp.write_text(json.dumps(meta.to_json(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, folder / META_FILE)


def check_model(meta: IndexMeta, folder: Path, model_id: str) -> None:
    """Refuse a query or an update whose embedder is not the one the index was built with.

    Raises:
        EmbedderMismatchError: naming both ids.
    """
    if meta.model_id != model_id:
        raise EmbedderMismatchError(
            f"the index {folder} was built with {meta.model_id!r} but the embedder here is {model_id!r}: their "
            "embeddings are not comparable; use the same model and weights (--graft-model/--graft-weights/"
            "--graft-checkpoint) or index the tiles again into a new folder")


class ChipStore:
    """An index folder opened for reading or writing (see the module's documentation)."""

    def __init__(self, folder: Path, meta: IndexMeta, db: Any) -> None:
        self.folder = folder
        self.meta = meta
        self._db = db
        self._chips = db.open_table(CHIPS)
        self._files = db.open_table(FILES)

    # --- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, folder: str | os.PathLike) -> "ChipStore":
        """An existing index (see :func:`read_meta` for the errors)."""
        folder = Path(folder).expanduser()
        meta = read_meta(folder)
        db = _lancedb().connect(str(folder / DB_FOLDER))
        missing = {CHIPS, FILES} - set(db.list_tables().tables)
        if missing:
            raise SearchIndexError(f"the index {folder} lacks its {', '.join(sorted(missing))} table(s); rebuild it "
                                   "into a new folder")
        return cls(folder, meta, db)

    @classmethod
    def create(cls, folder: str | os.PathLike, meta: IndexMeta) -> "ChipStore":
        """A new, empty index at ``folder`` (which must not hold one). The tables are made before
        ``index.json``, so a folder with ``index.json`` is always a whole index."""
        folder = Path(folder).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        db = _lancedb().connect(str(folder / DB_FOLDER))
        existing = set(db.list_tables().tables)
        if CHIPS not in existing:
            db.create_table(CHIPS, schema=chips_schema(meta.dim))
        if FILES not in existing:
            db.create_table(FILES, schema=files_schema())
        _write_meta(folder, meta)
        return cls(folder, meta, db)

    # --- what is stored ------------------------------------------------------------------------
    def count(self) -> int:
        """Chips stored."""
        return int(self._chips.count_rows())

    def indexed_files(self) -> dict[str, str]:
        """``{path: file_key}`` of the files whose chips are all stored."""
        table = self._files.to_arrow()
        return dict(zip(table.column("path").to_pylist(), table.column("file_key").to_pylist()))

    def stored_windows(self) -> dict[tuple[str, str], set[tuple[int, int, int, int]]]:
        """``{(path, file_key): {window, ...}}`` of every stored chip (to resume an interrupted file)."""
        table = self._chips.search().select(["path", "file_key", "row_off", "col_off", "height", "width"]).to_arrow()
        out: dict[tuple[str, str], set[tuple[int, int, int, int]]] = {}
        cols = [table.column(c).to_pylist() for c in ("path", "file_key", "row_off", "col_off", "height", "width")]
        for path, key, *window in zip(*cols):
            out.setdefault((path, key), set()).add(tuple(window))
        return out

    # --- writing -------------------------------------------------------------------------------
    def add_chips(self, rows: Sequence[dict[str, Any]], vectors: np.ndarray) -> None:
        """Store chips (one commit): ``rows`` hold the metadata columns, ``vectors`` the ``(len(rows), dim)``
        embeddings."""
        import pyarrow as pa

        if not rows:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(rows), self.meta.dim):
            raise SearchIndexError(f"the embedder returned {vectors.shape} embeddings for {len(rows)} chips; the "
                                   f"index holds {self.meta.dim}-sized embeddings")
        schema = chips_schema(self.meta.dim)
        columns = {f.name: [r.get(f.name) for r in rows] for f in schema if f.name not in ("vector", "meta")}
        columns["meta"] = [meta_json(r) for r in rows]
        columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), self.meta.dim)
        self._chips.add(pa.table(columns, schema=schema))

    def finish_files(self, done: Iterable[tuple[str, str, int]]) -> None:
        """Mark files ``(path, file_key, chips)`` as indexed (one commit)."""
        import pyarrow as pa

        done = list(done)
        if done:
            paths, keys, counts = zip(*done)
            self._files.add(pa.table({"path": list(paths), "file_key": list(keys), "chips": list(counts)},
                                     schema=files_schema()))

    def drop_files(self, paths: Iterable[str]) -> None:
        """Forget ``paths``: their ``files`` rows first, then their chips (so a kill in between leaves
        chips of an unindexed file, which the next run replaces)."""
        paths = sorted(set(paths))
        for start in range(0, len(paths), 500):
            where = f"path IN ({', '.join(quote(p) for p in paths[start:start + 500])})"
            self._files.delete(where)
            self._chips.delete(where)

    def drop_stale_chips(self, keep: dict[tuple[str, str], Any]) -> int:
        """Delete chips of unindexed files whose ``(path, file_key)`` is not in ``keep`` (an interrupted
        run's chips of a file that changed since); returns how many files were cleaned."""
        indexed = set(self.indexed_files().items())
        stale = {key for key in self.stored_windows() if key not in indexed and key not in keep}
        for path, file_key in stale:
            self._chips.delete(f"path = {quote(path)} AND file_key = {quote(file_key)}")
        return len(stale)

    def optimize(self) -> None:
        """After a run: below ``ANN_MIN_ROWS`` chips, compact the run's many small commits; above, when there is
        no ANN (IVF) index or more than ``ANN_STALE_FRACTION`` of the chips are outside it, compact and then
        build it afresh. Chips outside the index are searched exactly until then. (Compacting *after* the
        index is built lowered recall@10 from 0.99 to 0.86 on 200,000 chips with LanceDB 0.40, so an
        indexed table is only compacted right before its index is rebuilt.)"""
        rows = self.count()
        if rows < ANN_MIN_ROWS:
            self._chips.optimize()
        else:
            stats = self._index_stats()
            if stats is None or stats.num_unindexed_rows > ANN_STALE_FRACTION * rows:
                from lancedb.index import IvfFlat

                partitions = int(min(ANN_MAX_PARTITIONS, max(1, rows // ANN_ROWS_PER_PARTITION)))
                log.info("building the ANN index over %d chips (%d partitions)", rows, partitions)
                self._chips.optimize()
                self._chips.create_index("vector", config=IvfFlat(distance_type="dot", num_partitions=partitions),
                                         replace=True)
        self._files.optimize()

    def _index_stats(self) -> Any:
        for index in self._chips.list_indices():
            if "vector" in index.columns:
                return self._chips.index_stats(index.name)
        return None

    # --- reading -------------------------------------------------------------------------------
    def nearest(self, vector: np.ndarray, limit: int, where: str | None = None) -> list[dict[str, Any]]:
        """The ``limit`` chips most similar to ``vector`` (dot product, best first) among those ``where``
        selects (an SQL filter on the metadata columns): their ``META_FIELDS``, ``footprint`` (WKB or None)
        and ``score`` (the cosine)."""
        query = self._chips.search(np.asarray(vector, dtype=np.float32), vector_column_name="vector")
        query = query.distance_type("dot").nprobes(ANN_NPROBES).limit(limit).select(["meta", "_distance"])
        if where:
            query = query.where(where, prefilter=True)
        table = query.to_arrow()
        rows = []
        for meta, distance in zip(table.column("meta").to_pylist(), table.column("_distance").to_pylist()):
            row = json.loads(meta)
            row["footprint"] = bytes.fromhex(row["footprint"]) if row["footprint"] else None
            row["score"] = 1.0 - float(distance)  # LanceDB's dot distance is 1 - dot
            rows.append(row)
        return rows


def new_meta(model_id: str, dim: int, chips: dict[str, Any]) -> IndexMeta:
    """The metadata of an index created now."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    return IndexMeta(model_id, int(dim), dict(chips), now)
