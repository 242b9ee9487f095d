"""The Gradio chat over an uploaded tile (``python app.py``, ``graft-vqa app``).

- :func:`build_app` builds the ``gr.Blocks`` (inject an engine factory for model-free runs);
- :func:`launch` serves it; :func:`main` parses the command line and does both;
- :func:`render_overlay` draws an answer's detections with a legend.
"""
from __future__ import annotations

from graft_vqa.interfaces.app.blocks import AppOptions, build_app, launch
from graft_vqa.interfaces.app.cli import main
from graft_vqa.interfaces.app.overlay import render_overlay
from graft_vqa.interfaces.app.session import EnginePool, SessionState, UISettings, default_engine_factory

__all__ = ["AppOptions", "EnginePool", "SessionState", "UISettings", "build_app", "default_engine_factory",
           "launch", "main", "render_overlay"]
