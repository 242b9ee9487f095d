"""``graft-vqa classify TILE --labels "forest,water,urban"``: zero-shot label probabilities, per chip."""
from __future__ import annotations

import argparse
import json
import sys

from graft_vqa.interfaces.options import EMBED_GROUPS, add_config_options, embed_configs

OUT_SUFFIXES = (".csv", ".tif", ".tiff")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``classify`` command to the top-level parser's subcommands."""
    classify = sub.add_parser(
        "classify", help="zero-shot label probabilities for a tile or each of its chips",
        description="Probabilities of each label (CLIP-style softmax of the image-level GRAFT model's cosines) "
                    "for the tile, or for each chip of a large raster (--chip 224).")
    classify.add_argument("tile", help="GeoTIFF, COG, PNG or JPEG")
    classify.add_argument("--labels", required=True, metavar="LABELS",
                          help='comma-separated labels ("forest,water,urban,farmland") or a file of labels, one a line')
    out = classify.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the table as JSON")
    out.add_argument("--out", metavar="OUT", help="write the table (.csv) or the winning label per chip (.tif)")
    add_config_options(classify, EMBED_GROUPS)
    classify.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Classify; print the table (or JSON), or write it."""
    from graft_vqa.classification import classify, parse_labels
    from graft_vqa.core.files import check_output_path, write_text

    target = check_output_path(args.out, OUT_SUFFIXES, "--out") if args.out else None
    labels = parse_labels(args.labels)  # bad labels fail before the model loads
    config, chips = embed_configs(args)
    result = classify(args.tile, labels, config=config, chips=chips)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if target is not None and target.suffix.lower() == ".csv":
        write_text(target, result.to_csv())
        print(f"{len(result.windows)} chips written to {target}")
    elif target is not None:
        result.to_geotiff(target)
        print(f"winning labels of {len(result.windows)} chips written to {target}")
    elif args.json:
        print(json.dumps({"labels": result.labels, "chips": result.rows()}, indent=2))
    elif len(result.windows) == 1:
        probs = result.probabilities[0]
        for i in sorted(range(len(labels)), key=lambda i: -probs[i]):
            print(f"{probs[i]:.4f}  {labels[i]}")
    else:
        print(result.to_csv(), end="")
    return 0
