"""GRAFT encode throughput on CPU with full-size ViT-B/16 random weights.

Prints images/s for batch 1 and batch 8 (ratio batch 8 / batch 1), and the time to build the
patch grid of a large tile (default 2048x2048) with sliding windows encoded in batches vs. the
same windows encoded one by one (ratio one-by-one / batched).

    .venv/bin/python bench/encode.py [--tile 2048] [--overlap 32] [--batch 8] [--repeats 3]
                                     [--grid-model graft-vitb16|graft-tiny]

On an idle 2-core machine the defaults take about 2 minutes (2 x 121 ViT-B/16 windows).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from graft_models import build_graft
from graft_models.sliding import patch_grid, pad_to_grid, window_starts


def images_per_second(model: torch.nn.Module, batch: int, repeats: int) -> float:
    """Median images/s of ``encode_patches`` + ``encode_image`` (one forward) over ``repeats`` runs."""
    x = torch.randn(batch, 3, 224, 224)
    with torch.inference_mode():
        model(x)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return batch / float(np.median(times))


def timed_grid(model: torch.nn.Module, rgb: np.ndarray, overlap: int, batch: int) -> tuple[float, np.ndarray]:
    """Seconds to compute the tile's patch grid, and the grid."""
    start = time.perf_counter()
    grid = patch_grid(model, rgb, overlap=overlap, batch_size=batch, progress=False)
    return time.perf_counter() - start, grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tile", type=int, default=2048, help="tile side in pixels")
    parser.add_argument("--overlap", type=int, default=32, help="window overlap in pixels (multiple of 16)")
    parser.add_argument("--batch", type=int, default=8, help="windows per batch for the batched grid")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats for images/s")
    parser.add_argument("--grid-model", default="graft-vitb16", choices=["graft-vitb16", "graft-tiny"],
                        help="model for the patch-grid timing (graft-tiny for a quick run on a busy machine)")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = build_graft("graft-vitb16")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, graft-vitb16 random weights")
    ips1 = images_per_second(model, 1, args.repeats)
    ips8 = images_per_second(model, 8, args.repeats)
    print(f"encode batch 1: {ips1:.2f} images/s")
    print(f"encode batch 8: {ips8:.2f} images/s   (ratio batch8/batch1: {ips8 / ips1:.2f}x)")

    if args.grid_model != "graft-vitb16":
        model = build_graft(args.grid_model)
        print(f"patch-grid timing with {args.grid_model}")
    rgb = np.random.default_rng(0).integers(0, 256, (args.tile, args.tile, 3), dtype=np.uint8)
    side = len(window_starts(pad_to_grid(rgb, 16, 224).shape[0], 224, 224 - args.overlap))
    batched_s, grid = timed_grid(model, rgb, args.overlap, args.batch)
    single_s, grid1 = timed_grid(model, rgb, args.overlap, 1)
    print(f"patch grid {args.tile}x{args.tile} -> {grid.shape[0]}x{grid.shape[1]} patches, "
          f"{side * side} windows of 224 (overlap {args.overlap})")
    print(f"  batched (batch {args.batch}): {batched_s:.2f} s")
    print(f"  one by one:                  {single_s:.2f} s   (ratio one-by-one/batched: "
          f"{single_s / batched_s:.2f}x, max |diff| {np.abs(grid - grid1).max():.1e})")


if __name__ == "__main__":
    main()
