"""``graft-vqa weights list|path|pull [NAME]``: the model weights registry."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from graft_vqa import weights
from graft_vqa.core.errors import GraftVQAError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``weights`` command to the top-level parser's subcommands."""
    w = sub.add_parser("weights", help="list, locate or download model weights",
                       description="list: which weights are found (with their path) or missing (with the folders "
                                   "searched); path NAME: the file, or what to fetch and where to put it; "
                                   "pull NAME: download a published file into the cache.")
    w.add_argument("action", choices=["list", "path", "pull"])
    w.add_argument("name", nargs="?", choices=list(weights.WEIGHTS), help="registry name")
    w.set_defaults(func=run)


def folders_searched() -> list[Path]:
    """The folders a file is looked for in, in order (``$GRAFT_VQA_WEIGHTS``, then the cache)."""
    env = os.environ.get("GRAFT_VQA_WEIGHTS")
    return ([Path(env).expanduser()] if env else []) + [weights.cache_dir()]


def list_lines() -> list[str]:
    """One line per registry entry: found (its path) or missing (its file, where it was looked for)."""
    folders = " and ".join(f"{folder}/" for folder in folders_searched())
    lines = [f"weights are looked for in {folders} (set $GRAFT_VQA_WEIGHTS to add a folder)"]
    for name, spec in weights.WEIGHTS.items():
        found = weights.find(name)
        if found is not None:
            lines.append(f"{name:22} found    {found}")
            continue
        fetch = f"`graft-vqa weights pull {name}`" if spec.url else "from the GRAFT authors"
        lines.append(f"{name:22} missing  {spec.filename} (not in {folders}; {fetch})")
    return lines


def run(args: argparse.Namespace) -> int:
    """List the registry, print one file's path, or download one file."""
    if args.action == "list":
        print("\n".join(list_lines()))
        return 0
    if not args.name:
        raise GraftVQAError(f"`graft-vqa weights {args.action}` needs a NAME; see `graft-vqa weights list`")
    if args.action == "path":
        print(weights.resolve(args.name))  # a missing file: the same advice as `ask` (main says it in CLI words)
    else:
        print(weights.pull(args.name))
    return 0
