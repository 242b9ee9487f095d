"""``graft-vqa index PATHS... --out INDEX [--ray [ADDRESS]]``: embed every chip of a collection into a search index."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from graft_vqa.interfaces.options import (
    EMBED_GROUPS, add_config_options, add_ray_options, check_ray_options, embed_configs, given_options,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``index`` command to the top-level parser's subcommands."""
    index = sub.add_parser(
        "index", help="embed a collection of tiles into a search index",
        description="Embed every chip of a collection (rasters larger than --whole-max are cut into chips with "
                    "their footprints) with the image-level GRAFT model into a LanceDB index. Indexing again adds "
                    "only new or changed files; an interrupted run is resumed. With --ray the chips are embedded "
                    "by the workers of a Ray cluster (every node must see the files at the same paths); this "
                    "process alone writes the index.")
    index.add_argument("paths", nargs="+", help="raster files, folders, globs ('tiles/**/*.tif') or text files of paths")
    index.add_argument("--out", required=True, metavar="INDEX", help="the index folder (created on first use)")
    index.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_options(index, EMBED_GROUPS)
    add_ray_options(index)
    index.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Index the collection; print what was done; 1 when some files could not be read."""
    from tqdm.auto import tqdm

    check_ray_options(args)
    config, chips = embed_configs(args)
    with tqdm(desc="indexing", unit="file", disable=True if args.quiet else None, file=sys.stderr) as bar:
        def progress(done: int, total: int, path: str) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        report = _build(args, config=config, chips=chips, progress=progress)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for path, error in report.failed:
        print(f"not indexed: {path}: {error}", file=sys.stderr)
    print(report.summary())
    return 1 if report.failed else 0


def _build(args: argparse.Namespace, **kwargs: Any) -> Any:
    """Here, or with ``--ray`` on the cluster's workers (each builds the image model once)."""
    if args.ray is None:
        from graft_vqa.retrieval import build_index

        return build_index(args.paths, args.out, **kwargs)
    from graft_vqa.distributed import build_index as build_index_on_ray  # imports ray: only with --ray

    return build_index_on_ray(args.paths, args.out, address=args.ray, workers=args.workers,
                              worker_cpus=args.worker_cpus, device=given_options(args, EMBED_GROUPS).get("device"),
                              **kwargs)
