"""``graft-vqa search INDEX TEXT``: the chips of an index that best match a text."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from graft_vqa.config import EmbedConfig
from graft_vqa.interfaces.options import add_config_options, embed_configs

VECTOR_SUFFIXES = (".geojson", ".json")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``search`` command to the top-level parser's subcommands."""
    search = sub.add_parser("search", help="find the chips of an index that best match a text",
                            description="Find the chips of an index that best match a text, optionally inside a "
                                        "place. Use the same model options as for `graft-vqa index`.")
    search.add_argument("index", help="the index folder (graft-vqa index ... --out INDEX)")
    search.add_argument("text", help='what to look for, e.g. "a baseball field"')
    search.add_argument("--top", type=int, default=10, help="how many chips (default: %(default)s)")
    place = search.add_mutually_exclusive_group()
    place.add_argument("--bbox", metavar="MINX,MINY,MAXX,MAXY",
                       help="keep chips whose footprint meets this box (in --aoi-crs, default EPSG:4326)")
    place.add_argument("--aoi", metavar="FILE",
                       help="keep chips whose footprint meets this area: GeoJSON, GeoPackage or Shapefile")
    search.add_argument("--aoi-crs", metavar="CRS",
                        help="CRS of --bbox/--aoi (default: the file's own CRS; for --bbox, EPSG:4326)")
    out = search.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the hits as JSON")
    out.add_argument("--vector", metavar="OUT", help="write the hits' footprints as GeoJSON (EPSG:4326)")
    add_config_options(search, ((EmbedConfig, "image-level model and weights (as the index was built)"),))
    search.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Search; print the hits (a table, or JSON), or write them as vectors."""
    from graft_vqa.core.files import check_output_path, write_json
    from graft_vqa.models import resolve_embedder
    from graft_vqa.retrieval import hits_geojson, place_filter, search
    from graft_vqa.retrieval.store import read_meta

    target = check_output_path(args.vector, VECTOR_SUFFIXES, "--vector") if args.vector else None
    place = place_filter(args.bbox, args.aoi, args.aoi_crs)  # a bad place fails before any work
    read_meta(Path(args.index).expanduser())  # so does a missing index
    config, _ = embed_configs(args)
    embedder, warnings = resolve_embedder(None, config, images=False)
    hits = search(args.index, args.text, args.top, embedder, aoi=place, aoi_crs="EPSG:4326" if place else None,
                  config=config)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if target is not None:
        write_json(target, hits_geojson(hits, args.text))
        print(f"{len(hits)} chips written to {target}")
    elif args.json:
        print(json.dumps(hits_geojson(hits, args.text)["features"], indent=2))
    else:
        if not hits:
            print("no chip matches" + (" inside that place" if args.bbox or args.aoi else ""))
        for rank, hit in enumerate(hits, 1):
            row, col, height, width = hit.window
            where = ("%.5f,%.5f,%.5f,%.5f" % hit.footprint.bounds) if hit.footprint is not None else "-"
            print(f"{rank:3d}  {hit.score:.4f}  {hit.path}  [{row}:{row + height}, {col}:{col + width}]  {where}")
    return 0

