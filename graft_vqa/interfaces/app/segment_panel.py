"""The app's Segment action: segment a text prompt on the uploaded tile, show the mask, offer GIS files.

:func:`handle_segment` is a plain function of (text, session, chat, settings, engines) that never raises;
:func:`build_segment_panel` adds the text box, the button and the downloads to the Ask tab.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PIL import Image

from graft_vqa.interfaces.app.messages import error_message
from graft_vqa.interfaces.app.overlay import render_overlay
from graft_vqa.interfaces.app.session import EnginePool, SessionState, UISettings
from graft_vqa.interfaces.app.steps import Progress, no_progress, reporting_windows

log = logging.getLogger(__name__)

NO_TILE = "Upload a tile first (GeoTIFF, PNG or JPEG, left panel), then segment it."
VECTOR_SUFFIX = ".gpkg"  # the vector download beside the GeoTIFF mask


def _say(history: list[dict[str, Any]], content: Any) -> None:
    history.append({"role": "assistant", "content": content})


def segment_files(result: Any, state: SessionState, stem: str) -> list[Path]:
    """Write the mask GeoTIFF and the instances as vectors into the session folder; returns both paths."""
    mask = result.to_geotiff(state.next_path(f"{stem}_mask", ".tif"))
    vector = result.to_vector(state.next_path(stem, VECTOR_SUFFIX))
    return [mask, vector]


def handle_segment(text: str, state: SessionState | None, history: list[dict[str, Any]] | None,
                   settings: UISettings, pool: EnginePool, workdir_root: str | None = None,
                   progress: Progress = no_progress) -> tuple[list[dict[str, Any]], list[str] | None, SessionState]:
    """Segment ``text`` on the session's tile with the engine of ``settings``; a scene's windows move
    ``progress`` as they are read.

    Returns the chat, the files to download (GeoTIFF mask, GeoPackage) or None, and the state.
    """
    from graft_vqa.segmentation import segment

    state = state if isinstance(state, SessionState) else SessionState.create(workdir_root)
    history = list(history or [])
    text = (text or "").strip()
    if not text:
        return history, None, state
    history.append({"role": "user", "content": f"Segment: {text}"})
    if state.tile_path is None or state.rgb is None:
        _say(history, NO_TILE)
        return history, None, state
    state.questions += 1
    try:
        engine, lock = pool.get(settings)
        with lock, reporting_windows(engine, progress, lambda: f"Segmenting {text}"):
            progress((0, 1), desc=f"Segmenting {text}", unit="steps")
            result = segment(state.tile_path, text, engine=engine)
        files = segment_files(result, state, "segment")
        overlay = state.next_path("segment_overlay", ".png")
        Image.fromarray(render_overlay(state.rgb, result.detections, source_size=state.tile_size)).save(overlay)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a chat message
        _say(history, error_message(exc, f"Could not segment {text!r}"))
        return history, None, state
    answer = result.answer()
    _say(history, f"**{text}: {answer.answer}** in {len(result.detections)} instance(s): mask as GeoTIFF on the "
                  f"tile's grid, instances as GeoPackage (downloads below the tile).")
    if result.warnings:
        _say(history, "\n\n".join(f"- {w}" for w in result.warnings))
    _say(history, {"path": str(overlay), "alt_text": f"Segmentation of {text}"})
    return history, [str(f) for f in files], state


def build_segment_panel(gr: Any) -> tuple[Any, Any, Any]:
    """The Segment text box, button and downloads (call inside a column); returns (text, button, files)."""
    with gr.Group(elem_id="segment-panel"):
        text = gr.Textbox(placeholder="water", label="Segment (a text prompt)", elem_id="segment-text")
        button = gr.Button("Segment", elem_id="segment-button")
        files = gr.File(label="Segmentation (GeoTIFF mask, GeoPackage)", file_count="multiple", interactive=False,
                        elem_id="segment-files")
    return text, button, files
