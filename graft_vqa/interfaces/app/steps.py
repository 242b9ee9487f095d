"""Answering one question in the app's real steps, with one progress bar and honest timings.

The steps are the engine's own: loading the models, encoding the tile (GRAFT's feature grid),
planning and running the program. The rule planner plans first, so a question it rejects is answered
at once, before any model loads; an LLM planner plans after the tile is encoded (it checks its program
on the tile). The answer's timings are replaced by the steps' timings, so the first answer's time
includes loading the models.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from graft_vqa.answer import Answer
from graft_vqa.core.errors import PlannerError

Progress = Callable[..., Any]  # gr.Progress or any callable(progress, desc=..., total=..., unit=...)
PLAN, MODELS, TILE, RUN = "plan_s", "models_s", "tile_s", "run_s"
LABELS = {PLAN: "Planning the program", MODELS: "Loading the models", TILE: "Encoding the tile",
          RUN: "Running the program"}
# a scene is only opened in its step (its windows are read and scored when the program asks for its names)
SCENE_LABELS = {**LABELS, TILE: "Opening the scene"}


def steps_for(engine: Any) -> list[str]:
    """The steps an answer of ``engine`` takes, in order (the rule planner plans before models load)."""
    if getattr(getattr(engine, "planner", None), "deterministic", False):
        return [PLAN, MODELS, TILE, RUN]
    return [MODELS, TILE, PLAN, RUN]


def no_progress(*_args: Any, **_kwargs: Any) -> None:
    """A progress callback that shows nothing (scripts and tests)."""
    return None


@contextmanager
def reporting_windows(engine: Any, progress: Progress, label: Callable[[], str]) -> Iterator[None]:
    """While inside, a scene's windows (``Engine(progress=...)``: done, total, what) move ``progress`` as
    ``"<label()>: <what>"`` in windows; the engine's own callback is put back after."""

    def report(done: int, total: int, what: str) -> None:
        progress((done, total), desc=f"{label()}: {what}", unit="windows")

    previous = getattr(engine, "progress", None)
    engine.progress = report
    try:
        yield
    finally:
        engine.progress = previous


def _load_tile(path: str) -> Any:
    from graft_vqa.core.tiles import load_tile

    return load_tile(path)


def answer_in_steps(engine: Any, tile_path: str, question: str, progress: Progress, *, scene: bool = False) -> Answer:
    """Answer ``question`` about the tile at ``tile_path``, telling ``progress`` each real step (and, for a
    ``scene``, each window it reads).

    ``engine`` is a :class:`~graft_vqa.engine.Engine`; any other object with ``ask(image, question)``
    is asked in one step.
    """
    start = time.perf_counter()
    # looked up on the class: reading engine.scorer would load the models outside of their step
    if not all(hasattr(type(engine), name) for name in ("plan", "image_patch", "scorer", "planner")):
        progress((0, 1), desc="Answering", unit="steps")
        return engine.ask(_load_tile(tile_path), question)
    steps, labels = steps_for(engine), SCENE_LABELS if scene else LABELS
    timings: dict[str, float] = {}
    state: dict[str, Any] = {}

    def plan() -> None:
        engine.plan(question, state.get("root"))

    def models() -> None:
        _ = engine.scorer, engine.refiner

    def tile() -> None:
        state["root"] = root = engine.image_patch(_load_tile(tile_path))
        encode = getattr(engine.scorer, "patch_grid", None)  # GRAFT's feature grid, cached per tile
        scene_pixels = getattr(getattr(engine, "config", None), "scene_pixels", float("inf"))
        if callable(encode) and root.tile.height * root.tile.width <= scene_pixels:  # scenes: window by window
            encode(root.tile)

    actions = {PLAN: plan, MODELS: models, TILE: tile}
    with reporting_windows(engine, progress, lambda: labels[state["step"]]):  # the windows, inside their step
        for number, step in enumerate(steps):
            state["step"] = step
            progress((number, len(steps)), desc=labels[step], unit="steps")
            if step == RUN:
                break
            t0 = time.perf_counter()
            try:
                actions[step]()
            except PlannerError:
                break  # the engine's answer says why (a rejected question loads nothing)
            timings[step] = time.perf_counter() - t0
        state["step"] = RUN
        answer = engine.ask(state["root"].tile if "root" in state else tile_path, question)
    timings[RUN] = answer.timings.get(RUN, 0.0)
    timings["total_s"] = time.perf_counter() - start
    return answer.model_copy(update={"timings": timings})
