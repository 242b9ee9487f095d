"""What the ImagePatch API's work costs on this machine, next to what it charges (``COSTS``).

Usage: ``python bench/api_costs.py [--size 512]``. Each line times one kind of host-side API
work on a synthetic tile and prints microseconds per unit next to the cost ``graft_vqa.image_patch.
COSTS`` charges per unit (1 unit is meant to be about 1 µs here), so the charges can be checked
and re-calibrated. Text encoding and SAM need real models; their charges come from ``bench/find.py``
(a new name's text: about 20 ms; SAM: 1.4-2.1 s for 20 prompts on the CPU).
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np
import shapely
import torch

from graft_vqa.api import CostMeter, metered
from graft_vqa.config import FindConfig
from graft_vqa.core.tiles import load_tile
from graft_vqa.image_patch import COSTS, ImagePatch, PatchContext
from graft_vqa.perception.components import components
from graft_vqa.perception.scorer import resize_maps


def per_call_us(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time of ``fn()`` in microseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e6)
    return float(np.median(times))


def blobs(size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """A score map with ``n`` square blobs of 0.5 on 0.0."""
    score = np.zeros((size, size), dtype=np.float32)
    for r, c in rng.integers(0, size - 12, size=(n, 2)):
        score[r:r + 10, c:c + 10] = 0.5
    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="tile side in pixels")
    args = parser.parse_args()
    size, rng = args.size, np.random.default_rng(0)
    torch.set_num_threads(2)
    tile = load_tile(np.zeros((size, size, 3), np.uint8), gsd_m=1.0)
    pixels = size * size
    rows = []

    grid = torch.randn(size // 16, size // 16, 512)
    text = torch.randn(1, 512)
    us = per_call_us(lambda: resize_maps(torch.einsum("hwc,qc->qhw", grid, text).numpy(), (size, size)))
    rows.append(("score map (einsum + resize)", us / pixels, COSTS.pixel_scored, "per tile pixel"))

    score = blobs(size, 60, rng)
    us = per_call_us(lambda: components(tile, score, FindConfig(refine="none")))
    rows.append(("components (threshold, label)", us / pixels, COSTS.pixel_segmented, "per pixel"))

    ctx = PatchContext(tile=tile, scorer=None, config=FindConfig(refine="none"))
    masks = [score > 0.25 for _ in range(1)]
    insts = components(tile, score, FindConfig(refine="none"))

    def trace() -> None:
        for inst in insts:
            _ = ImagePatch(tile, inst, context=ctx).polygon_px

    us = per_call_us(trace) / max(1, len(insts))
    box_px = float(np.mean([(i.box[2] - i.box[0]) * (i.box[3] - i.box[1]) for i in insts]))
    charged = COSTS.patch_traced + box_px * COSTS.pixel_traced
    rows.append((f"outline traced ({box_px:.0f} px box)", us, charged, "per patch"))

    geoms = np.array([ImagePatch(tile, i, context=ctx).polygon_px for i in insts], dtype=object)
    a, b = np.repeat(geoms, len(geoms)), np.tile(geoms, len(geoms))
    us = per_call_us(lambda: shapely.distance(a, b))
    rows.append(("exact outline distance", us / len(a), COSTS.pair_checked, "per pair"))

    mask = masks[0]
    us = per_call_us(lambda: tile.area_m2(mask))
    rows.append(("area of a mask", us / pixels, COSTS.pixel_masked, "per tile pixel"))

    patches = [ImagePatch(tile, i, context=ctx) for i in insts] * 20
    meter = CostMeter(1e15)
    with metered(meter):
        ctx_patch = patches[0]
        ctx_patch.filter_related(patches, "is_next_to", patches)  # outlines traced once
        spent = meter.spent
        us = per_call_us(lambda: ctx_patch.filter_related(patches, "is_next_to", patches))
    per_call = (meter.spent - spent) / 5
    rows.append((f"filter_related is_next_to, {len(patches)} x {len(patches)}", us, per_call, "per call"))

    print(f"tile {size}x{size}; charges in units of about 1 µs (graft_vqa.api.COST_UNIT)")
    print(f"{'work':42s} {'measured µs':>12s} {'charged':>10s}  {'unit':<14s} ratio")
    for name, measured, charged_units, unit in rows:
        print(f"{name:42s} {measured:12.4f} {charged_units:10.4f}  {unit:<14s} {charged_units / measured:5.2f}")


if __name__ == "__main__":
    main()
