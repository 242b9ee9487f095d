"""``graft-vqa segment TILE TEXT --out MASK.tif [--vector OUT]``: a text-prompted mask as GIS files."""
from __future__ import annotations

import argparse
import json
import sys

from graft_vqa.interfaces.options import add_config_options, engine_config

MASK_SUFFIXES = (".tif", ".tiff")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``segment`` command to the top-level parser's subcommands."""
    segment = sub.add_parser(
        "segment", help="segment a text prompt into a GeoTIFF mask (and vectors)",
        description="Segment TEXT in TILE with the engine's find (GRAFT pixel-level scores, the threshold, SAM "
                    "refinement) and write a single-band GeoTIFF mask on the tile's grid, CRS and nodata; its area "
                    "is the answer to 'What is the area covered by TEXT?'.")
    segment.add_argument("tile", help="GeoTIFF, COG, PNG or JPEG")
    segment.add_argument("text", help='what to segment, e.g. "water"')
    segment.add_argument("--out", required=True, metavar="MASK.tif", help="the GeoTIFF mask to write")
    segment.add_argument("--vector", metavar="OUT", help="also write the instances as vectors: GeoPackage (.gpkg), "
                                                         "GeoJSON (.geojson), FlatGeobuf (.fgb) or Shapefile (.shp)")
    area = segment.add_argument_group("area of interest")
    area.add_argument("--aoi", metavar="FILE", help="segment inside this area: GeoJSON, GeoPackage or Shapefile")
    area.add_argument("--bbox", metavar="MINX,MINY,MAXX,MAXY",
                      help="segment inside this box (in the raster's CRS unless --aoi-crs)")
    area.add_argument("--aoi-crs", metavar="CRS", help="CRS of --aoi/--bbox (default: the file's own; for --bbox, "
                                                       "the raster's)")
    segment.add_argument("--method", default="find", choices=["find", "sam-point", "threshold"],
                         help="find: the engine's pipeline (default); sam-point: the GRAFT paper's one SAM prompt; "
                              "threshold: the cut score map, no SAM")
    segment.add_argument("--json", action="store_true", help="print the result as JSON")
    add_config_options(segment)
    segment.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Segment; write the mask (and vectors); print the area."""
    from graft_vqa.core.aoi import aoi_from_user
    from graft_vqa.core.files import check_output_path
    from graft_vqa.core.vectors import VECTOR_FORMATS
    from graft_vqa.segmentation import segment

    out = check_output_path(args.out, MASK_SUFFIXES, "--out")
    vector = check_output_path(args.vector, VECTOR_FORMATS, "--vector") if args.vector else None
    aoi = aoi_from_user(args.aoi, args.bbox, args.aoi_crs)
    place = aoi.ask_options() if aoi is not None else {}
    result = segment(args.tile, args.text, method=args.method, config=engine_config(args), **place)
    result.to_geotiff(out)
    answer = result.answer()
    if vector is not None:
        result.to_vector(vector)
    if args.json:
        print(json.dumps({"text": args.text, "method": result.method, "area_m2": result.area_m2,
                          "pixels": int(result.mask.sum()), "instances": len(result.detections), "mask": str(out),
                          "vector": str(vector) if vector else None, "warnings": result.warnings}, indent=2))
        return 0
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.text}: {answer.answer} in {len(result.detections)} instance(s); mask written to {out}"
          + (f", vectors to {vector}" if vector else ""))
    return 0
