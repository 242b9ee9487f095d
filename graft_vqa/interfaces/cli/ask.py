"""``graft-vqa ask TILE QUESTION``: answer one question about one tile."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from graft_vqa.interfaces.options import add_engine_options, engine_config, make_planner


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``ask`` command to the top-level parser's subcommands."""
    ask = sub.add_parser("ask", help="answer a question about a tile", description="Answer a question about a tile.")
    ask.add_argument("tile", help="GeoTIFF, COG, PNG or JPEG")
    ask.add_argument("question", help='e.g. "How many buildings are there?"')
    ask.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    ask.add_argument("--geojson", metavar="OUT", help="write the detections as GeoJSON to OUT")
    ask.add_argument("--show-program", action="store_true", help="print the program that answered")
    add_engine_options(ask)
    ask.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Answer the question; print the answer (or the whole answer as JSON); 0 when it answered."""
    from graft_vqa.engine import Engine

    engine = Engine(planner=make_planner(args), config=engine_config(args))
    answer = engine.ask(args.tile, args.question)
    if args.geojson:
        Path(args.geojson).write_text(json.dumps(answer.to_geojson(), indent=2))
    if args.json:
        print(answer.model_dump_json(indent=2))
    else:
        for warning in answer.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if answer.error:
            print(f"could not answer ({answer.status}): {answer.error}", file=sys.stderr)
        elif any("random weights" in w for w in answer.warnings):
            print(f"{answer.answer}    [untrained weights: this answer is not meaningful]")
        else:
            print(answer.answer)
        if args.show_program and answer.program:
            print("\n# program\n" + answer.program)
    return 0 if answer.error is None else 1
