"""The :class:`Engine`: question + tile → program → sandbox → :class:`Answer`.

An engine is built once and reused across many questions and tiles. Models load lazily on first
use, so an engine given its own scorer never needs GRAFT weights. Per tile, the root
:class:`ImagePatch` (and with it the scorer's cached features and score maps) is kept in a small
LRU, so a second question on the same tile reuses everything.

Programs run in one place, :meth:`Engine._execute`: planning runs a candidate program through it
to check it (LLM planners), and answering runs the chosen program through it again, which reuses
that last run instead of repeating it.
"""
from __future__ import annotations

import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

from graft_vqa import weights
from graft_vqa.answer import Answer
from graft_vqa.coerce import coerce
from graft_vqa.config import EngineConfig
from graft_vqa.core.errors import ConfigError, PlannerError, ProgramError, QuestionNotUnderstoodError
from graft_vqa.core.lru import LRU
from graft_vqa.core.memory import release_free_memory
from graft_vqa.perception.contrast import load_vocabulary
from graft_vqa.perception.protocols import Refiner, Scorer
from graft_vqa.planner.program import Planner, Program
from graft_vqa.planner.queries import program_queries
from graft_vqa.thresholds import ThresholdTable, load_thresholds, scorer_id

if TYPE_CHECKING:  # pragma: no cover - annotations only (the modules load torch)
    from graft_vqa.image_patch import ImagePatch
    from graft_vqa.sandbox import Execution
    from graft_vqa.scene.plan import Progress  # graft_vqa.scene loads torch: a rejection must not wait for it
    from graft_vqa.scene.windows import WindowRunner

log = logging.getLogger(__name__)

TILES_KEPT = 4  # root patches (and their cached features) kept per engine


class Engine:
    """Answers questions about tiles.

    Args:
        scorer: a :class:`~graft_vqa.perception.protocols.Scorer` (``score_maps(tile, queries)``, and
            ``score_image`` for ``best_text_match``); ``None`` builds the GRAFT scorer from the weights.
        refiner: a :class:`~graft_vqa.perception.protocols.Refiner` (SAM); ``None`` builds one from SAM
            weights when found, else ``find`` runs on the components with one warning.
        planner: a :class:`~graft_vqa.planner.Planner`; ``None`` is the offline rule planner.
        config: :class:`EngineConfig`; ``None`` is the default configuration.
        progress: called with (windows done, windows in all, what) while a scene is read (the app's
            progress bar); the command line draws a tqdm bar.
        window_runner: where a scene's windows are read and scored (a
            :class:`~graft_vqa.scene.windows.WindowRunner`); ``None`` runs them in this process,
            ``graft_vqa.distributed.RayWindowRunner`` on a Ray cluster. The answers are the same.
        **options: :class:`EngineConfig`, :class:`~graft_vqa.config.FindConfig` or
            :class:`~graft_vqa.config.SceneConfig` fields applied on top of ``config``
            (``Engine(allow_untrained=True, threshold=0.1)``).
    """

    def __init__(self, scorer: Scorer | None = None, refiner: Refiner | None = None,
                 planner: Planner | None = None, config: EngineConfig | None = None, *,
                 progress: Progress | None = None, window_runner: WindowRunner | None = None,
                 **options: Any) -> None:
        _check_parts(scorer, refiner, planner, config)
        self.progress = progress  # (done, total, what) -> None during scene work (a tqdm bar is drawn anyway)
        self.window_runner = window_runner  # where scene windows run (None: in this process)
        self.config = EngineConfig.from_options(config, **options) if options else (config or EngineConfig())
        self._scorer = scorer
        self._refiner = refiner
        self._refiner_ready = refiner is not None
        self._sam_missing: str | None = None  # why SAM is off, said by each tile's context when find runs
        self._planner = planner
        self._warnings: list[str] = []  # engine-wide warnings, carried by every answer
        self._roots: LRU[str, ImagePatch] = LRU(max_items=TILES_KEPT)
        self._programs: dict[str, Program] = {}  # normalised question -> Program, for this engine's life
        self._disk_cache: Any = None  # ProgramCache in config.cache_dir (default $GRAFT_VQA_HOME/programs)
        self._last_run: tuple[str, int, Execution] | None = None  # (source, id(root), execution) of the last run
        self.thresholds: ThresholdTable | None = _thresholds(self.config)  # per-concept thresholds, validated now
        self._vocabulary = _vocabulary(self.config, self.thresholds)  # contrast mode's background, checked now
        self._thresholds_checked = False  # the thresholds' weights compared with the scorer's (once)

    # --- lazily built parts --------------------------------------------------------------------
    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            from graft_vqa.models import build_default_scorer

            self._scorer, warnings = build_default_scorer(self.config)
            self._warnings.extend(warnings)
        return self._scorer

    @property
    def refiner(self) -> Refiner | None:
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
    def planner(self) -> Planner:
        if self._planner is None:
            from graft_vqa.planner import RulePlanner

            self._planner = RulePlanner()
        return self._planner

    @property
    def warnings(self) -> list[str]:
        """Engine-wide warnings so far (untrained weights, no SAM, ...)."""
        return list(self._warnings)

    # --- tiles ---------------------------------------------------------------------------------
    def image_patch(self, image: Any, aoi: Any = None, aoi_crs: Any = None) -> ImagePatch:
        """The root :class:`ImagePatch` for ``image`` (path, array, PIL image or Tile), cached per tile and AOI.

        ``aoi`` (a shapely geometry, a GeoJSON-like dict or a vector file) in ``aoi_crs`` restricts the
        questions to an area of interest; the root is then the AOI's bounding window. Rasters larger
        than ``config.scene_pixels`` are answered through a scene plan, window by window.
        """
        from graft_vqa.core.aoi import resolve_aoi
        from graft_vqa.core.tiles import load_tile

        tile = load_tile(image, gsd_m=self.config.gsd_m)
        placed = None if aoi is None else resolve_aoi(aoi, tile, aoi_crs)
        key = tile.key if placed is None else f"{tile.key}:aoi={hashlib.sha1(placed.geometry_px.wkb).hexdigest()}"
        root = self._roots.get(key)
        if root is None:
            root = self._make_root(tile, placed)
            self._roots.put(key, root)
        return root

    def _make_root(self, tile: Any, aoi: Any) -> ImagePatch:
        from graft_vqa.image_patch import SAM_MISSING, ImagePatch, PatchContext

        refiner = self.refiner  # built first: it sets why SAM is missing
        source = None
        if tile.height * tile.width > self.config.scene_pixels:
            from graft_vqa.scene import SceneMaps

            source = SceneMaps(tile, self.scorer, self.config.scene, aoi=aoi, progress=self._report_progress,
                               runner=self.window_runner)
        self._check_thresholds()
        context = PatchContext(tile=tile, scorer=self.scorer, refiner=refiner, config=self.config.find,
                               sam_missing=self._sam_missing or SAM_MISSING, aoi=aoi, source=source,
                               retain_mb=self.config.find_cache_mb,
                               thresholds=self.thresholds)
        box = None if aoi is None else aoi.box
        return ImagePatch(tile, box=box, context=context, root=True)

    def _report_progress(self, done: int, total: int, what: str) -> None:
        """Hands a scene's window progress to ``self.progress`` as it is now: a root kept for later questions
        reports to the callback of the question being answered (the app sets one per question)."""
        if self.progress is not None:
            self.progress(done, total, what)

    def _check_thresholds(self) -> None:
        """Once: warn on every answer when the thresholds file was calibrated for other weights (or, for its
        contrast entries, against another background vocabulary)."""
        if self.thresholds is None or self._thresholds_checked:
            return
        self._thresholds_checked = True
        warnings = [self.thresholds.weights_warning(scorer_id(self.scorer))]
        if self._vocabulary is not None:
            warnings.append(self.thresholds.vocabulary_warning(self._vocabulary))
        for message in filter(None, warnings):
            log.warning(message)
            self._warnings.append(message)

    # --- programs ------------------------------------------------------------------------------
    def plan(self, question: str, root: ImagePatch | None = None) -> Program:
        """The program for ``question``: from this engine's memory, then the on-disk cache, then the
        planner. A non-deterministic planner (an LLM) has each candidate run on ``root`` (when given)
        and gets syntax and runtime errors fed back, bounded by ``config.planner_attempts``."""
        from graft_vqa.planner import ProgramCache, RulePlanner, normalise_question, plan_cached
        from graft_vqa.planner.feedback import RunResult

        key = normalise_question(question)
        program = self._programs.get(key)
        if program is not None:
            return program

        def check(source: str) -> RunResult:
            root.context.prefetch(program_queries(source))
            execution = self._execute(source, root)
            if not execution.ok:
                return RunResult(False, execution.error)
            try:
                coerced = coerce(execution.value, program=source)
            except Exception as exc:  # noqa: BLE001 - any unusable return value is the program's error
                return RunResult(False, str(exc) if isinstance(exc, ProgramError) else
                                 f"could not read the program's return value ({type(exc).__name__}: {exc})")
            return RunResult(True, None, coerced.kind, coerced.answer)

        deterministic = getattr(self.planner, "deterministic", False)
        run = None if root is None or deterministic else check
        fallback = RulePlanner() if self.config.planner_fallback and not deterministic else None
        if self._disk_cache is None:
            self._disk_cache = ProgramCache(self.config.cache_dir or weights.home() / "programs")
        program = plan_cached(self.planner, question, self._disk_cache, run=run,
                              max_attempts=self.config.planner_attempts, samples=self.config.planner_samples,
                              fallback=fallback)
        self._programs[key] = program
        return program

    def _execute(self, source: str, root: ImagePatch) -> Execution:
        """Run ``source`` on ``root`` in the sandbox: the one place programs run. Running the program
        that ran last on the same root returns that run (the check made while planning)."""
        if self._last_run is not None and self._last_run[:2] == (source, id(root)):
            return self._last_run[2]
        from graft_vqa import sandbox

        root.context.begin_question()
        c = self.config
        execution = sandbox.run(source, root, timeout_s=c.sandbox_timeout_s, cpu_s=c.sandbox_cpu_s,
                                call_budget=c.sandbox_call_budget, cost_budget=c.sandbox_cost_budget)
        self._last_run = (source, id(root), execution)
        return execution

    # --- answering -----------------------------------------------------------------------------
    def ask(self, image: Any, question: str, aoi: Any = None, aoi_crs: Any = None) -> Answer:
        """Answer ``question`` about ``image``, inside the area of interest ``aoi`` when given (a shapely
        geometry, a GeoJSON-like dict or a vector file, in ``aoi_crs``). Failures come back as an
        :class:`Answer` with ``error`` set (bad input, such as a missing tile, missing weights or an AOI
        outside the raster, raises a :class:`GraftVQAError`).

        Once the answer is made, the question's patches are let go, the tile's caches trimmed to
        ``config.find_cache_mb`` and, when the caches let anything go, freed memory returned to the system
        (``malloc_trim`` costs about 3 ms, a tenth of a cached question): a program's finds outlive it
        only while there is room."""
        timings: dict[str, float] = {}
        start = time.perf_counter()
        rejected = self._reject_early(question, timings)
        if rejected is not None:
            return rejected
        root = self.image_patch(image, aoi=aoi, aoi_crs=aoi_crs)
        timings["load_s"] = time.perf_counter() - start - timings.get("plan_s", 0.0)
        try:
            return self._ask(root, question, start, timings)
        finally:
            self._last_run = None
            if root.context.end_question():  # maps or instances were let go: give the heap back (~3 ms)
                release_free_memory()

    def _ask(self, root: ImagePatch, question: str, start: float, timings: dict[str, float]) -> Answer:
        self._last_run = None  # a new question: nothing ran for it yet
        try:
            t0 = time.perf_counter()
            program = self.plan(question, root)
            timings["plan_s"] = timings.get("plan_s", 0.0) + time.perf_counter() - t0
        except QuestionNotUnderstoodError as exc:
            return self._failed(question, "", "not_understood", str(exc), timings, root)
        except PlannerError as exc:
            failed = getattr(exc, "program", None)
            return self._failed(question, failed.source if failed else "", "planner_error", str(exc), timings, root)

        t0 = time.perf_counter()
        root.context.prefetch(program_queries(program.source))  # one pass for all queries, outside the sandbox
        timings["score_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        execution = self._execute(program.source, root)
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
        warnings = self._answer_warnings(root) + list(program.meta.get("warnings", []))
        return Answer(question=question, answer=coerced.answer, value=coerced.value, kind=coerced.kind,
                      program=program.source, detections=root.context.question_detections(),
                      timings=timings, warnings=warnings, crs=_crs_string(root.tile))

    def _reject_early(self, question: str, timings: dict[str, float]) -> Answer | None:
        """A deterministic planner (the rules) plans before any model or tile loads, so a question it
        cannot parse fails at once; ``None`` when the question goes on to be answered."""
        if not getattr(self.planner, "deterministic", False):
            return None
        t0 = time.perf_counter()
        try:
            self.plan(question)
        except QuestionNotUnderstoodError as exc:
            timings["plan_s"] = time.perf_counter() - t0
            return self._failed(question, "", "not_understood", str(exc), timings, None)
        except PlannerError:
            return None  # reported by the normal path, with the tile
        timings["plan_s"] = time.perf_counter() - t0
        return None

    def _failed(self, question: str, program: str, status: str, error: str | None, timings: dict[str, float],
                root: ImagePatch | None) -> Answer:
        log.info("question %r failed (%s): %s", question, status, error)
        return Answer(question=question, answer=f"failed ({status})", value=None, kind="text", program=program,
                      timings=timings, warnings=self._answer_warnings(root), error=error or status, status=status,
                      crs=_crs_string(getattr(root, "tile", None)))

    def _answer_warnings(self, root: ImagePatch | None) -> list[str]:
        tile_warnings = list(root.context.warnings) if root is not None else []
        seen: dict[str, None] = dict.fromkeys(self._warnings + tile_warnings)
        return list(seen)


def _check_parts(scorer: Any, refiner: Any, planner: Any, config: Any) -> None:
    """A config (or another part) passed where a model goes is a clear error, not a later AttributeError."""
    for name, part in (("scorer", scorer), ("refiner", refiner), ("planner", planner)):
        if isinstance(part, EngineConfig):
            raise ConfigError(f"an EngineConfig was passed as the {name}: pass it by name, "
                              "Engine(config=EngineConfig(...)), or pass its fields as keywords, Engine(gsd_m=10.0)")
    checks = (("scorer", scorer, "score_maps"), ("refiner", refiner, "refine"), ("planner", planner, "plan"))
    for name, part, method in checks:
        if part is not None and not callable(getattr(part, method, None)):
            raise ConfigError(f"the {name} {type(part).__name__} has no {method}() method; "
                              f"see graft_vqa.Engine's documentation for what a {name} needs")
    if config is not None and not isinstance(config, EngineConfig):
        raise ConfigError(f"config must be an EngineConfig, got {type(config).__name__}")


def _thresholds(config: EngineConfig) -> ThresholdTable | None:
    """The thresholds file of ``config`` (None when unset); a bad file raises ThresholdsError now."""
    path = config.find.thresholds
    return load_thresholds(path) if path else None


def _vocabulary(config: EngineConfig, table: ThresholdTable | None) -> tuple[str, ...] | None:
    """Contrast mode's background vocabulary when any setting uses contrast mode (read and checked now)."""
    if config.find.threshold_mode != "contrast" and not (table is not None and table.uses_contrast()):
        return None
    return load_vocabulary(config.find.contrast_vocabulary)


def _crs_string(tile: Any) -> str | None:
    crs = getattr(tile, "crs", None)
    if crs is None:
        return None
    try:
        return crs.to_string()
    except Exception:  # noqa: BLE001 - any CRS object without to_string
        return str(crs)


def ask(image: Any, question: str, *, aoi: Any = None, aoi_crs: Any = None, **options: Any) -> Answer:
    """Answer one question about one image with a fresh engine, inside ``aoi`` (in ``aoi_crs``) when given.

    ``options`` are :class:`EngineConfig`, :class:`~graft_vqa.config.FindConfig` and
    :class:`~graft_vqa.config.SceneConfig` fields (``allow_untrained=True``, ``gsd_m=10``,
    ``threshold=0.1``, ...) plus ``scorer``, ``refiner``, ``planner``, ``config`` and ``progress``.
    For many questions, build one :class:`Engine` and reuse it.
    """
    parts = {k: options.pop(k) for k in ("scorer", "refiner", "planner", "config", "progress") if k in options}
    return Engine(**parts, **options).ask(image, question, aoi=aoi, aoi_crs=aoi_crs)
