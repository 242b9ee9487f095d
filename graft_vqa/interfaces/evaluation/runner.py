"""The evaluation loop: select questions, ask them image by image, append each result to a JSONL file.

The loop is written against a small protocol so any system can be evaluated: an *answerer* with
``ask(image, question) -> Answer`` (a :class:`graft_vqa.Engine`, or a scripted fake in tests) and a
*loader* ``load_image(path, gsd_m) -> image`` (default :func:`graft_vqa.core.tiles.load_tile`).

The unit of work is a :class:`Unit`: one image with all its questions. :func:`answer_unit` loads the
image once and asks its questions in a row, so the engine's per-tile feature cache hits. An
*executor* decides where units run: :class:`LocalExecutor` in this process (the default), or the
actors of a Ray cluster (``--ray``, :mod:`graft_vqa.interfaces.evaluation.cluster`); ``--shard I/N``
splits the same units between job-array tasks. Wherever they run, this process writes the records.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

from tqdm import tqdm

from graft_vqa.interfaces.evaluation.metrics import is_correct
from graft_vqa.interfaces.evaluation.rsvqa import Question, RSVQASplit
from graft_vqa.core.errors import GraftVQAError, TileError, WeightsError
from graft_vqa.core.text import clean_text, clean_value

log = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
TOTAL_TIME = "total_s"  # the one total-time field of a record's timings: seconds the answerer took, as measured here


class Answerer(Protocol):
    """Anything that answers a question about an image (``graft_vqa.Engine`` satisfies it)."""

    def ask(self, image: Any, question: str) -> Any: ...


@dataclass(frozen=True)
class Selection:
    """Which questions of a split a run covers."""

    types: tuple[str, ...] | None = None  # question types to keep (None: all)
    limit: int | None = None  # keep the first N questions (by id) after the type filter
    shard: tuple[int, int] = (0, 1)  # (index, count): keep images with img_id % count == index


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes I/N, e.g. 0/4, not {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text}: need 0 <= I < N")
    return i, n


def select(questions: Iterable[Question], sel: Selection) -> list[Question]:
    """The questions ``sel`` keeps, in id order. The limit applies before sharding, so the shards of a
    limited run together cover exactly the unsharded limited run."""
    qs = [q for q in questions if sel.types is None or q.type in sel.types]
    if sel.limit is not None:
        qs = qs[: sel.limit]
    i, n = sel.shard
    return [q for q in qs if q.img_id % n == i]


def group_by_image(questions: Iterable[Question]) -> dict[int, list[Question]]:
    """Questions grouped by image id, images and questions in id order."""
    groups: dict[int, list[Question]] = {}
    for q in sorted(questions, key=lambda q: (q.img_id, q.qid)):
        groups.setdefault(q.img_id, []).append(q)
    return groups


@dataclass(frozen=True)
class Unit:
    """One image and its questions: the unit of work (a worker answers it whole, loading the image once)."""

    img_id: int  # image id
    path: Path  # the image file (on shared storage when workers run elsewhere)
    gsd_m: float  # its ground sample distance in metres
    questions: tuple[Question, ...]  # its questions, in id order


def make_units(data: RSVQASplit, questions: Iterable[Question]) -> list[Unit]:
    """The units of ``questions``, in image id order."""
    return [Unit(img_id, data.image_path(img_id), data.gsd_m.get(img_id, data.layout.default_gsd_m), tuple(qs))
            for img_id, qs in group_by_image(questions).items()]


def read_predictions(path: Path, repair: bool = False) -> dict[int, dict[str, Any]]:
    """Records of a predictions file by question id. A torn last line (a run killed mid-write) is
    dropped; with ``repair`` the file is rewritten without it so appends stay valid JSONL."""
    if not path.is_file():
        return {}
    records: dict[int, dict[str, Any]] = {}
    good: list[str] = []
    bad = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
                records[int(rec["qid"])] = rec
                good.append(line if line.endswith("\n") else line + "\n")
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                bad += 1
    if bad and repair:
        log.warning("dropping %d torn line(s) from %s", bad, path)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(good), encoding="utf-8")
        os.replace(tmp, path)
    return records


def program_id(source: str) -> str | None:
    """A short stable id of a program's source (None when there is no program)."""
    return hashlib.sha1(source.encode("utf-8")).hexdigest()[:12] if source else None


def make_record(q: Question, layout: str, answer: Any = None, *, status: str | None = None,
                error: str | None = None, seconds: float = 0.0) -> dict[str, Any]:
    """The JSONL record of one question: from an ``Answer``, or a failure (``status`` and ``error``)."""
    if answer is not None:
        status, error = getattr(answer, "status", "ok") or "ok", getattr(answer, "error", None)
        prediction, value = str(getattr(answer, "answer", "")), getattr(answer, "value", None)
        program, timings = getattr(answer, "program", "") or "", dict(getattr(answer, "timings", {}) or {})
    else:
        prediction, value, program, timings = "", None, "", {}
    status = status or "ok"
    failed = error is not None or status != "ok"
    if failed and status == "ok":
        status = "error"
    if not isinstance(value, (bool, int, float, str)) and value is not None:
        value = str(value)
    # Whatever answered (an Answer is clean already), no program text reaches a record raw.
    prediction, value = clean_text(prediction), clean_value(value)
    error = None if error is None else clean_text(str(error), keep_newlines=True)
    timings[TOTAL_TIME] = seconds  # replaces the engine's own total_s: one total per record
    return {
        "qid": q.qid, "img_id": q.img_id, "type": q.type, "question": q.question, "gt": q.gt,
        "prediction": prediction, "value": value,
        # informational: the report re-scores every record with eval.metrics.is_correct
        "correct": is_correct(layout, q.type, q.gt, prediction, value, failed=failed),
        "status": status, "error": error, "failed": failed,
        "program_id": program_id(program), "timings": timings,
        "untrained": bool(getattr(answer, "untrained", False)),  # random weights answered: not meaningful
    }


class JsonlWriter:
    """Appends records one line at a time, flushed and fsynced so a kill loses at most one line."""

    def __init__(self, path: Path, fsync: bool = True) -> None:
        self._f = open(path, "a", encoding="utf-8")
        self._fsync = fsync

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, sort_keys=True) + "\n")
        self._f.flush()
        if self._fsync:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def _ask_one(answerer: Answerer, image: Any, q: Question, layout: str) -> dict[str, Any]:
    """Ask one question; library errors become failed records, configuration errors propagate."""
    t0 = time.perf_counter()
    try:
        answer = answerer.ask(image, q.question)
    except WeightsError:
        raise
    except GraftVQAError as exc:
        return make_record(q, layout, status=type(exc).__name__, error=str(exc), seconds=time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - one broken question must not end a 5,000-question run
        log.debug("question %d crashed", q.qid, exc_info=True)
        return make_record(q, layout, status="exception", error=f"{type(exc).__name__}: {exc}",
                           seconds=time.perf_counter() - t0)
    return make_record(q, layout, answer, seconds=time.perf_counter() - t0)


@dataclass
class System:
    """What answers units: the answerer, its image loader and the release's layout (for scoring)."""

    answerer: Answerer  # ask(image, question) -> Answer
    load_image: Callable[[Path, float], Any]  # (path, gsd_m) -> image
    layout: str  # "lr" or "hr"

    @property
    def warnings(self) -> list[str]:
        """The answerer's engine-wide warnings so far (untrained weights, no SAM), if it has any."""
        return list(getattr(self.answerer, "warnings", []) or [])


def answer_unit(system: System, unit: Unit) -> Iterator[dict[str, Any]]:
    """The records of one unit, question by question: the image loaded once, its questions in a row
    (an unreadable image fails its questions with status ``tile_error``)."""
    try:
        image = system.load_image(unit.path, unit.gsd_m)
    except TileError as exc:
        for q in unit.questions:
            yield make_record(q, system.layout, status="tile_error", error=str(exc))
        return
    for q in unit.questions:
        yield _ask_one(system.answerer, image, q, system.layout)


def answer_unit_whole(system: System, unit: Unit) -> list[dict[str, Any]]:
    """:func:`answer_unit` as one list (what a worker of a cluster returns)."""
    return list(answer_unit(system, unit))


@dataclass
class Answered:
    """Records of one unit, handed over by an executor: some of its questions, or all of them."""

    unit: Unit  # the unit they belong to
    records: list[dict[str, Any]]  # new records
    worker: dict[str, Any]  # where they were answered: node, host, pid
    last: bool  # True when the unit is complete with these records


class Executor(Protocol):
    """Where units run: yields their records as they come, units in any order."""

    def run(self, units: list[Unit]) -> Iterator[Answered]: ...  # pragma: no cover - protocol


def local_worker() -> dict[str, Any]:
    """This process, as a worker: node "local", host name and process id."""
    return {"node": "local", "host": socket.gethostname(), "pid": os.getpid()}


class LocalExecutor:
    """Units one after another in this process; each record handed over as soon as it is made."""

    def __init__(self, system: System) -> None:
        self.system = system

    def run(self, units: list[Unit]) -> Iterator[Answered]:
        worker = local_worker()
        for unit in units:
            n = len(unit.questions)
            for i, record in enumerate(answer_unit(self.system, unit), start=1):
                yield Answered(unit, [record], worker, i == n)


def run(data: RSVQASplit, questions: list[Question], answerer: Answerer | None, out_dir: Path, *,
        load_image: Callable[[Path, float], Any] | None = None, resume: bool = False, progress: bool = True,
        fsync: bool = True, executor: Executor | None = None) -> dict[str, Any]:
    """Ask ``questions`` image by image, appending each record to ``out_dir/predictions.jsonl``.

    Units run on ``executor`` (default: :class:`LocalExecutor` with ``answerer`` and ``load_image``);
    this process writes every record as it arrives, with the ``worker`` that answered it. With
    ``resume`` the questions already in the file are skipped; without it an existing file is an error
    (so no run is silently mixed with another). Returns ``{"asked", "skipped", "wall_s", "units"}``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / PREDICTIONS
    if path.exists() and not resume:
        raise FileExistsError(f"{path} exists: pass --resume to continue that run, or choose another --out")
    done = read_predictions(path, repair=True) if resume else {}
    todo = [q for q in questions if q.qid not in done]
    units = make_units(data, todo)
    if executor is None:
        executor = LocalExecutor(System(answerer, load_image, data.layout.name))
    writer = JsonlWriter(path, fsync=fsync)
    bar = tqdm(total=len(units), unit="tile", desc="rsvqa", disable=not progress, dynamic_ncols=True)
    asked = 0
    t0 = time.perf_counter()
    try:
        for answered in executor.run(units):
            for record in answered.records:
                writer.write({**record, "worker": answered.worker})
            asked += len(answered.records)
            bar.set_postfix_str(f"{len(questions) - len(todo) + asked}/{len(questions)} questions", refresh=False)
            if answered.last:
                bar.update(1)
    finally:
        writer.close()
        bar.close()
    return {"asked": asked, "skipped": len(questions) - len(todo), "wall_s": time.perf_counter() - t0,
            "units": len(units)}
