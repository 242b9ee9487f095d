"""The search: the global threshold first, then one per concept, each maximising accuracy on the search tiles.

1. Every (mode, value) candidate at the engine's minimum area, for every concept at once ("uniform"),
   scored on the searchable objective questions (presence, count, area). The best is the global
   threshold (ties keep the engine's own setting, then the earlier candidate).
2. For each concept named by at least ``min_questions`` of those questions: every candidate for that
   concept (the global ones and its own, :mod:`.space`) while the others keep the global threshold,
   scored on the questions naming it. The
   concept keeps the global threshold unless a candidate answers strictly more of its questions
   right. Concepts with fewer questions keep the global one.

Each sweep is cheap first: every candidate is scored on the questions whose programs trace no
outline (counts, presence, areas, sizes), the ``TOP`` best are retried at each candidate minimum
area, and the ``FINALISTS`` best of all those (and the sweep's default) are scored on the remaining
questions (shapes, "next to"), whose outlines cost most; the choice is made on all questions.

A question whose only concept is ``c`` has the same answer under "all at t" and "c at t", so step 2
mostly reads answers step 1 already computed (see :class:`~.evaluate.Evaluator`).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from graft_vqa.interfaces.evaluation.calibrate.evaluate import Assignment, Evaluator
from graft_vqa.interfaces.evaluation.calibrate.questions import Planned
from graft_vqa.interfaces.evaluation.calibrate.space import SearchSpace
from graft_vqa.thresholds import Threshold

log = logging.getLogger(__name__)

TOP = 2  # best thresholds (on the outline-free questions) retried at every candidate minimum area
FINALISTS = 5  # best candidates (on the outline-free questions) scored on all questions


@dataclass
class ConceptChoice:
    """What one concept got, and the search-tile evidence behind it."""

    concept: str  # normalised name
    threshold: Threshold  # the chosen threshold (the global one unless calibrated)
    source: str  # "calibrated", "global: too few questions" or "global: none better"
    questions: int  # searchable objective questions naming the concept, on the search tiles
    correct: int  # of those, right with the chosen threshold
    correct_global: int  # of those, right with the global threshold
    candidates: int = 0  # thresholds tried for this concept

    def to_dict(self) -> dict[str, Any]:
        return {**self.threshold.to_dict(), "source": self.source, "questions": self.questions,
                "search_correct": self.correct, "search_correct_global": self.correct_global,
                "candidates": self.candidates}


@dataclass
class SearchResult:
    """The global threshold, each concept's choice and how the search went."""

    global_threshold: Threshold
    questions: int  # searchable objective questions on the search tiles
    correct: int  # right with the global threshold
    correct_engine: int  # right with the engine's own setting
    concepts: dict[str, ConceptChoice]
    scores: list[tuple[Threshold, int, bool]] = field(default_factory=list)  # uniform candidates: (t, right, on all)

    def assignment(self) -> Assignment:
        """The calibrated thresholds as an assignment (concepts that keep the global one left out)."""
        overrides = tuple(sorted((c, ch.threshold) for c, ch in self.concepts.items() if ch.source == "calibrated"))
        return Assignment(self.global_threshold, overrides)


def _score(evaluator: Evaluator, assignment: Assignment, questions: list[Planned]) -> int:
    return sum(evaluator.correct(p, assignment) for p in questions)


def _best(scores: dict[Threshold, int], prefer: Threshold) -> Threshold:
    """The candidate with the most right answers; ties: ``prefer``, then the first tried."""
    top = max(scores.values())
    if scores.get(prefer) == top:
        return prefer
    return next(t for t, s in scores.items() if s == top)


@dataclass
class Sweep:
    """One sweep's outcome: the choice, and every candidate's right answers."""

    best: Threshold
    cheap: dict[Threshold, int]  # right answers on the outline-free questions, every candidate
    full: dict[Threshold, int]  # right answers on all questions, the finalists

    def rows(self) -> list[tuple[Threshold, int, bool]]:
        """(candidate, right answers, counted on all questions) for the report."""
        return [(t, self.full.get(t, s), t in self.full) for t, s in self.cheap.items()]


def _sweep(evaluator: Evaluator, space: SearchSpace, questions: list[Planned], assign: Any,
           prefer: Threshold, concept: str | None = None) -> Sweep:
    """Choose among the candidates (the global ones, plus ``concept``'s own; ``assign(t)`` -> Assignment),
    cheap questions first (module docstring)."""
    cheap_qs = [p for p in questions if not p.outlines]
    dear_qs = [p for p in questions if p.outlines]
    candidates = dict.fromkeys([*space.thresholds(concept), prefer])
    cheap = {t: _score(evaluator, assign(t), cheap_qs) for t in candidates}
    for t in sorted(cheap, key=lambda t: -cheap[t])[:TOP]:
        for variant in space.with_areas(t):
            if variant not in cheap:
                cheap[variant] = _score(evaluator, assign(variant), cheap_qs)
    finalists = dict.fromkeys([prefer, *sorted(cheap, key=lambda t: -cheap[t])[:FINALISTS]])
    full = {t: cheap[t] + _score(evaluator, assign(t), dear_qs) for t in finalists}
    return Sweep(_best(full, prefer), cheap, full)


def by_concept(questions: Iterable[Planned]) -> dict[str, list[Planned]]:
    """Questions grouped by each concept they name (a question naming two concepts is in both groups)."""
    groups: dict[str, list[Planned]] = defaultdict(list)
    for p in questions:
        for concept in p.keys:
            groups[concept].append(p)
    return dict(sorted(groups.items()))


def search(evaluator: Evaluator, questions: list[Planned], space: SearchSpace, min_questions: int) -> SearchResult:
    """Choose the global threshold and each concept's (see the module docstring)."""
    engine = space.base
    sweep = _sweep(evaluator, space, questions, Assignment.uniform, engine)
    glob, scores = sweep.best, sweep.full
    log.info("global threshold %s: %d of %d right (engine's %s: %d)", glob.describe(), scores[glob], len(questions),
             engine.describe(), scores[engine])
    uniform = Assignment.uniform(glob)
    choices: dict[str, ConceptChoice] = {}
    for concept, qs in by_concept(questions).items():
        right_global = _score(evaluator, uniform, qs)
        if len(qs) < min_questions:
            choices[concept] = ConceptChoice(concept, glob, "global: too few questions", len(qs), right_global,
                                             right_global)
            continue
        own = _sweep(evaluator, space, qs, lambda t, c=concept: uniform.but(c, t), glob, concept)
        best = own.best
        better = own.full[best] > right_global
        choices[concept] = ConceptChoice(concept, best if better else glob,
                                         "calibrated" if better else "global: none better", len(qs),
                                         own.full[best] if better else right_global, right_global, len(own.cheap))
    return SearchResult(glob, len(questions), scores[glob], scores[engine], choices, sweep.rows())
