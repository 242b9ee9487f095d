"""Held-out accuracy before and after calibration, measured by the real engine (sandboxed programs).

The held-out tiles never took part in the search. Their questions are answered twice by a
:class:`~graft_vqa.engine.Engine` reading the same cached score maps: with the engine's own settings
("before") and with the thresholds file just written ("after"). Each run's records go to a
``predictions.jsonl`` like ``graft-vqa eval`` writes, and are summarised per question type and per
concept.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from graft_vqa.interfaces.evaluation.calibrate.evaluate import Evaluator
from graft_vqa.interfaces.evaluation.calibrate.questions import Planned
from graft_vqa.interfaces.evaluation.calibrate.search import SearchResult, by_concept
from graft_vqa.interfaces.evaluation.metrics import summarize
from graft_vqa.interfaces.evaluation.rsvqa import RSVQASplit
from graft_vqa.interfaces.evaluation.runner import PREDICTIONS, read_predictions, run

RUNS = ("before", "after")


def answer_heldout(data: RSVQASplit, planned: list[Planned], engines: dict[str, Any], out_dir: Path,
                   load_image: Callable[[Path, float], Any], progress: bool) -> dict[str, dict[int, dict[str, Any]]]:
    """Run each engine (``{"before": e, "after": e}``) on the held-out questions; records by run and qid."""
    questions = [p.question for p in planned]
    records: dict[str, dict[int, dict[str, Any]]] = {}
    for name, engine in engines.items():
        folder = out_dir / f"heldout_{name}"
        shutil.rmtree(folder, ignore_errors=True)  # this run's own output from an earlier calibration
        run(data, questions, engine, folder, load_image=load_image, progress=progress, fsync=False)
        records[name] = read_predictions(folder / PREDICTIONS)
    return records


def _accuracy(records: list[dict[str, Any]]) -> dict[str, Any]:
    right = sum(bool(r["correct"]) for r in records)
    return {"n": len(records), "correct": right, "accuracy": right / len(records) if records else None}


def summarise(planned: list[Planned], records: dict[str, dict[int, dict[str, Any]]],
              types: list[str]) -> dict[str, Any]:
    """Per type (RSVQA metrics) and per concept, before and after."""
    out: dict[str, Any] = {"questions": len(planned), "tiles": len({p.question.img_id for p in planned})}
    for name in RUNS:
        recs = [records[name][p.question.qid] for p in planned if p.question.qid in records[name]]
        out[name] = summarize(recs, types)
    out["per_concept"] = {
        concept: {name: _accuracy([records[name][p.question.qid] for p in qs if p.question.qid in records[name]])
                  for name in RUNS}
        for concept, qs in by_concept(planned).items()}
    return out


def agreement(evaluator: Evaluator, result: SearchResult, planned: list[Planned],
              after: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """How often the search's in-process answers equal the engine's "after" answers on the held-out
    searchable questions (all of them, unless SAM refines in the engine)."""
    assignment = result.assignment()
    checked = same = 0
    differ: list[int] = []
    for p in planned:
        record = after.get(p.question.qid)
        if not p.searchable or record is None:
            continue
        outcome = evaluator.outcome(p, assignment)
        checked += 1
        if outcome.prediction == record["prediction"] and outcome.failed == bool(record["failed"]):
            same += 1
        else:
            differ.append(p.question.qid)
    return {"checked": checked, "same": same, "differ_qids": differ[:20]}
