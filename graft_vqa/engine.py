"""The :class:`Engine`: question + tile → program → sandbox → :class:`Answer`.

An engine is built once and reused across many questions and tiles. Models load lazily on first
use, so an engine given its own scorer never needs GRAFT weights. Per tile, the root
:class:`ImagePatch` (and with it the scorer's cached features and score maps) is kept in a small
LRU, so a second question on the same tile reuses everything.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from typing import Any

from graft_vqa import weights
from graft_vqa.answer import Answer
from graft_vqa.coerce import coerce
from graft_vqa.config import EngineConfig
from graft_vqa.errors import GraftVQAError, PlannerError, ProgramError, QuestionNotUnderstoodError

log = logging.getLogger(__name__)

_TILES_KEPT = 4  # root patches (and their cached features) kept per engine


class Engine:
    """Answers questions about tiles.

    Args:
        scorer: any object with ``score_maps(tile, queries)`` (and ``score_image`` for
            ``best_text_match``); ``None`` builds the GRAFT scorer from the configured weights.
        refiner: a SAM refiner; ``None`` builds one from SAM weights when found, else runs on
            components with one warning.
        planner: an object with ``plan(question) -> Program``; ``None`` is the offline rule planner.
        config: :class:`EngineConfig`; ``None`` is the default configuration.
    """

    def __init__(self, scorer: Any = None, refiner: Any = None, planner: Any = None,
                 config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._scorer = scorer
        self._refiner = refiner
        self._refiner_ready = refiner is not None
        self._sam_missing: str | None = None  # why SAM is off, said by each tile's context when find runs
        self._planner = planner
        self._warnings: list[str] = []  # engine-wide warnings, carried by every answer
        self._roots: OrderedDict[str, Any] = OrderedDict()
        self._programs: dict[str, Any] = {}  # normalised question -> Program, for this engine's life
        self._disk_cache: Any = None  # ProgramCache in config.cache_dir (default $GRAFT_VQA_HOME/programs)

    # --- lazily built parts --------------------------------------------------------------------
    @property
    def scorer(self) -> Any:
        if self._scorer is None:
            from graft_vqa.models import build_default_scorer

            self._scorer, warnings = build_default_scorer(self.config)
            self._warnings.extend(warnings)
        return self._scorer

    @property
    def refiner(self) -> Any:
        if not self._refiner_ready:
            self._refiner_ready = True
            if self.config.find.refine == "sam":
                from graft_vqa.models import build_default_refiner

                self._refiner, warnings = build_default_refiner(self.config)
                if self._refiner is None and warnings:
                    self._sam_missing = warnings[0]  # said by the context, once per tile that runs find
                else:
                    self._warnings.extend(warnings)
        return self._refiner

    @property
    def planner(self) -> Any:
        if self._planner is None:
            from graft_vqa.planner import RulePlanner

            self._planner = RulePlanner()
        return self._planner

    @property
    def warnings(self) -> list[str]:
        """Engine-wide warnings so far (untrained weights, no SAM, ...)."""
        return list(self._warnings)

    # --- tiles ---------------------------------------------------------------------------------
    def image_patch(self, image: Any) -> Any:
        """The root :class:`ImagePatch` for ``image`` (path, array, PIL image or Tile), cached per tile."""
        from graft_vqa.image_patch import SAM_MISSING, ImagePatch, PatchContext
        from graft_vqa.tile import load_tile

        tile = load_tile(image, gsd_m=self.config.gsd_m)
        root = self._roots.get(tile.key)
        if root is None:
            refiner = self.refiner  # built first: it sets why SAM is missing
            context = PatchContext(tile=tile, scorer=self.scorer, refiner=refiner, config=self.config.find,
                                   sam_missing=self._sam_missing or SAM_MISSING)
            root = ImagePatch(tile, context=context)
            self._roots[tile.key] = root
            while len(self._roots) > _TILES_KEPT:
                self._roots.popitem(last=False)
        self._roots.move_to_end(tile.key)
        return root

    # --- programs ------------------------------------------------------------------------------
    def plan(self, question: str, root: Any = None) -> tuple[Any, Any]:
        """The program for ``question`` and, when planning already ran it, its execution.

        Programs come from this engine's memory, then the on-disk cache, then the planner. A
        non-deterministic planner (an LLM) gets syntax and runtime errors fed back, bounded.
        """
        from graft_vqa.planner import ProgramCache, normalise_question, plan_cached

        key = normalise_question(question)
        program = self._programs.get(key)
        if program is not None:
            return program, None
        executions: dict[str, Any] = {}

        def run(source: str) -> tuple[bool, str | None]:
            executions[source] = self._run(source, root)
            return executions[source].status == "ok", executions[source].error

        check = None if root is None or getattr(self.planner, "deterministic", False) else run
        if self._disk_cache is None:
            self._disk_cache = ProgramCache(self.config.cache_dir or weights.home() / "programs")
        program = plan_cached(self.planner, question, self._disk_cache, run=check,
                              max_attempts=self.config.planner_attempts)
        self._programs[key] = program
        return program, executions.get(program.source)

    def _run(self, source: str, root: Any) -> Any:
        from graft_vqa import sandbox

        root.context.begin_question()
        return sandbox.run(source, root, timeout_s=self.config.sandbox_timeout_s,
                           call_budget=self.config.sandbox_call_budget)

    # --- answering -----------------------------------------------------------------------------
    def ask(self, image: Any, question: str) -> Answer:
        """Answer ``question`` about ``image``. Failures come back as an :class:`Answer` with ``error``
        set (bad input, such as a missing tile or missing weights, raises a :class:`GraftVQAError`)."""
        timings: dict[str, float] = {}
        start = time.perf_counter()
        root = self.image_patch(image)
        timings["load_s"] = time.perf_counter() - start
        try:
            t0 = time.perf_counter()
            program, execution = self.plan(question, root)
            timings["plan_s"] = time.perf_counter() - t0
        except QuestionNotUnderstoodError as exc:
            return self._failed(question, "", "not_understood", str(exc), timings, root)
        except PlannerError as exc:
            failed = getattr(exc, "program", None)
            return self._failed(question, failed.source if failed else "", "planner_error", str(exc), timings, root)

        t0 = time.perf_counter()
        if execution is None:
            execution = self._run(program.source, root)
        timings["run_s"] = time.perf_counter() - t0
        if execution.status != "ok":
            return self._failed(question, program.source, execution.status, execution.error, timings, root)
        try:
            coerced = coerce(execution.value, program=program.source)
        except ProgramError as exc:
            return self._failed(question, program.source, "error", str(exc), timings, root)
        except Exception as exc:  # noqa: BLE001 - an odd return value must fail the answer, not the caller
            log.exception("could not read the program's return value %r", execution.value)
            return self._failed(question, program.source, "error",
                                f"could not read the program's return value ({type(exc).__name__}: {exc})",
                                timings, root)
        timings["total_s"] = time.perf_counter() - start
        return Answer(question=question, answer=coerced.answer, value=coerced.value, kind=coerced.kind,
                      program=program.source, detections=root.context.question_detections(),
                      timings=timings, warnings=self._answer_warnings(root), crs=_crs_string(root.tile))

    def _failed(self, question: str, program: str, status: str, error: str | None, timings: dict[str, float],
                root: Any) -> Answer:
        log.info("question %r failed (%s): %s", question, status, error)
        return Answer(question=question, answer=f"failed ({status})", value=None, kind="text", program=program,
                      timings=timings, warnings=self._answer_warnings(root), error=error or status, status=status,
                      crs=_crs_string(root.tile))

    def _answer_warnings(self, root: Any) -> list[str]:
        seen: dict[str, None] = dict.fromkeys(self._warnings + list(root.context.warnings))
        return list(seen)


def _crs_string(tile: Any) -> str | None:
    crs = getattr(tile, "crs", None)
    if crs is None:
        return None
    try:
        return crs.to_string()
    except Exception:  # noqa: BLE001 - any CRS object without to_string
        return str(crs)


def ask(image: Any, question: str, **options: Any) -> Answer:
    """Answer one question about one image with a fresh engine.

    ``options`` are :class:`EngineConfig` fields (``allow_untrained=True``, ``gsd_m=10``, ...) plus
    ``scorer``, ``refiner`` and ``planner``. For many questions, build one :class:`Engine` and reuse it.
    """
    parts = {k: options.pop(k) for k in ("scorer", "refiner", "planner") if k in options}
    known = {f.name for f in dataclasses.fields(EngineConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise GraftVQAError(f"unknown option(s) for ask(): {', '.join(unknown)}; "
                            f"use scorer, refiner, planner or an EngineConfig field: {', '.join(sorted(known))}")
    return Engine(config=EngineConfig(**options), **parts).ask(image, question)
