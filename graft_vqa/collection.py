"""Many tiles at once: per-tile answers and a total.

``graft_vqa.ask_many("tiles/*.tif", "How many buildings are there?")`` answers the question on every
tile of a collection (a glob, a folder, a text file of paths, or a list) and totals the answers:
counts and areas are summed, presence is "yes" when any tile says yes, class answers are tallied.
A tile that cannot be read is reported in its row and the others are still answered; a tile that
the area of interest misses is skipped (status ``outside_aoi``).

The unit of work is :func:`answer_tile`: one tile with all its questions, a pure function of an
engine, a path and the questions that returns plain :class:`TileAnswer` records (picklable), so a
scheduler (Ray, a job array) can distribute it unchanged and :func:`totals` can be computed from the
records wherever they were made. A *tile runner* decides where tiles run: :class:`LocalTiles` in
this process (the default), or ``graft_vqa.distributed.RayTiles`` on the workers of a Ray cluster
(``graft_vqa.distributed.ask_many``, ``graft-vqa ask "tiles/*.tif" ... --ray``).
"""
from __future__ import annotations

import csv
import glob
import io
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, Sequence

from graft_vqa.answer import Answer
from graft_vqa.coerce import format_area
from graft_vqa.core.aoi import UserAOI, aoi_from_user
from graft_vqa.core.errors import AOIError, AOIOutsideRasterError, ConfigError, TileError, TileNotFoundError
from graft_vqa.core.files import check_output_path, write_text

log = logging.getLogger(__name__)

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".png", ".jpg", ".jpeg", ".jp2", ".img")  # a folder's tiles
LIST_SUFFIXES = (".txt", ".lst", ".list")  # a text file of tile paths, one a line
TABLE_SUFFIXES = (".csv", ".jsonl")  # per-tile table formats
COLUMNS = ("tile", "question", "answer", "value", "kind", "status", "error", "detections", "area_m2", "seconds")


# --- what a collection is -------------------------------------------------------------------
def is_collection(spec: Any) -> bool:
    """True when ``spec`` names several tiles: a list, a glob pattern, a folder or a list file."""
    if isinstance(spec, (list, tuple)):
        return True
    text = str(spec)
    return glob.has_magic(text) or Path(text).is_dir() or Path(text).suffix.lower() in LIST_SUFFIXES


def expand_images(spec: Any) -> list[str]:
    """The tile paths ``spec`` names, in order: a list (each item expanded), a glob pattern (sorted;
    ``**`` recurses), a folder (its rasters, sorted), a text file of paths (one a line, ``#``
    comments, relative to the file's folder), or one path. Listed paths need not exist: a missing
    tile is reported in its row.

    Raises:
        TileNotFoundError: a pattern that matches nothing, a folder without rasters, an empty list.
    """
    if isinstance(spec, (list, tuple)):
        paths = [p for item in spec for p in expand_images(item)]
        if not paths:
            raise TileNotFoundError("the list of tiles is empty; give at least one path")
        return paths
    text = os.fspath(spec) if isinstance(spec, os.PathLike) else str(spec)
    if glob.has_magic(text):
        matches = sorted(p for p in glob.glob(os.path.expanduser(text), recursive=True) if Path(p).is_file())
        if not matches:
            raise TileNotFoundError(f"no file matches {text!r}: check the pattern (quote it, so the shell "
                                    "passes it to graft-vqa as it is)")
        return matches
    path = Path(text).expanduser()
    if path.is_dir():
        tiles = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
        if not tiles:
            raise TileNotFoundError(f"the folder {path} holds no rasters ({', '.join(RASTER_SUFFIXES)}); "
                                    "give another folder or a glob such as 'tiles/**/*.tif'")
        return tiles
    if path.suffix.lower() in LIST_SUFFIXES:
        return _read_list(path)
    return [text]


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise TileNotFoundError(f"the list of tiles {path} does not exist; check the path")
    lines = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    tiles = [str(path.parent / line) if not Path(line).expanduser().is_absolute() else line
             for line in lines if line]
    if not tiles:
        raise TileNotFoundError(f"the list of tiles {path} names no tiles; put one path per line")
    return tiles


# --- records --------------------------------------------------------------------------------
@dataclass
class TileAnswer:
    """One question about one tile: the answer, or why there is none."""

    tile: str  # the tile's path as given
    question: str  # the question asked
    answer: Answer | None  # None when the tile could not be used
    status: str  # "ok"; the answer's failure status; "unreadable"; "outside_aoi"; "aoi_error"
    error: str | None = None  # the one-line reason when status is not "ok"
    seconds: float = 0.0  # wall time of this question on this tile (the tile's load counted once)

    def row(self) -> dict[str, Any]:
        """The table row: :data:`COLUMNS`, plain JSON values."""
        answer = self.answer
        areas = [d.area_m2 for d in answer.detections] if answer is not None else []
        area = sum(areas) if areas and all(a is not None for a in areas) else None
        return {"tile": self.tile, "question": self.question,
                "answer": answer.answer if answer is not None and self.status == "ok" else None,
                "value": answer.value if answer is not None else None,
                "kind": answer.kind if answer is not None and self.status == "ok" else None,
                "status": self.status, "error": self.error,
                "detections": len(answer.detections) if answer is not None else None,
                "area_m2": area, "seconds": round(self.seconds, 3)}


@dataclass
class Total:
    """The answers of one question summed over a collection."""

    question: str
    kind: str | None  # the answers' common kind; None when none answered or kinds differ
    value: Any  # int (count), float (area_m2), bool (presence), dict of label -> tiles (text); else None
    answer: str  # short string like an Answer's: "12", "5300 m2", "yes", "urban: 3, rural: 1"
    answered: int  # tiles answered
    failed: int  # tiles unreadable or whose answer failed
    skipped: int  # tiles outside the area of interest

    def summary(self) -> str:
        """``"12  (40 tiles answered, 2 failed, 3 outside the AOI)"``."""
        parts = [f"{self.answered} tile{'s' if self.answered != 1 else ''} answered"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.skipped:
            parts.append(f"{self.skipped} outside the AOI")
        return f"{self.answer}  ({', '.join(parts)})"


@dataclass
class CollectionAnswer:
    """Per-tile answers of a collection and the totals, one per question."""

    tiles: list[TileAnswer] = field(default_factory=list)  # one record per (tile, question), in order
    totals: list[Total] = field(default_factory=list)  # one per question, in the order asked

    @property
    def total(self) -> Total:
        """The total of the first (usually only) question."""
        return self.totals[0]

    @property
    def ok(self) -> bool:
        """True when no tile failed (tiles outside the AOI are not failures)."""
        return all(t.failed == 0 for t in self.totals)

    def rows(self) -> list[dict[str, Any]]:
        return [t.row() for t in self.tiles]

    def write_table(self, path: str | os.PathLike) -> Path:
        """Write the per-tile table to ``path`` (``.csv`` or ``.jsonl``), atomically."""
        return write_table(path, self.tiles)


# --- the unit of work ------------------------------------------------------------------------
def answer_tile(engine: Any, path: str, questions: Sequence[str], aoi: Any = None,
                aoi_crs: Any = None) -> list[TileAnswer]:
    """Every question about one tile, as records: the unit a scheduler distributes.

    ``engine`` answers (``engine.ask(path, question, aoi=..., aoi_crs=...)``; the AOI keywords are
    passed only when ``aoi`` is given). A tile that cannot be read, or that the AOI misses, gives
    one record per question with the reason; errors that would fail every tile (missing weights,
    bad settings) are raised.
    """
    options = {"aoi": aoi, "aoi_crs": aoi_crs} if aoi is not None else {}
    records = []
    for question in questions:
        start = time.perf_counter()
        try:
            answer = engine.ask(path, question, **options)
        except (TileError, AOIError) as exc:
            status = ("outside_aoi" if isinstance(exc, AOIOutsideRasterError)
                      else "aoi_error" if isinstance(exc, AOIError) else "unreadable")
            log.info("%s: %s", path, exc)
            failed = [TileAnswer(path, q, None, status, str(exc)) for q in questions[len(records):]]
            return records + failed  # the same reason holds for every other question on this tile
        status = "ok" if answer.error is None else answer.status
        records.append(TileAnswer(path, question, answer, status, answer.error, time.perf_counter() - start))
    return records


class TileRunner(Protocol):
    """Where tiles are answered: ``(index in paths, that tile's records)`` for every tile, in any order."""

    def run(self, paths: list[str], questions: list[str],
            aoi_options: dict[str, Any]) -> Iterator[tuple[int, list[TileAnswer]]]: ...  # pragma: no cover


class LocalTiles:
    """Tiles one after another in this process, with one engine (the default)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def run(self, paths: list[str], questions: list[str],
            aoi_options: dict[str, Any]) -> Iterator[tuple[int, list[TileAnswer]]]:
        for index, path in enumerate(paths):
            yield index, answer_tile(self.engine, path, questions, **aoi_options)


def totals(questions: Sequence[str], records: Iterable[TileAnswer]) -> list[Total]:
    """One :class:`Total` per question from the records (wherever they were made)."""
    records = list(records)
    return [_total(q, [r for r in records if r.question == q]) for q in questions]


def _total(question: str, records: list[TileAnswer]) -> Total:
    answered = [r.answer for r in records if r.status == "ok" and r.answer is not None]
    skipped = sum(r.status == "outside_aoi" for r in records)
    failed = len(records) - len(answered) - skipped
    kinds = sorted({a.kind for a in answered})
    counts = {"answered": len(answered), "failed": failed, "skipped": skipped}
    if not answered:
        return Total(question, None, None, "no tile answered", **counts)
    if len(kinds) > 1:
        return Total(question, None, None, f"no total: the tiles' answers are of different kinds ({', '.join(kinds)})",
                     **counts)
    kind, values = kinds[0], [a.value for a in answered]
    if kind == "count":
        value: Any = int(sum(values))
        text = str(value)
    elif kind == "area_m2":
        value = float(sum(values))
        text = format_area(value)
    elif kind == "bool":
        value = any(bool(v) for v in values)
        text = "yes" if value else "no"
    elif kind == "text":
        value = dict(Counter(a.answer for a in answered).most_common())
        text = ", ".join(f"{label}: {n}" for label, n in value.items())
    else:  # a kind that does not add up over tiles (a share of each tile, ...)
        return Total(question, kind, None, f"no total for {kind} answers: see each tile", **counts)
    return Total(question, kind, value, text, **counts)


def write_table(path: str | os.PathLike, records: Iterable[TileAnswer]) -> Path:
    """The per-tile table as CSV or JSON Lines (by extension), written atomically."""
    target = check_output_path(path, TABLE_SUFFIXES, "--out")
    rows = [r.row() for r in records]
    if target.suffix.lower() == ".jsonl":
        return write_text(target, "".join(json.dumps(row) + "\n" for row in rows))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return write_text(target, buffer.getvalue())


# --- the Python entry point ------------------------------------------------------------------
def ask_many(images: Any, questions: str | Sequence[str], *, engine: Any = None, aoi: Any = None,
             bbox: Any = None, aoi_crs: Any = None, out: str | os.PathLike | None = None,
             progress: bool = False, runner: TileRunner | None = None, **options: Any) -> CollectionAnswer:
    """Answer ``questions`` (one or several) on every tile of ``images`` and total the answers.

    ``images``: a glob (``"tiles/*.tif"``), a folder, a text file of paths, or a list of paths.
    ``aoi``/``bbox``/``aoi_crs`` as for one tile (the AOI is read once; tiles it misses are skipped).
    ``out``: write the per-tile table there too (``.csv`` or ``.jsonl``; checked before any work).
    ``engine``: an :class:`~graft_vqa.engine.Engine` to reuse; else one is built from ``options``
    (``allow_untrained=True``, ``scorer=...``, ... as for :func:`graft_vqa.ask`). ``progress``: a
    tqdm bar over tiles. ``runner``: where the tiles are answered (default :class:`LocalTiles` with
    the engine; ``graft_vqa.distributed.ask_many`` passes Ray's); the rows keep the tiles' order.

    Raises:
        TileNotFoundError: the pattern, folder or list names no tiles.
        AOIError, OutputPathError: a bad area of interest or output path (before any work).
        ConfigError: no question.
    """
    from tqdm import tqdm

    asked = [questions] if isinstance(questions, str) else list(questions)
    if not asked:
        raise ConfigError("ask_many needs at least one question")
    paths = expand_images(images)
    user: UserAOI | None = aoi_from_user(aoi=aoi, bbox=bbox, aoi_crs=aoi_crs)
    if out is not None:
        check_output_path(out, TABLE_SUFFIXES, "--out")
    if runner is None and engine is None:
        from graft_vqa.engine import Engine

        parts = {k: options.pop(k) for k in ("scorer", "refiner", "planner", "config") if k in options}
        engine = Engine(**parts, **options)
    elif options:
        raise TypeError(f"ask_many got engine= or runner= and engine options {sorted(options)}; give one or the other")
    runner = runner or LocalTiles(engine)
    aoi_options = {"aoi": user.geometry, "aoi_crs": user.crs} if user is not None else {}
    per_tile: list[list[TileAnswer]] = [[] for _ in paths]
    with tqdm(total=len(paths), desc="tiles", unit="tile", disable=not progress, leave=False) as bar:
        for index, tile_records in runner.run(paths, asked, aoi_options):
            per_tile[index] = tile_records
            bar.update(1)
    records = [r for tile_records in per_tile for r in tile_records]
    result = CollectionAnswer(records, totals(asked, records))
    if out is not None:
        result.write_table(out)
    return result
