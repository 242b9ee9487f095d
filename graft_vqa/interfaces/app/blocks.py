"""The Gradio layout: tile upload and preview, settings, and the chat.

``build_app(engine_factory=...)`` takes any factory of engines, so tests and model-free demos run
the whole app with a synthetic scorer.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from graft_vqa.config import EngineConfig
from graft_vqa.interfaces.app.handlers import PREVIEW_MAX_SIDE, handle_answer, handle_ask, handle_upload
from graft_vqa.interfaces.app.banner import sam_found, weights_banner
from graft_vqa.interfaces.app.search_tab import EmbedderFactory, SearchBackend, build_search_tab
from graft_vqa.interfaces.app.segment_panel import build_segment_panel, handle_segment
from graft_vqa.interfaces.app.session import (EngineFactory, EnginePool, SessionState, UISettings,
                                              default_engine_factory, delete_session)

log = logging.getLogger(__name__)

EXAMPLES = (
    "How many buildings are there?",
    "Is there a water area?",
    "What is the area covered by trees?",
    "Are there more roads than buildings?",
)
TILE_TYPES = [".tif", ".tiff", ".png", ".jpg", ".jpeg"]
APP_CSS = "#weights-banner { border: 2px solid #b91c1c; border-radius: 6px; background: #fef2f2; }"


@dataclass
class AppOptions:
    """How the app looks and what it allows."""

    max_upload_mb: float = 200.0  # uploads above this are refused with a chat message
    preview_max_side: int = PREVIEW_MAX_SIDE  # longest side of the tile preview and overlays, in pixels; larger
    # rasters (scenes) are read decimated to it, never whole
    settings: UISettings = field(default_factory=UISettings)  # initial values of the Settings panel
    examples: tuple[str, ...] = EXAMPLES  # example questions to click
    title: str = "graft-vqa: ask a satellite tile"  # page title and heading
    max_engines: int = 4  # engines (settings combinations) kept loaded at once
    session_ttl_s: float = 4 * 3600  # a session's tile and files are dropped this long after last use
    workdir_root: str | None = None  # where sessions write overlays and GeoJSON (None: system temp folder)
    engine: EngineConfig | None = None  # the engine settings the app serves: the weights banner and the SAM
    # box follow from them (None: an injected engine factory brings its own models, so no banner)
    index: str | None = None  # the search index the Search tab opens with (graft-vqa app --index)


def _settings(planner: str, base_url: str, model: str, api_key: str, threshold: float, refine_with_sam: bool,
              gsd_m: float | None, thresholds: str = "") -> UISettings:
    return UISettings(planner=planner, base_url=(base_url or "").strip(), model=(model or "").strip(),
                      api_key=(api_key or "").strip(), threshold=float(threshold),
                      refine="sam" if refine_with_sam else "none", gsd_m=float(gsd_m) if gsd_m else None,
                      thresholds=(thresholds or "").strip())


def _settings_panel(gr: Any, s: UISettings, sam: bool | None = None) -> list[Any]:
    """The Settings accordion; ``sam`` says whether SAM weights were found (None: unknown)."""
    with gr.Accordion("Settings", open=False, elem_id="settings"):
        planner = gr.Radio(["rules", "openai"], value=s.planner, label="Planner",
                           info="rules: offline, fixed question forms; openai: any OpenAI-compatible LLM")
        base_url = gr.Textbox(value=s.base_url, label="LLM base URL", placeholder="http://127.0.0.1:8000/v1")
        model = gr.Textbox(value=s.model, label="LLM model")
        api_key = gr.Textbox(value=s.api_key, label="API key", type="password")
        threshold = gr.Slider(0.0, 0.5, value=s.threshold, step=0.005, label="Score threshold",
                              info="GRAFT cosine scores are typically 0.0–0.2")
        refine = gr.Checkbox(value=s.refine == "sam" and sam is not False, label="Refine instances with SAM",
                             elem_id="refine-sam", info=None if sam is not False else
                             "SAM weights not found: instances are the thresholded score maps")
        gsd = gr.Number(value=s.gsd_m, label="GSD (m/px) for images without georeferencing", minimum=0,
                        info="0: unknown (no areas in m² for PNG/JPEG or CRS-less tiles)")
        thresholds = gr.Textbox(value=s.thresholds, label="Thresholds file (graft-vqa calibrate)",
                                placeholder="thresholds.json",
                                info="per-concept thresholds learned by graft-vqa calibrate; override the slider")
    return [planner, base_url, model, api_key, threshold, refine, gsd, thresholds]


def build_app(engine_factory: EngineFactory | None = None, options: AppOptions | None = None,
              embedder_factory: EmbedderFactory | None = None) -> Any:
    """The app as a ``gr.Blocks`` (not launched).

    Args:
        engine_factory: ``UISettings -> engine``; ``None`` builds real engines with default config.
        options: limits, initial settings and examples.
        embedder_factory: ``() -> embedder`` for the Search tab; ``None`` builds the image-level GRAFT one.
    """
    import gradio as gr

    options = options or AppOptions()
    pool = EnginePool(engine_factory or default_engine_factory(options.engine), max_engines=options.max_engines)
    banner = weights_banner(options.engine)  # computed once, shown from page load
    scene_pixels = (options.engine or EngineConfig()).scene_pixels  # above it, the summary says "scene"

    def on_upload(path: str | None, state: Any, history: Any) -> tuple[Any, ...]:
        state, preview, info, history = handle_upload(path, state, history, options.max_upload_mb,
                                                      options.workdir_root, preview_max_side=options.preview_max_side,
                                                      scene_pixels=scene_pixels)
        box = gr.update() if state.tile_path else None  # a file that failed to load is removed
        return state, preview, info, history, box

    def settings_or_default(values: tuple[Any, ...]) -> UISettings:
        try:
            return _settings(*values)
        except (TypeError, ValueError) as exc:
            log.info("bad settings: %s", exc)
            return options.settings

    def on_ask(question: str, state: Any, history: Any) -> tuple[Any, ...]:
        # one question at a time (a second one would race the first for the chat): Ask waits for the answer
        busy = isinstance(state, SessionState) and state.answering
        history, box, pending, state = handle_ask(question, state, history, options.workdir_root)
        return history, box, pending, state, gr.update() if busy else gr.update(interactive=not pending)

    def on_answer(pending: str, state: Any, history: Any, *values: Any,
                  progress: Any = gr.Progress()) -> tuple[Any, ...]:
        settings = settings_or_default(values)
        if not pending:  # nothing was asked (an empty box, or a question while another was answered)
            return history, gr.update(), state, gr.update()
        return (*handle_answer(pending, state, history, settings, pool, progress, options.workdir_root),
                gr.update(interactive=True))

    def on_segment(text: str, state: Any, history: Any, *values: Any,
                   progress: Any = gr.Progress()) -> tuple[Any, ...]:
        settings = settings_or_default(values)
        history, files, state = handle_segment(text, state, history, settings, pool, options.workdir_root,
                                               progress)
        return history, files, state

    with gr.Blocks(title=options.title) as app:
        state = gr.State(None, time_to_live=options.session_ttl_s, delete_callback=delete_session)
        pending = gr.State("")  # the question on its way from the box to the answer
        gr.Markdown(f"## {options.title}\nUpload a tile, then ask about it or segment a text prompt. Every answer "
                    "shows its detections, the program that computed it and a GeoJSON download. The Search tab "
                    "finds chips of an indexed collection by text.")
        gr.Markdown(banner, elem_id="weights-banner", visible=bool(banner), container=True, padding=True)
        with gr.Tab("Ask", elem_id="ask-tab"):
            with gr.Row():
                with gr.Column(scale=2):
                    upload = gr.File(label="Tile (GeoTIFF, PNG or JPEG)", file_types=TILE_TYPES, type="filepath",
                                     elem_id="tile-upload")
                    preview = gr.Image(label="Tile (RGB)", interactive=False, elem_id="tile-preview", format="png",
                                       buttons=[])
                    info = gr.Markdown("No tile loaded.", elem_id="tile-info")
                    settings = _settings_panel(gr, options.settings, sam_found(options.engine))
                    segment_text, segment_button, segment_files = build_segment_panel(gr)
                with gr.Column(scale=3):
                    chat = gr.Chatbot(label="Chat", elem_id="chat", height=640)
                    with gr.Row():
                        question = gr.Textbox(placeholder="How many buildings are there?", show_label=False,
                                              elem_id="question", scale=5, submit_btn=False)
                        ask = gr.Button("Ask", variant="primary", elem_id="ask", scale=1)
                    gr.Examples(examples=[[q] for q in options.examples], inputs=[question],
                                label="Example questions")
                    geojson = gr.File(label="Latest detections (GeoJSON)", interactive=False, elem_id="geojson")
            upload.upload(on_upload, [upload, state, chat], [state, preview, info, chat, upload])
            upload.clear(on_upload, [upload, state, chat], [state, preview, info, chat, upload])
            # the question shows at once; then one progress bar, over the chat, through the real steps
            for trigger in (ask.click, question.submit):
                trigger(on_ask, [question, state, chat], [chat, question, pending, state, ask], show_progress="hidden",
                        queue=False).then(
                    on_answer, [pending, state, chat, *settings], [chat, geojson, state, ask], show_progress="full",
                    show_progress_on=[chat])
            segment_inputs = [segment_text, state, chat, *settings]
            segment_button.click(on_segment, segment_inputs, [chat, segment_files, state], show_progress_on=[chat])
            segment_text.submit(on_segment, segment_inputs, [chat, segment_files, state], show_progress_on=[chat])
        build_search_tab(gr, state, SearchBackend(embedder_factory), options.index, options.workdir_root)
    app.queue(default_concurrency_limit=4)
    return app


def launch(app: Any, *, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           max_upload_mb: float = 200.0, block: bool = True) -> Any:
    """Start serving ``app``; with ``block=False`` return at once (the server runs in a thread)."""
    return app.launch(server_name=host, server_port=port, share=share, max_file_size=f"{int(max_upload_mb)}mb",
                      prevent_thread_lock=not block, show_error=False, quiet=not block, css=APP_CSS)
