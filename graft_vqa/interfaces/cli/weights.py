"""``graft-vqa weights list|path|pull [NAME]``: the model weights registry."""
from __future__ import annotations

import argparse

from graft_vqa import weights
from graft_vqa.core.errors import GraftVQAError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``weights`` command to the top-level parser's subcommands."""
    w = sub.add_parser("weights", help="list, locate or download model weights")
    w.add_argument("action", choices=["list", "path", "pull"])
    w.add_argument("name", nargs="?", choices=list(weights.WEIGHTS), help="registry name")
    w.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List the registry, print one file's path, or download one file."""
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
