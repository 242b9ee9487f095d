"""``find`` on a scene: components on the scene-wide cell map, full-resolution masks, SAM per window.

1. Components are taken on the whole scene's cell map, so an object that crosses a window border
   is one instance with its full extent.
2. Each instance small enough (``FULLRES_PIXELS``) gets a full-resolution mask, keeping the parts
   that touch the component's own cells (plus one cell): a scorer with full-resolution maps is asked
   again for a window around the instances (grouped by window), a feature scorer's cell map is
   bilinearly upsampled over the box, as whole tiles are; both thresholded at the same cut.
3. SAM refines each instance that fits a SAM window, in a window around it: instances are grouped
   by window, the windows visited row by row, so the SAM image embedding is computed once per
   window that holds instances.
"""
from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any, Callable

import numpy as np
from rasterio.windows import Window
from scipy import ndimage
from skimage.measure import label

from graft_vqa.config import FindConfig
from graft_vqa.perception.components import grid_components, merge_duplicates, threshold_value
from graft_vqa.perception.instances import Box, Instance, paste
from graft_vqa.perception.protocols import Refiner
from graft_vqa.perception.scorer import resize_maps

log = logging.getLogger(__name__)

FULLRES_PIXELS = 16_000_000  # instances with larger boxes keep their cell-resolution masks


PixelMaps = Callable[[Any], np.ndarray]  # window tile -> (h, w) full-resolution scores of the query


def find_in_scene(tile: Any, score_map: np.ndarray, valid: np.ndarray, cell: int, box: Box, config: FindConfig,
                  refiner: Refiner | None, sam_side: int, pixel_maps: PixelMaps | None = None,
                  window_side: int = 1024) -> list[Instance]:
    """Instances of one scene-wide (rows, cols) map of ``cell``-pixel cells inside pixel ``box``, best
    score first; ``valid`` marks the cells that hold data; SAM windows are ``sam_side`` pixels;
    ``pixel_maps`` rescores windows of ``window_side`` pixels at full resolution (None: upsample)."""
    left, top, right, bottom = box
    r0, c0, r1, c1 = top // cell, left // cell, math.ceil(bottom / cell), math.ceil(right / cell)
    scores = score_map[r0:r1, c0:c1]
    valid = valid[r0:r1, c0:c1] & np.isfinite(scores)
    cut = threshold_value(scores, valid, config)
    row_areas = None
    if config.min_area_m2 > 0 and tile.has_area:
        row_areas = np.asarray(tile.pixel_area_map(), dtype=np.float64)[:, 0]
    found = grid_components(np.nan_to_num(scores, nan=-np.inf), valid, cut, origin=(c0 * cell, r0 * cell),
                            scale=cell, bounds=(tile.height, tile.width), row_areas=row_areas,
                            min_pixels=config.min_pixels, min_area_m2=config.min_area_m2)
    if pixel_maps is not None and cell > 1:
        found = rescore_in_windows(tile, found, pixel_maps, cut, window_side)
    found = [to_pixels(inst, score_map, cut, cell, (tile.height, tile.width)) for inst in found]
    if not found or config.refine != "sam" or refiner is None:
        return found
    refined = refine_in_windows(tile, found, refiner, config, sam_side)
    return merge_duplicates(refined, config.merge_iou)


def _keep_own(mask: np.ndarray, own: np.ndarray) -> np.ndarray:
    """The 8-connected parts of ``mask`` that touch ``own``."""
    parts, n = label(mask, connectivity=2, return_num=True)
    if n == 0:
        return mask
    touching = np.unique(parts[own & mask])
    return np.isin(parts, touching[touching > 0])


def _near(inst: Instance, window: Box, cell: int, shape: tuple[int, int]) -> np.ndarray:
    """The component's cells grown by one cell, at full resolution over ``window`` (cell-aligned)."""
    near = ndimage.binary_dilation(paste(inst, window, cell), iterations=1)
    return np.repeat(np.repeat(near, cell, axis=0), cell, axis=1)[:shape[0], :shape[1]]


def _with_mask(inst: Instance, mask: np.ndarray, scores: np.ndarray, window: Box) -> Instance:
    """``inst`` with a full-resolution mask given over ``window`` (unchanged when the mask is empty)."""
    if not mask.any():
        return inst
    rws, cls = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rws[0]), int(rws[-1]) + 1, int(cls[0]), int(cls[-1]) + 1
    best = np.unravel_index(int(np.argmax(np.where(mask, scores, -np.inf))), scores.shape)
    box = (window[0] + x0, window[1] + y0, window[0] + x1, window[1] + y1)
    return replace(inst, crop=mask[y0:y1, x0:x1].copy(), box=box, scale=1,
                   best_pixel=(window[1] + int(best[0]), window[0] + int(best[1])))


def _margin_window(inst: Instance, cell: int, shape: tuple[int, int]) -> Box:
    """The instance's cell-aligned box grown by one cell, clipped to the scene."""
    left, top, right, bottom = inst.box
    height, width = shape
    return (max(0, (left // cell - 1) * cell), max(0, (top // cell - 1) * cell),
            min(width, (math.ceil(right / cell) + 1) * cell), min(height, (math.ceil(bottom / cell) + 1) * cell))


def to_pixels(inst: Instance, score_map: np.ndarray, cut: float, cell: int, shape: tuple[int, int]) -> Instance:
    """The instance with a full-resolution mask from the bilinearly upsampled cell map, when its box is
    small enough and it is still on cells (else unchanged)."""
    left, top, right, bottom = inst.box
    if inst.scale == 1 or (right - left) * (bottom - top) > FULLRES_PIXELS:
        return inst
    window = _margin_window(inst, cell, shape)
    cr0, cc0 = window[1] // cell, window[0] // cell
    cr1, cc1 = math.ceil(window[3] / cell), math.ceil(window[2] / cell)
    sub = score_map[cr0:cr1, cc0:cc1]
    floor = float(np.nanmin(sub)) - 1.0 if np.isfinite(sub).any() else -1.0
    up = resize_maps(np.nan_to_num(sub, nan=floor)[None], ((cr1 - cr0) * cell, (cc1 - cc0) * cell))[0]
    up = up[:window[3] - window[1], :window[2] - window[0]]
    own = paste(inst, window, 1)
    mask = _keep_own((up >= cut) & _near(inst, window, cell, up.shape), own)
    return _with_mask(inst, mask, up, window)


def rescore_in_windows(tile: Any, instances: list[Instance], pixel_maps: PixelMaps, cut: float,
                       side: int) -> list[Instance]:
    """Full-resolution masks from the scorer itself, one call per window holding small instances."""
    shape = (tile.height, tile.width)
    out = list(instances)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, inst in enumerate(instances):
        margin = _margin_window(inst, inst.scale, shape)
        start = None if (margin[2] - margin[0]) * (margin[3] - margin[1]) > FULLRES_PIXELS else \
            sam_window(margin, side, shape)
        if start is not None:
            groups.setdefault(start, []).append(i)
    for (row, col), members in sorted(groups.items()):
        window_tile = tile.read(Window(col, row, min(side, tile.width - col), min(side, tile.height - row)))
        scores = np.asarray(pixel_maps(window_tile), dtype=np.float32)
        for i in members:
            inst = instances[i]
            margin = _margin_window(inst, inst.scale, shape)
            local = scores[margin[1] - row:margin[3] - row, margin[0] - col:margin[2] - col]
            own = paste(inst, margin, 1)
            mask = _keep_own((local >= cut) & _near(inst, margin, inst.scale, local.shape), own)
            out[i] = _with_mask(inst, mask, local, margin)
    return out


def sam_window(box: Box, side: int, shape: tuple[int, int]) -> tuple[int, int] | None:
    """(row_off, col_off) of the SAM window for an instance: on a grid of ``side // 2`` when one of its
    windows holds the box (so neighbours share embeddings), else centred on it; None when the box is
    larger than a window."""
    left, top, right, bottom = box
    if right - left > side or bottom - top > side:
        return None
    height, width = shape
    return (_start(top, bottom, side, height), _start(left, right, side, width))


def _start(lo: int, hi: int, side: int, length: int) -> int:
    if length <= side:
        return 0
    step = side // 2
    first, last = max(0, hi - side), min(lo, length - side)
    aligned = [s for s in range(math.ceil(first / step) * step, last + 1, step)]
    if aligned:
        centre = (lo + hi) / 2 - side / 2
        return min(aligned, key=lambda s: abs(s - centre))
    return int(min(max(0, (lo + hi) // 2 - side // 2), length - side))


def _shift(inst: Instance, dx: int, dy: int) -> Instance:
    left, top, right, bottom = inst.box
    return replace(inst, box=(left + dx, top + dy, right + dx, bottom + dy),
                   best_pixel=(inst.best_pixel[0] + dy, inst.best_pixel[1] + dx))


def refine_in_windows(tile: Any, instances: list[Instance], refiner: Refiner, config: FindConfig,
                      side: int) -> list[Instance]:
    """SAM refinement of each instance in a window around it, one embedding per window (row-major)."""
    groups: dict[tuple[int, int], list[int]] = {}
    out: list[Instance] = list(instances)
    for i, inst in enumerate(instances):
        start = sam_window(inst.box, side, (tile.height, tile.width))
        if start is not None:
            groups.setdefault(start, []).append(i)
    for (row, col), members in sorted(groups.items()):
        window_tile = tile.read(Window(col, row, min(side, tile.width - col), min(side, tile.height - row)))
        local = [_shift(instances[i], -col, -row) for i in members]
        refined = refiner.refine(window_tile, local, box_prompt=config.sam_box_prompt,
                                 valid=np.asarray(window_tile.valid_mask(), dtype=bool))
        for i, inst in zip(members, refined):
            out[i] = _shift(inst, col, row)
    log.debug("SAM refined scene instances in %d window(s)", len(groups))
    return out
