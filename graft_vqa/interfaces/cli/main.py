"""The ``graft-vqa`` dispatcher: one module per command, each with ``register(sub)``.

``eval`` and ``app`` pass their arguments to their own parsers (``eval/run_vqa.py``, ``app.py``).
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from graft_vqa import __version__
from graft_vqa.core.errors import GraftVQAError
from graft_vqa.interfaces.advice import for_cli, install_cli_logging
from graft_vqa.core.text import clean_text
from graft_vqa.interfaces.cli import ask, calibrate, classify, index, search, segment, weights

log = logging.getLogger("graft_vqa")

EPILOG = """examples:
  graft-vqa ask examples/rgbn_5m_utm18n.tif "Is there a water area?" --allow-untrained
  graft-vqa ask tile.tif "How many buildings are there?" --planner openai --json
  graft-vqa index 'tiles/**/*.tif' --out tiles.index
  graft-vqa search tiles.index "a baseball field" --top 20 --bbox=-75.2,39.9,-75.1,40.0
  graft-vqa classify tile.tif --labels "forest,water,urban,farmland"
  graft-vqa segment tile.tif "water" --out water.tif --vector water.geojson
  graft-vqa weights list
  graft-vqa eval --benchmark rsvqa --data-root ../shared/data/rsvqa_lr_sample --limit 100 --out runs/lr
  graft-vqa calibrate --data-root ../shared/data/rsvqa_lr_sample --split test --allow-untrained --out lr.json
  graft-vqa eval --data-root DIR --thresholds lr.json --out runs/lr-calibrated
  graft-vqa app --port 7860
"""

COMMANDS = (ask, index, search, classify, segment, calibrate, weights)  # modules with register(sub); their parsers set func


def _run_eval(argv: list[str]) -> int:
    from graft_vqa.interfaces.evaluation.run import main as eval_main

    return int(eval_main(argv, prog="graft-vqa eval") or 0)


def _run_app(argv: list[str]) -> int:
    from graft_vqa.interfaces.app import main as app_main

    return int(app_main(argv) or 0)


# subcommands whose options their own parsers read
PASSTHROUGH: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "eval": ("run a benchmark (graft-vqa eval --help)", _run_eval),
    "app": ("start the Gradio chat (graft-vqa app --help)", _run_app),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command (cheap: imports no model code)."""
    parser = argparse.ArgumentParser(
        prog="graft-vqa", description="Ask satellite and aerial tiles questions; get answers you can audit.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    for name, (helptext, _) in PASSTHROUGH.items():
        sub.add_parser(name, help=helptext, add_help=False).add_argument("rest", nargs=argparse.REMAINDER)
    return parser


NEGATIVE_LISTS = ("--bbox",)  # options whose value may start with "-" (a western or southern coordinate)


def _attach_negative_values(argv: list[str]) -> list[str]:
    """``--bbox -76.1,29.7,...`` as ``--bbox=-76.1,29.7,...``: argparse would read the value as an option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in NEGATIVE_LISTS and i + 1 < len(argv) and argv[i + 1].startswith("-") and "," in argv[i + 1]:
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; library errors end with a one-line message and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:
        return PASSTHROUGH[argv[0]][1](argv[1:])
    args = build_parser().parse_args(_attach_negative_values(argv))
    # Warnings reach the user through each answer's `warnings`; the log adds detail with -v.
    install_cli_logging(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except GraftVQAError as exc:
        print(f"graft-vqa: error: {for_cli(clean_text(str(exc), keep_newlines=True))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("graft-vqa: interrupted (a scene's features computed so far are kept for the next run)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
