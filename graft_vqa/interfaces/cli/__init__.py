"""The ``graft-vqa`` command line (``graft-vqa --help``); one module per command."""
from __future__ import annotations

from graft_vqa.interfaces.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
