"""The ``graft-vqa`` command line: ``ask``, ``eval``, ``app`` and ``weights``."""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Sequence

from graft_vqa import __version__, weights
from graft_vqa.config import GRAFT_MODEL_NAMES, EngineConfig, FindConfig
from graft_vqa.errors import GraftVQAError

log = logging.getLogger("graft_vqa")

EPILOG = """examples:
  graft-vqa ask examples/rgbn_5m_utm18n.tif "Is there a water area?" --allow-untrained
  graft-vqa ask tile.tif "How many buildings are there?" --planner openai --json
  graft-vqa weights list
  graft-vqa eval --benchmark rsvqa --data-root ../shared/data/rsvqa_lr_sample --limit 100
  graft-vqa app --port 7860
"""


def positive_float(text: str) -> float:
    """argparse type: a finite number greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of metres, got {text}")
    return value


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Model, weights and planner options shared by ``ask`` and the app."""
    group = parser.add_argument_group("models and weights")
    group.add_argument("--graft-model", default="graft-vitb16", choices=list(GRAFT_MODEL_NAMES),
                       help="GRAFT architecture (default: %(default)s)")
    group.add_argument("--graft-weights", default=None,
                       choices=[n for n, s in weights.WEIGHTS.items() if s.kind == "graft"],
                       help="which GRAFT checkpoint to look for: the NAIP ones for aerial imagery around 1 m, "
                            "the Sentinel ones for 10 m satellite tiles (default: graft-naip-patch; "
                            "eval/run_vqa.py picks graft-sentinel-patch for RSVQA-LR)")
    group.add_argument("--graft-checkpoint", metavar="PATH", help="explicit GRAFT checkpoint file")
    group.add_argument("--clip-checkpoint", metavar="PATH", help="explicit CLIP ViT-B/16 weights file")
    group.add_argument("--sam", default="vit_b", choices=["vit_b", "vit_l", "vit_h"], help="SAM size")
    group.add_argument("--sam-checkpoint", metavar="PATH", help="explicit SAM checkpoint file")
    group.add_argument("--allow-untrained", action="store_true",
                       help="use random weights where none are found (answers are marked untrained)")
    group.add_argument("--trust-checkpoint", action="store_true",
                       help="allow unpickling non-tensor objects in checkpoints you trust")
    group.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    find = parser.add_argument_group("find")
    find.add_argument("--threshold", type=float, default=FindConfig.threshold,
                      help="cosine score threshold (default: %(default)s)")
    find.add_argument("--refine", default="sam", choices=["sam", "none"], help="SAM refinement of instances")
    find.add_argument("--gsd-m", type=positive_float, metavar="METRES", help="ground sample distance for images without georeferencing")
    plan = parser.add_argument_group("planner")
    plan.add_argument("--planner", default="rules", choices=["rules", "openai"],
                      help="offline rule planner or an OpenAI-compatible LLM (default: %(default)s)")
    plan.add_argument("--base-url", help="OpenAI-compatible endpoint (else $OPENAI_BASE_URL)")
    plan.add_argument("--model", help="LLM name (else $GRAFT_VQA_MODEL)")


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """An :class:`EngineConfig` from parsed :func:`add_engine_options` arguments."""
    text_model = "clip-tiny" if args.graft_model == "graft-tiny" else "clip-vitb16"
    return EngineConfig(
        graft_model=args.graft_model, graft_weights=args.graft_weights or EngineConfig.graft_weights,
        graft_checkpoint=args.graft_checkpoint,
        text_model=text_model, clip_checkpoint=args.clip_checkpoint, sam_model=args.sam,
        sam_checkpoint=args.sam_checkpoint, allow_untrained=args.allow_untrained,
        trust_checkpoint=args.trust_checkpoint, device=args.device, gsd_m=args.gsd_m,
        find=FindConfig(threshold=args.threshold, refine=args.refine),
        cache_dir=str(weights.home() / "programs"),
    )


def make_planner(args: argparse.Namespace):  # noqa: ANN201 - a planner object
    """``None`` (the engine's rule planner) or an :class:`OpenAIPlanner` from the arguments."""
    if args.planner == "rules":
        return None
    from graft_vqa.planner import OpenAIPlanner

    return OpenAIPlanner(base_url=args.base_url, model=args.model)


def cmd_ask(args: argparse.Namespace) -> int:
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


def cmd_weights(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name, spec in weights.WEIGHTS.items():
            found = weights.find(name)
            state = f"found: {found}" if found else ("downloadable" if spec.url else "supply it yourself")
            print(f"{name:22} {spec.filename:28} {spec.description} [{state}]")
        return 0
    if not args.name:
        raise GraftVQAError(f"`graft-vqa weights {args.action}` needs a NAME; see `graft-vqa weights list`")
    if args.action == "path":
        print(weights.resolve(args.name))
    else:
        print(weights.pull(args.name))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from eval.run_vqa import main as eval_main

    return int(eval_main(args.rest) or 0)


def cmd_app(args: argparse.Namespace) -> int:
    from graft_vqa.ui import main as app_main

    return int(app_main(args.rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graft-vqa", description="Ask satellite and aerial tiles questions; get answers you can audit.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ask = sub.add_parser("ask", help="answer a question about a tile", description="Answer a question about a tile.")
    ask.add_argument("tile", help="GeoTIFF, COG, PNG or JPEG")
    ask.add_argument("question", help='e.g. "How many buildings are there?"')
    ask.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    ask.add_argument("--geojson", metavar="OUT", help="write the detections as GeoJSON to OUT")
    ask.add_argument("--show-program", action="store_true", help="print the program that answered")
    add_engine_options(ask)
    ask.set_defaults(func=cmd_ask)

    w = sub.add_parser("weights", help="list, locate or download model weights")
    w.add_argument("action", choices=["list", "path", "pull"])
    w.add_argument("name", nargs="?", choices=list(weights.WEIGHTS), help="registry name")
    w.set_defaults(func=cmd_weights)

    for name, helptext, func in [("eval", "run a benchmark (see eval/run_vqa.py --help)", cmd_eval),
                                 ("app", "start the Gradio chat (see app.py --help)", cmd_app)]:
        p = sub.add_parser(name, help=helptext, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=func)
    return parser


_PASSTHROUGH = {"eval": cmd_eval, "app": cmd_app}  # subcommands whose options their own parsers read


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _PASSTHROUGH:
        return _PASSTHROUGH[argv[0]](argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    # Warnings reach the user through each answer's `warnings`; the log adds detail with -v.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except GraftVQAError as exc:
        print(f"graft-vqa: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
