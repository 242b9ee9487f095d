"""``graft-vqa calibrate``: learn find's thresholds per concept from a labelled benchmark split."""
from __future__ import annotations

import argparse
import sys

from graft_vqa.interfaces.evaluation.calibrate.arguments import DESCRIPTION, add_arguments


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``calibrate`` command to the top-level parser's subcommands."""
    parser = sub.add_parser("calibrate", help="learn per-concept thresholds from a labelled benchmark split",
                            description=DESCRIPTION + " Writes thresholds.json (use it with --thresholds) and a report.")
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Calibrate; bad options end with a one-line message and exit status 2."""
    from graft_vqa.interfaces.evaluation.calibrate.run import run_args

    try:
        return run_args(args)
    except (ValueError, FileExistsError) as exc:
        print(f"graft-vqa: error: {exc}", file=sys.stderr)
        return 2
