"""Answering the search tiles' questions under candidate thresholds, fast and exactly as the engine would.

Each question's real program runs against a real :class:`~graft_vqa.image_patch.ImagePatch` whose
:class:`~graft_vqa.image_patch.PatchContext` holds the candidate as a thresholds table (the same
lookup ``--thresholds`` uses) and reads the cached score maps, so ``find`` is the real pipeline (SAM
off). Programs run in this process, not in the sandbox: only the rule planner's programs, which this
code base writes itself, are run this way (the held-out figures come from the sandboxed engine).

An answer depends only on the instances of the program's concepts, and those only on the
foreground mask (score >= cut, valid pixels), the map (raw or contrast) and the minimum area. So
an answer is remembered under (tile, program, each concept's foreground digest and minimum area):
candidates that cut a concept's map the same way share their answers, and a question is run
again only when its concepts' instances change.
"""
from __future__ import annotations

import builtins
import functools
import hashlib
import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from graft_vqa.coerce import coerce
from graft_vqa.config import FindConfig
from graft_vqa.core.lru import LRU
from graft_vqa.image_patch import ImagePatch, PatchContext
from graft_vqa.interfaces.evaluation.calibrate.questions import Planned
from graft_vqa.interfaces.evaluation.metrics import is_correct
from graft_vqa.perception.components import threshold_value
from graft_vqa.perception.tile_maps import TileMaps
from graft_vqa.thresholds import Threshold, ThresholdTable, normalise_concept

log = logging.getLogger(__name__)

PROGRAM_BUILTINS = {name: getattr(builtins, name) for name in (
    "len", "any", "all", "sum", "min", "max", "sorted", "abs", "round", "int", "float", "bool", "str", "list",
    "tuple", "set", "dict", "range", "enumerate", "zip", "reversed", "isinstance", "ValueError", "TypeError")}
CONTEXTS_KEPT = 8  # (tile, assignment) contexts kept: the search walks candidates tile by tile


@dataclass(frozen=True)
class Assignment:
    """Which threshold each concept gets: ``default`` for all, except ``overrides`` (normalised names)."""

    default: Threshold
    overrides: tuple[tuple[str, Threshold], ...] = ()

    def of(self, concept: str) -> Threshold:
        """The threshold ``find(concept)`` uses (the thresholds table's own lookup)."""
        return self.table.lookup(concept)

    @functools.cached_property
    def table(self) -> ThresholdTable:
        """This assignment as the thresholds table a :class:`PatchContext` reads."""
        return ThresholdTable(self.default, dict(self.overrides), {"weights_id": ""})

    @classmethod
    def uniform(cls, threshold: Threshold) -> "Assignment":
        """Every concept at ``threshold``."""
        return cls(threshold)

    def but(self, concept: str, threshold: Threshold) -> "Assignment":
        """This assignment with ``concept`` at ``threshold``."""
        rest = tuple((c, t) for c, t in self.overrides if c != normalise_concept(concept))
        return Assignment(self.default, tuple(sorted(rest + ((normalise_concept(concept), threshold),),
                                                     key=lambda ct: ct[0])))


@dataclass(frozen=True)
class Outcome:
    """A program's answer under one assignment, as the evaluation runner would record it."""

    prediction: str
    value: Any
    failed: bool
    error: str | None = None


class Evaluator:
    """Answers searchable questions on the search tiles under :class:`Assignment`s, with memoisation."""

    def __init__(self, tiles: dict[int, Any], raw: Any, contrast: Any, base: FindConfig, layout: str) -> None:
        self.tiles = tiles  # img_id -> Tile
        self.raw = raw  # cached raw score maps (a MapCache)
        self.contrast = contrast  # cached contrast probability maps (a MapCache over a ContrastScorer)
        self.base = replace(base, refine="none", thresholds=None)  # the engine's find settings, SAM off
        self.layout = layout  # "lr" or "hr" (how answers are scored)
        self._digests: dict[tuple, bytes] = {}  # (img_id, concept, mode, value) -> foreground digest
        self._answers: dict[tuple, Outcome] = {}  # memo: (img_id, source, concept keys) -> outcome
        self._contexts: LRU[tuple, ImagePatch] = LRU(max_items=CONTEXTS_KEPT)
        self.runs = 0  # programs run (memo misses)
        self.lookups = 0  # answers asked for

    # --- what determines a concept's instances ---------------------------------------------
    def score_map(self, img_id: int, concept: str, mode: str) -> np.ndarray:
        """The (H, W) map ``find`` thresholds for ``concept`` in ``mode`` (cached)."""
        source = self.contrast if mode == "contrast" else self.raw
        return source.score_maps(self.tiles[img_id], [concept])[0]

    def digest(self, img_id: int, concept: str, threshold: Threshold) -> bytes:
        """A digest of the foreground ``find`` cuts for ``concept`` on the whole tile under ``threshold``."""
        key = (img_id, concept, threshold.mode, threshold.value)
        found = self._digests.get(key)
        if found is None:
            tile = self.tiles[img_id]
            score = self.score_map(img_id, concept, threshold.mode)
            valid = np.asarray(tile.valid_mask(), dtype=bool)
            cut = threshold_value(score, valid, threshold.apply(self.base))
            fg = (score >= cut) & valid
            found = hashlib.blake2b(np.packbits(fg).tobytes(), digest_size=16).digest()
            self._digests[key] = found
        return found

    # --- answers -----------------------------------------------------------------------------
    def outcome(self, p: Planned, assignment: Assignment) -> Outcome:
        """The answer of ``p``'s program on its tile when each concept gets its assigned threshold."""
        self.lookups += 1
        img_id = p.question.img_id
        parts = []
        for concept in p.concepts:
            t = assignment.of(concept)
            parts.append((concept, t.mode == "contrast", self.digest(img_id, concept, t), t.min_area_m2))
        key = (img_id, p.source, tuple(parts))
        found = self._answers.get(key)
        if found is None:
            found = self._answers[key] = self._run(p, self._root(img_id, assignment))
            self.runs += 1
        return found

    def correct(self, p: Planned, assignment: Assignment) -> bool:
        """Whether ``p`` is answered right under ``assignment`` (RSVQA rules)."""
        o = self.outcome(p, assignment)
        q = p.question
        return is_correct(self.layout, q.type, q.gt, o.prediction, o.value, failed=o.failed)

    def _root(self, img_id: int, assignment: Assignment) -> ImagePatch:
        key = (img_id, assignment)
        root = self._contexts.get(key)
        if root is None:
            tile = self.tiles[img_id]
            context = PatchContext(tile=tile, scorer=self.raw, config=self.base, thresholds=assignment.table,
                                   contrast=TileMaps(tile, self.contrast))
            root = self._contexts.put(key, ImagePatch(tile, context=context, root=True))
        return root

    def _run(self, p: Planned, root: ImagePatch) -> Outcome:
        namespace: dict[str, Any] = {"__builtins__": PROGRAM_BUILTINS}
        try:
            exec(p.code, namespace)  # noqa: S102 - the rule planner's own programs (see the module docstring)
            value = namespace["execute_command"](root)
            coerced = coerce(value, program=p.source)
        except Exception as exc:  # noqa: BLE001 - a failing program is a wrong answer, as in the engine
            return Outcome("", None, True, f"{type(exc).__name__}: {exc}")
        return Outcome(coerced.answer, coerced.value, False)
