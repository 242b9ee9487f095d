"""The calibration's command line, light to import (``graft-vqa --help`` loads no model code)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from graft_vqa.interfaces.evaluation.rsvqa import LAYOUTS
from graft_vqa.interfaces.evaluation.run import DATA_ROOT_ENV
from graft_vqa.interfaces.options import add_engine_options

DESCRIPTION = "Calibrate find's thresholds per concept on a labelled benchmark split."
OBJECTIVE_TYPES = ("presence", "count", "area")  # the question types whose answers thresholds decide
MODES = ("absolute", "relative", "contrast")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The calibration options (shared by ``graft-vqa calibrate`` and ``eval/calibrate.py``)."""
    p.add_argument("--benchmark", choices=["rsvqa"], default="rsvqa", help="benchmark (only rsvqa)")
    p.add_argument("--data-root", default=os.environ.get(DATA_ROOT_ENV),
                   help=f"folder of the RSVQA release (default: ${DATA_ROOT_ENV})")
    p.add_argument("--layout", choices=["auto", *LAYOUTS], default="auto", help="release layout (default: detect)")
    p.add_argument("--split", default="train", help="labelled split to learn from (default: %(default)s)")
    p.add_argument("--types", default=None, help="comma-separated question types to load (default: all of the "
                   "release's; the search uses presence, count and area, the report every type)")
    p.add_argument("--limit", type=int, default=None, help="first N selected questions (by id)")
    p.add_argument("--out", type=Path, default=Path("thresholds.json"), help="thresholds file (default: %(default)s)")
    p.add_argument("--report", type=Path, default=None,
                   help="folder of the report and held-out predictions (default: OUT's name + _report)")
    p.add_argument("--holdout", type=float, default=0.2, help="fraction of the tiles held out (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out tile choice (default: %(default)s)")
    p.add_argument("--min-questions", type=int, default=20,
                   help="questions a concept needs for its own threshold (default: %(default)s)")
    p.add_argument("--modes", default=",".join(MODES), help="threshold modes to search (default: %(default)s)")
    p.add_argument("--map-cache-gb", type=float, default=8.0,
                   help="memory for cached score maps, GiB (default: %(default)s)")
    add_engine_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser(prog: str = "eval/calibrate.py") -> argparse.ArgumentParser:
    """The calibration command line."""
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def modes_of(text: str) -> tuple[str, ...]:
    modes = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"--modes {text!r}: {'unknown mode(s) ' + ', '.join(unknown) if unknown else 'no mode'}; "
                         f"use some of {', '.join(MODES)}")
    return modes


