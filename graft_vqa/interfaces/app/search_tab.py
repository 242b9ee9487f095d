"""The app's Search tab: type a text, see the best chips of an index with their scores and footprints.

:func:`handle_search` is a plain function (tested without a browser); :func:`build_search_tab` lays out the
tab inside the app's ``gr.Blocks``. The embedder comes from a factory (the default builds the image-level
GRAFT text side from an :class:`~graft_vqa.config.EmbedConfig`), built once and shared by all sessions.
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from graft_vqa.config import EmbedConfig
from graft_vqa.interfaces.app.messages import error_message
from graft_vqa.interfaces.app.session import SessionState

log = logging.getLogger(__name__)

THUMBNAIL_SIDE = 256  # longest side of a chip in the gallery
TABLE_HEADERS = ["rank", "score", "file", "window (row, col, height, width)", "footprint (W, S, E, N)", "date"]
EmbedderFactory = Callable[[], Any]  # () -> an Embedder with the index's model_id


class SearchBackend:
    """The embedder of the Search tab, built on first use (under a lock) and kept."""

    def __init__(self, factory: EmbedderFactory | None = None, config: EmbedConfig | None = None) -> None:
        self._factory = factory or default_embedder_factory(config or EmbedConfig())
        self._embedder: Any = None
        self._lock = threading.Lock()

    def embedder(self) -> Any:
        with self._lock:
            if self._embedder is None:
                self._embedder = self._factory()
            return self._embedder


def default_embedder_factory(config: EmbedConfig) -> EmbedderFactory:
    """Builds the default embedder (text side only) from ``config`` on first search."""
    def factory() -> Any:
        from graft_vqa.models import resolve_embedder

        return resolve_embedder(None, config, images=False)[0]

    return factory


def thumbnail(path: str, window: tuple[int, int, int, int]) -> np.ndarray:
    """The chip's RGB view, at most ``THUMBNAIL_SIDE`` pixels a side."""
    from graft_vqa.core.tiles import load_tile

    tile = load_tile(path)
    row, col, height, width = window
    chip = tile if (height, width) == (tile.height, tile.width) else tile.crop_window(col, row, width, height)
    image = Image.fromarray(np.asarray(chip.rgb()))
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    return np.asarray(image)


def _row(rank: int, hit: Any) -> list[Any]:
    where = ", ".join(f"{v:.5f}" for v in hit.footprint.bounds) if hit.footprint is not None else "no georeferencing"
    return [rank, round(hit.score, 4), Path(hit.path).name, str(tuple(hit.window)), where, hit.date or ""]


def handle_search(index: str, text: str, top_k: float, bbox_text: str, state: SessionState | None,
                  backend: SearchBackend, workdir_root: str | None = None,
                  ) -> tuple[list[tuple[np.ndarray, str]], list[list[Any]], str | None, str, SessionState]:
    """Search ``index`` for ``text``. Returns the gallery (thumbnail, caption), the table rows, the hits'
    GeoJSON file (None when nothing was found), a status line, and the session state. Never raises."""
    from graft_vqa.retrieval import hits_geojson, search

    state = state if isinstance(state, SessionState) else SessionState.create(workdir_root)
    text = (text or "").strip()
    if not (index or "").strip():
        return [], [], None, "Give the folder of a search index (built with `graft-vqa index`).", state
    if not text:
        return [], [], None, "Type what to look for, e.g. *a baseball field*.", state
    try:
        box = (bbox_text or "").strip() or None  # W,S,E,N in degrees
        hits = search(index.strip(), text, int(top_k), backend.embedder(), bbox=box)
        gallery = [(thumbnail(h.path, h.window), f"{i}. {h.score:.3f} · {Path(h.path).name} {tuple(h.window)}")
                   for i, h in enumerate(hits, 1)]
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message, the server keeps serving
        return [], [], None, error_message(exc, "Could not search"), state
    state.questions += 1
    geojson = state.next_path("search", ".geojson")
    geojson.write_text(json.dumps(hits_geojson(hits, text), indent=1))
    where = " inside the box" if box else ""
    status = f"**{len(hits)} chip(s)** for *{text}*{where}." if hits else f"No chip matches *{text}*{where}."
    return gallery, [_row(i, h) for i, h in enumerate(hits, 1)], str(geojson) if hits else None, status, state


def build_search_tab(gr: Any, state: Any, backend: SearchBackend, index: str | None,
                     workdir_root: str | None) -> None:
    """The Search tab's components and events (call inside ``gr.Blocks``)."""
    with gr.Tab("Search", elem_id="search-tab"):
        gr.Markdown("Search a collection indexed with `graft-vqa index TILES... --out INDEX`: the chips that best "
                    "match a text, best first, with their footprints.")
        with gr.Row():
            index_box = gr.Textbox(value=index or "", label="Index folder", elem_id="search-index", scale=3)
            top_k = gr.Slider(1, 50, value=12, step=1, label="Chips", elem_id="search-top", scale=1)
        with gr.Row():
            text = gr.Textbox(placeholder="a baseball field", label="Search text", elem_id="search-text", scale=3)
            bbox = gr.Textbox(placeholder="W,S,E,N in degrees (optional)", label="Inside the box",
                              elem_id="search-bbox", scale=2)
            go = gr.Button("Search", variant="primary", elem_id="search-button", scale=1)
        status = gr.Markdown("", elem_id="search-status")
        gallery = gr.Gallery(label="Best chips", columns=6, height="auto", elem_id="search-gallery")
        table = gr.Dataframe(headers=TABLE_HEADERS, label="Chips and footprints", interactive=False,
                             elem_id="search-table")
        download = gr.File(label="Footprints (GeoJSON, EPSG:4326)", interactive=False, elem_id="search-geojson")

        def on_search(index_value: str, text_value: str, top: float, box: str, session: Any) -> tuple[Any, ...]:
            images, rows, geojson, message, session = handle_search(index_value, text_value, top, box, session,
                                                                    backend, workdir_root)
            return images, rows, geojson, message, session

        inputs = [index_box, text, top_k, bbox, state]
        outputs = [gallery, table, download, status, state]
        go.click(on_search, inputs, outputs)
        text.submit(on_search, inputs, outputs)
