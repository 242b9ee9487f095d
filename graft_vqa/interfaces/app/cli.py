"""``python app.py`` / ``graft-vqa app``: parse options, build the app, serve it."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Sequence

from graft_vqa.config import EmbedConfig, EngineConfig
from graft_vqa.core.errors import ThresholdsError
from graft_vqa.interfaces.advice import install_cli_logging
from graft_vqa.interfaces.app.handlers import PREVIEW_MAX_SIDE
from graft_vqa.interfaces.app.session import UISettings
from graft_vqa.interfaces.options import add_engine_options, engine_config
from graft_vqa.thresholds import load_thresholds


def build_parser() -> argparse.ArgumentParser:
    """The app's options: server, upload limit, and the engine options shared with ``graft-vqa ask``."""
    parser = argparse.ArgumentParser(prog="graft-vqa app", description="The graft-vqa chat over an uploaded tile.")
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    server.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    server.add_argument("--share", action="store_true", help="open a public Gradio share link (off by default)")
    server.add_argument("--max-upload-mb", type=float, default=200.0,
                        help="largest tile upload accepted, in MB (default: %(default)s)")
    server.add_argument("--preview-max-side", type=int, default=PREVIEW_MAX_SIDE, metavar="PX",
                        help="longest side of the tile preview and overlays; larger rasters are read decimated "
                             "(default: %(default)s)")
    server.add_argument("--api-key", default="", help="API key for the OpenAI-compatible planner")
    server.add_argument("--verbose", action="store_true", help="log at DEBUG level")
    server.add_argument("--index", metavar="INDEX", help="the search index the Search tab opens with "
                                                          "(built with `graft-vqa index`)")
    add_engine_options(parser)
    return parser


def search_embedder_factory(config: EngineConfig) -> Any:
    """The Search tab's embedder: the image-level GRAFT weights of ``EmbedConfig`` (graft-naip by default) with
    the engine's architecture, text tower and trust settings (the text side only is loaded)."""
    from graft_vqa.interfaces.app.search_tab import default_embedder_factory

    return default_embedder_factory(EmbedConfig(**config.encoder_settings()))


def main(argv: Sequence[str] | None = None) -> int:
    """Start the app and serve until interrupted; returns the exit status."""
    from graft_vqa.interfaces.app.blocks import AppOptions, build_app, launch
    from graft_vqa.interfaces.app.session import default_engine_factory

    args = build_parser().parse_args(argv)
    config = engine_config(args)
    # the server's log is read by whoever started it from the command line: flags, not Python names
    install_cli_logging(config, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config.find.thresholds:
        try:
            load_thresholds(config.find.thresholds)  # a bad file stops the app now, in one line
        except ThresholdsError as exc:
            print(f"graft-vqa app: error: {exc}", file=sys.stderr)
            return 2
    settings = UISettings(planner=args.planner, base_url=args.base_url or "", model=args.model or "",
                          api_key=args.api_key, threshold=config.find.threshold,
                          refine=config.find.refine, gsd_m=config.gsd_m, thresholds=config.find.thresholds or "")
    options = AppOptions(max_upload_mb=args.max_upload_mb, preview_max_side=args.preview_max_side, settings=settings,
                         engine=config, index=args.index)
    app = build_app(default_engine_factory(config), options, embedder_factory=search_embedder_factory(config))
    launch(app, host=args.host, port=args.port, share=args.share, max_upload_mb=args.max_upload_mb)
    return 0
