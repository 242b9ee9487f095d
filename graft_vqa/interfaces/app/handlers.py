"""The app's event handlers, as plain functions of (inputs, session state, chat history).

They never raise: every failure becomes a chat message that says what to do, so the server keeps
serving. Chat history is Gradio's "messages" format: a list of ``{"role", "content", "metadata"}``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from graft_vqa.answer import Answer
from graft_vqa.config import EngineConfig
from graft_vqa.core.errors import UploadTooLargeError
from graft_vqa.interfaces.advice import for_app
from graft_vqa.interfaces.app.messages import answer_failure_message, error_message, hide_paths
from graft_vqa.interfaces.app.overlay import render_overlay
from graft_vqa.interfaces.app.session import EnginePool, SessionState, UISettings
from graft_vqa.interfaces.app.steps import answer_in_steps
from graft_vqa.interfaces.app.summary import answer_text, tile_summary, warnings_title

log = logging.getLogger(__name__)

Progress = Callable[..., Any]  # gr.Progress or any callable(fraction, desc=...)
NO_TILE = "Upload a tile first (GeoTIFF, PNG or JPEG, left panel), then ask your question again."
PREVIEW_MAX_SIDE = 2048  # longest side of the upload preview (and of overlays), in pixels: larger rasters are
# read decimated, so a scene of any size is shown without holding it in memory


def _say(history: list[dict[str, Any]], content: Any, **metadata: Any) -> None:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if metadata:
        message["metadata"] = metadata
    history.append(message)


def _no_progress(*_args: Any, **_kwargs: Any) -> None:
    return None


def handle_upload(path: str | None, state: SessionState | None, history: list[dict[str, Any]] | None,
                  max_upload_mb: float, workdir_root: str | Path | None = None, *,
                  preview_max_side: int = PREVIEW_MAX_SIDE, scene_pixels: int = EngineConfig.scene_pixels,
                  ) -> tuple[SessionState, Any, str, list[dict[str, Any]]]:
    """Load an uploaded raster into the session (created under ``workdir_root`` on first use).

    The preview is read decimated so that its longer side is at most ``preview_max_side`` (never the
    whole raster in memory); a raster above ``scene_pixels`` is a scene, answered window by window.
    Returns the new state, the RGB preview (``None`` on failure), the tile summary and the chat.
    """
    state = state if isinstance(state, SessionState) else SessionState.create(workdir_root)
    history = list(history or [])
    state.tile_path, state.tile_name, state.rgb, state.tile_size, state.scene = None, "", None, None, False
    if not path:
        return state, None, "No tile loaded.", history
    name = Path(path).name
    try:
        size_mb = Path(path).stat().st_size / 1e6
        if size_mb > max_upload_mb:
            raise UploadTooLargeError(f"{name} is {size_mb:.1f} MB, above this server's upload limit of "
                                      f"{max_upload_mb:g} MB")
        from graft_vqa.core.tiles import load_tile

        tile = load_tile(path)
        rgb = read_preview(tile, preview_max_side)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a chat message
        _say(history, error_message(exc, f"Could not load {name}", names={str(path): name}))
        return state, None, f"**{name} could not be loaded** (see the chat).", history
    state.tile_path, state.tile_name, state.rgb = str(path), name, rgb
    state.tile_size, state.scene = (tile.height, tile.width), tile.height * tile.width > scene_pixels
    summary = tile_summary(tile, name, scene=state.scene, preview=rgb.shape[:2])
    _say(history, f"Loaded {summary}. Ask a question below.")
    return state, rgb, summary, history


def read_preview(tile: Any, max_side: int) -> np.ndarray:
    """The tile's RGB view, read decimated so that its longer side is at most ``max_side`` pixels (a raster
    of any size is never read whole); a tile that fits is read at full resolution."""
    return np.asarray(tile.read_window(0, 0, tile.width, tile.height, max_side=max_side).rgb())


def _write_outputs(state: SessionState, answer: Answer) -> tuple[Path, Path]:
    """Write the overlay PNG and the GeoJSON of ``answer`` into the session folder."""
    overlay = render_overlay(state.rgb, answer.detections, answer.program, source_size=state.tile_size)
    overlay_path = state.next_path("overlay", ".png")
    Image.fromarray(overlay).save(overlay_path)
    geojson_path = state.next_path("detections", ".geojson")
    geojson_path.write_text(json.dumps(answer.to_geojson(), indent=1))
    return overlay_path, geojson_path


def _program_message(history: list[dict[str, Any]], answer: Answer) -> None:
    if answer.program:
        _say(history, f"```python\n{answer.program.rstrip()}\n```", title="Program", status="done",
             duration=round(answer.timings.get("total_s", sum(answer.timings.values())), 3))


def _answer_messages(history: list[dict[str, Any]], state: SessionState, answer: Answer,
                     config: Any = None) -> Path | None:
    """Append the messages for one answer; returns the GeoJSON path (None when the answer failed).

    Warnings and errors are said in the app's words (Settings fields, not Python names), with the
    uploaded file's name instead of the server's path.
    """
    names = {state.tile_path or "": state.tile_name}
    if answer.error is not None:
        _say(history, answer_failure_message(answer, config, names))
        _program_message(history, answer)
        return None
    overlay_path, geojson_path = _write_outputs(state, answer)
    _say(history, answer_text(answer))
    warnings = [hide_paths(for_app(w, config), names) for w in answer.warnings]
    if warnings:
        _say(history, "\n\n".join(f"- {w}" for w in warnings), title=warnings_title(warnings), status="done")
    _say(history, {"path": str(overlay_path), "alt_text": f"Detections for: {answer.question}"})
    _program_message(history, answer)
    _say(history, {"path": str(geojson_path)})
    return geojson_path


def handle_ask(question: str, state: SessionState | None, history: list[dict[str, Any]] | None,
               workdir_root: str | Path | None = None,
               ) -> tuple[list[dict[str, Any]], str, str, SessionState]:
    """First step of a question, at once: show it in the chat and clear the box.

    Returns the chat, the cleared question box, the question for :func:`handle_answer`, and the state.
    """
    state = state if isinstance(state, SessionState) else SessionState.create(workdir_root)
    history = list(history or [])
    question = (question or "").strip()
    if state.answering:  # one question at a time: this one stays in the box
        return history, question, "", state
    if question:
        history.append({"role": "user", "content": question})
        state.answering = True
    return history, "", question, state


def handle_answer(question: str, state: SessionState | None, history: list[dict[str, Any]] | None,
                  settings: UISettings, pool: EnginePool, progress: Progress = _no_progress,
                  workdir_root: str | Path | None = None,
                  ) -> tuple[list[dict[str, Any]], str | None, SessionState]:
    """Second step: answer the question :func:`handle_ask` showed, one progress step per real step.

    Returns the chat, the latest GeoJSON file (or ``None``) and the state.
    """
    state = state if isinstance(state, SessionState) else SessionState.create(workdir_root)
    try:
        return _answer(question, state, list(history or []), settings, pool, progress)
    finally:
        state.answering = False


def _answer(question: str, state: SessionState, history: list[dict[str, Any]], settings: UISettings,
            pool: EnginePool, progress: Progress) -> tuple[list[dict[str, Any]], str | None, SessionState]:
    question = (question or "").strip()
    if not question:
        return history, None, state
    if state.tile_path is None or state.rgb is None:
        _say(history, NO_TILE)
        return history, None, state
    state.questions += 1
    config = None
    try:
        engine, lock = pool.get(settings)
        config = getattr(engine, "config", None)
        with lock:
            answer = answer_in_steps(engine, state.tile_path, question, progress, scene=state.scene)
        geojson = _answer_messages(history, state, answer, config)
    except Exception as exc:  # noqa: BLE001 - the server keeps serving
        _say(history, error_message(exc, "Could not answer", names={state.tile_path: state.tile_name},
                                    config=config))
        return history, None, state
    return history, (str(geojson) if geojson else None), state


def handle_question(question: str, state: SessionState | None, history: list[dict[str, Any]] | None,
                    settings: UISettings, pool: EnginePool, progress: Progress = _no_progress,
                    workdir_root: str | Path | None = None,
                    ) -> tuple[list[dict[str, Any]], str, str | None, SessionState]:
    """Both steps at once (:func:`handle_ask`, then :func:`handle_answer`), for scripts and tests.

    Returns the chat, the cleared question box, the latest GeoJSON file (or ``None``) and the state.
    """
    history, box, pending, state = handle_ask(question, state, history, workdir_root)
    history, geojson, state = handle_answer(pending, state, history, settings, pool, progress, workdir_root)
    return history, box, geojson, state
