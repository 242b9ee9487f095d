"""The questions a calibration learns from: their real programs (rule planner), the concepts those
programs look for, and the split of the tiles into a search part and a held-out part.

A program is *searchable* when its only contact with perception is ``image_patch.find``, ``exists``,
``count`` or ``coverage_m2`` with a literal concept name (and ``filter_related``, attributes of the
found patches): then its answer is a function of those concepts' instances on the whole tile, and
the search may run it for each candidate threshold. The rule planner writes only such programs (and
``best_text_match`` for rural/urban, which no threshold changes).
"""
from __future__ import annotations

import ast
import hashlib
import logging
from dataclasses import dataclass
from types import CodeType
from typing import Iterable

from graft_vqa.core.errors import PlannerError
from graft_vqa.interfaces.evaluation.rsvqa import Question
from graft_vqa.thresholds import normalise_concept

log = logging.getLogger(__name__)

FIND_CALLS = frozenset({"find", "exists", "count", "coverage_m2"})  # root calls that take a concept name
# members that trace outlines (the costly part of answering): shapes, touching relations, geometry out
OUTLINE_MEMBERS = frozenset({"shape", "filter_related", "is_next_to", "distance_m", "polygon", "polygon_px",
                             "to_geojson"})
NEUTRAL_CALLS = frozenset({"filter_related", "best_text_match"})  # root calls no threshold reaches directly
ROOT = "image_patch"


@dataclass(frozen=True)
class Planned:
    """One question with its program and the concepts the program finds."""

    question: Question  # qid, img_id, type, text, ground truth
    source: str  # the program ("" when the planner failed)
    code: CodeType | None  # the compiled program (None when the planner failed)
    concepts: tuple[str, ...]  # names passed to find & co., as written, sorted
    searchable: bool  # the search may run it per candidate (see the module docstring)
    outlines: bool = False  # the program traces outlines (shapes, relations): costly to run per candidate
    error: str | None = None  # why planning failed

    @property
    def keys(self) -> tuple[str, ...]:
        """The concepts in the thresholds file's lookup form."""
        return tuple(dict.fromkeys(normalise_concept(c) for c in self.concepts))


def traces_outlines(source: str) -> bool:
    """True when the program reads a member that traces outlines (:data:`OUTLINE_MEMBERS`)."""
    return any(isinstance(node, ast.Attribute) and node.attr in OUTLINE_MEMBERS for node in ast.walk(ast.parse(source)))


def program_concepts(source: str) -> tuple[tuple[str, ...], bool]:
    """(the concept names of ``source``'s find calls, whether the program is searchable)."""
    tree = ast.parse(source)
    names: set[str] = set()
    searchable = True
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not isinstance(node.value, ast.Name):
            continue
        if node.value.id != ROOT:
            if node.attr in FIND_CALLS | {"crop", "verify_property"}:  # finds inside a found patch or a crop
                searchable = False
            continue
        if node.attr in NEUTRAL_CALLS:
            continue
        searchable = searchable and node.attr in FIND_CALLS
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in FIND_CALLS
                and isinstance(node.func.value, ast.Name) and node.func.value.id == ROOT):
            arg = node.args[0] if len(node.args) == 1 and not node.keywords else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
            else:
                searchable = False
    return tuple(sorted(names)), searchable


def plan_questions(questions: Iterable[Question], planner: object) -> list[Planned]:
    """Every question with the program ``planner`` writes for it (planned once per distinct text)."""
    programs: dict[str, Planned] = {}
    out: list[Planned] = []
    for q in questions:
        known = programs.get(q.question)
        if known is None:
            known = _plan_one(q, planner)
            programs[q.question] = known
        out.append(Planned(q, known.source, known.code, known.concepts, known.searchable, known.outlines,
                           known.error))
    return out


def _plan_one(q: Question, planner: object) -> Planned:
    try:
        source = planner.plan(q.question).source  # type: ignore[attr-defined]
    except PlannerError as exc:
        return Planned(q, "", None, (), False, error=str(exc))
    concepts, searchable = program_concepts(source)
    return Planned(q, source, compile(source, "<program>", "exec"), concepts, searchable, traces_outlines(source))


def split_tiles(img_ids: Iterable[int], holdout: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """(search tiles, held-out tiles): ``round(holdout * n)`` tiles (at least one when 0 < holdout and
    n > 1) held out, chosen by a seeded hash of the tile id, so the split is stable across runs."""
    ids = sorted(set(img_ids))
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"--holdout must be a fraction in [0, 1), got {holdout}")
    n_out = round(holdout * len(ids))
    if holdout > 0 and len(ids) > 1:
        n_out = min(max(n_out, 1), len(ids) - 1)
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    held = set(ranked[:n_out])
    return [i for i in ids if i not in held], [i for i in ids if i in held]
