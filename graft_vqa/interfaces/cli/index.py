"""``graft-vqa index PATHS... --out INDEX``: embed every chip of a collection into a search index."""
from __future__ import annotations

import argparse
import sys

from graft_vqa.interfaces.options import EMBED_GROUPS, add_config_options, embed_configs


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``index`` command to the top-level parser's subcommands."""
    index = sub.add_parser(
        "index", help="embed a collection of tiles into a search index",
        description="Embed every chip of a collection (rasters larger than --whole-max are cut into chips with "
                    "their footprints) with the image-level GRAFT model into a LanceDB index. Indexing again adds "
                    "only new or changed files; an interrupted run is resumed.")
    index.add_argument("paths", nargs="+", help="raster files, folders, globs ('tiles/**/*.tif') or text files of paths")
    index.add_argument("--out", required=True, metavar="INDEX", help="the index folder (created on first use)")
    index.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_options(index, EMBED_GROUPS)
    index.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Index the collection; print what was done; 1 when some files could not be read."""
    from tqdm.auto import tqdm

    from graft_vqa.retrieval import build_index

    config, chips = embed_configs(args)
    with tqdm(desc="indexing", unit="file", disable=True if args.quiet else None, file=sys.stderr) as bar:
        def progress(done: int, total: int, path: str) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        report = build_index(args.paths, args.out, config=config, chips=chips, progress=progress)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for path, error in report.failed:
        print(f"not indexed: {path}: {error}", file=sys.stderr)
    print(report.summary())
    return 1 if report.failed else 0
