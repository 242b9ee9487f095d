"""``graft-vqa ask TILE QUESTION``: answer one question about one tile, or about many tiles at once.

Everything the user gave is checked before any work: the tiles (a glob that matches nothing), the
area of interest (``--aoi``/``--bbox``/``--aoi-crs``) and every output path (``--geojson``,
``--vector``, ``--out``: missing folder, not writable, unknown extension, unknown ``--vector-crs``).
A bad one is a one-line error, and nothing is computed or written.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from graft_vqa.core.errors import OutputPathError
from graft_vqa.interfaces.advice import for_cli
from graft_vqa.interfaces.options import (
    add_engine_options,
    add_ray_options,
    check_ray_options,
    engine_config,
    given_options,
    make_planner,
)

VECTOR_HELP = "GeoPackage (.gpkg), GeoJSON (.geojson), FlatGeobuf (.fgb) or Shapefile (.shp)"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``ask`` command to the top-level parser's subcommands."""
    ask = sub.add_parser("ask", help="answer a question about a tile (or many tiles)",
                         description="Answer a question about a tile, or about many tiles with a total.")
    ask.add_argument("tiles", nargs="+", metavar="TILE",
                     help="GeoTIFF, COG, VRT, PNG or JPEG; or many tiles: a quoted glob ('tiles/*.tif'), "
                          "a folder, a .txt file of paths, or several paths")
    ask.add_argument("question", help='e.g. "How many buildings are there?"')
    area = ask.add_argument_group("area of interest")
    area.add_argument("--aoi", metavar="FILE",
                      help="answer inside this area: GeoJSON, GeoPackage or Shapefile (the union of the first "
                           "layer's polygons)")
    area.add_argument("--bbox", metavar="MINX,MINY,MAXX,MAXY",
                      help="answer inside this box (in the raster's CRS unless --aoi-crs)")
    area.add_argument("--aoi-crs", metavar="CRS",
                      help="CRS of --aoi/--bbox, e.g. EPSG:4326 (default: the file's own CRS; for --bbox, "
                           "the raster's)")
    out = ask.add_argument_group("outputs")
    out.add_argument("--json", action="store_true", help="print the whole answer (or every tile's row) as JSON")
    out.add_argument("--geojson", metavar="OUT",
                     help="write the detections as RFC 7946 GeoJSON (WGS84 longitude/latitude) to OUT")
    out.add_argument("--vector", metavar="OUT", help=f"write the detections as {VECTOR_HELP}, by extension")
    out.add_argument("--vector-crs", metavar="CRS",
                     help="reproject --vector to this CRS (default: the raster's; for .geojson, WGS84); 'raster' "
                          "keeps the raster's CRS in a .geojson (legacy crs member, not RFC 7946)")
    out.add_argument("--out", metavar="TABLE", help="write the per-tile table to TABLE (.csv or .jsonl)")
    out.add_argument("--show-program", action="store_true", help="print the program that answered")
    add_engine_options(ask)
    add_ray_options(ask)
    ask.set_defaults(func=run)


@dataclass
class Request:
    """What ``ask`` was asked, checked before any work."""

    tiles: list[str]  # tile paths (one, or a collection expanded)
    collection: bool  # several tiles: answers per tile and a total
    aoi: Any  # graft_vqa.core.aoi.UserAOI or None
    vector_crs: str | None  # --vector-crs as given (None: the format's default)


def prepare(args: argparse.Namespace) -> Request:
    """Check the tiles, the area of interest and every output path; raise a one-line error if any is bad."""
    from graft_vqa.collection import TABLE_SUFFIXES, expand_images, is_collection
    from graft_vqa.core.aoi import aoi_from_user, crs_text
    from graft_vqa.core.files import check_output_path
    from graft_vqa.core.vectors import VECTOR_FORMATS

    collection = len(args.tiles) > 1 or is_collection(args.tiles[0])
    if collection and (args.vector or args.geojson):
        raise OutputPathError("--vector and --geojson write one tile's detections; for many tiles write the "
                              "per-tile table with --out results.csv (or ask about each tile)")
    if args.vector_crs and not args.vector:
        raise OutputPathError("--vector-crs reprojects --vector: add --vector OUT (--geojson is always WGS84)")
    if args.geojson:
        check_output_path(args.geojson, (".geojson", ".json"), "--geojson")
    if args.vector:
        check_output_path(args.vector, VECTOR_FORMATS, "--vector")
        if args.vector_crs and args.vector_crs != "raster":
            crs_text(args.vector_crs, "--vector-crs", OutputPathError)
    if args.out:
        check_output_path(args.out, TABLE_SUFFIXES, "--out")
    tiles = expand_images(args.tiles if collection else args.tiles[0])
    aoi = aoi_from_user(aoi=args.aoi, bbox=args.bbox, aoi_crs=args.aoi_crs)
    return Request(tiles=tiles, collection=collection, aoi=aoi, vector_crs=args.vector_crs)


def build_engine(args: argparse.Namespace) -> Any:
    """The engine for these arguments (tests replace it with one of known score maps)."""
    from graft_vqa.engine import Engine

    return Engine(planner=make_planner(args), config=engine_config(args))


def worker_engine(args: argparse.Namespace) -> Any:
    """The engine one Ray worker builds once for a collection, its models built when the worker starts."""
    from graft_vqa.distributed.tiles import ready_engine  # on a Ray worker: ray is there

    return ready_engine(build_engine(args))


def run(args: argparse.Namespace) -> int:
    """Answer the question; print the answer (or the whole answer as JSON); 0 when it answered."""
    check_ray_options(args)
    request = prepare(args)
    engine = build_engine(args)
    if request.collection:
        return _run_collection(args, request, engine)
    runner = _window_runner(args)
    if runner is not None:
        engine.window_runner = runner
    try:
        return _run_one(args, request, engine)
    finally:
        if runner is not None:
            runner.close()


def _window_runner(args: argparse.Namespace) -> Any:
    """With ``--ray``: a scene's windows run on the cluster's workers (Ray starts only if the tile is a scene)."""
    if args.ray is None:
        return None
    from graft_vqa.distributed import RayWindowRunner  # imports ray: only with --ray

    return RayWindowRunner(engine_config(args), address=args.ray, workers=args.workers,
                           worker_cpus=args.worker_cpus, device=given_options(args).get("device"))


def _run_one(args: argparse.Namespace, request: Request, engine: Any) -> int:
    options = request.aoi.ask_options() if request.aoi is not None else {}
    answer = engine.ask(request.tiles[0], args.question, **options)
    _write_outputs(args, request, answer)
    if args.json:
        print(answer.model_dump_json(indent=2))
    else:
        config = getattr(engine, "config", None)  # advice in CLI words, never a flag already passed
        for warning in answer.warnings:
            print(f"warning: {for_cli(warning, config)}", file=sys.stderr)
        if answer.error:
            print(f"could not answer ({answer.status}): {for_cli(answer.error, config)}", file=sys.stderr)
        elif answer.untrained:
            print(f"{answer.answer}    [untrained weights: this answer is not meaningful]")
        else:
            print(answer.answer)
        if args.show_program and answer.program:
            print("\n# program\n" + answer.program)
    return 0 if answer.error is None else 1


def _write_outputs(args: argparse.Namespace, request: Request, answer: Any) -> None:
    """The files of one answer; none when the question was not answered (they would be empty)."""
    from graft_vqa.collection import TileAnswer, write_table

    if args.out:
        status = "ok" if answer.error is None else answer.status
        write_table(args.out, [TileAnswer(request.tiles[0], args.question, answer, status, answer.error,
                                          answer.timings.get("total_s", 0.0))])
    wanted = [name for name in ("geojson", "vector") if getattr(args, name)]
    if answer.error is not None:
        if wanted:
            print(f"nothing written to {', '.join('--' + n for n in wanted)}: the question was not answered",
                  file=sys.stderr)
        return
    if args.geojson:
        answer.to_file(args.geojson)
    if args.vector:
        answer.to_file(args.vector, crs=request.vector_crs)


def _run_collection(args: argparse.Namespace, request: Request, engine: Any) -> int:
    from graft_vqa.collection import ask_many

    if args.ray is None:
        result = ask_many(request.tiles, args.question, engine=engine, aoi=request.aoi, out=args.out,
                          progress=not args.json)
    else:
        result = _ask_many_on_ray(args, request)
    total = result.total
    if args.json:
        print(json.dumps({"tiles": result.rows(), "total": {
            "question": total.question, "answer": total.answer, "value": total.value, "kind": total.kind,
            "answered": total.answered, "failed": total.failed, "skipped": total.skipped}}, indent=2))
        return 0 if result.ok else 1
    config = getattr(engine, "config", None)  # advice in CLI words, never a flag already passed
    for record in result.tiles:
        shown = (record.answer.answer if record.status == "ok"
                 else f"[{record.status}] {for_cli(str(record.error), config)}")
        print(f"{record.tile}\t{shown}")
    warnings = dict.fromkeys(w for r in result.tiles if r.answer is not None for w in r.answer.warnings)
    untrained = any(r.answer is not None and r.answer.untrained for r in result.tiles)
    flag = "    [untrained weights: these answers are not meaningful]" if untrained else ""
    print(f"total\t{total.summary()}{flag}")
    for warning in warnings:
        print(f"warning: {for_cli(warning, config)}", file=sys.stderr)
    return 0 if result.ok else 1


def _ask_many_on_ray(args: argparse.Namespace, request: Request) -> Any:
    """The collection's tiles answered by the workers of a Ray cluster (each builds the engine once)."""
    import functools

    from graft_vqa.collection import ask_many
    from graft_vqa.distributed import RayTiles, connect, disconnect, worker_spec  # imports ray: only with --ray

    cluster = connect(args.ray, verbose=args.verbose)
    try:
        spec, args.device = worker_spec(cluster, workers=args.workers, cpus=args.worker_cpus,
                                        device=given_options(args).get("device"))
        runner = RayTiles(functools.partial(worker_engine, args), cluster, spec=spec)
        try:
            return ask_many(request.tiles, args.question, aoi=request.aoi, out=args.out, progress=not args.json,
                            runner=runner)
        finally:
            runner.close()
    finally:
        disconnect(cluster)
