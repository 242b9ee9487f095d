"""Score map → instances: threshold, connected components, size filters, optional SAM refinement.

Connectivity is **8-connected** (``skimage.measure.label(..., connectivity=2)``): pixels that touch
by a corner belong to the same instance, so two blobs whose masks touch (even diagonally) are
one instance, and a thin diagonal structure (a road drawn at 45°) is not split into single pixels.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.measure import label

from graft_vqa.config import FindConfig
from graft_vqa.perception.instances import Box, Instance, mask_box
from graft_vqa.perception.protocols import Refiner

log = logging.getLogger(__name__)

def threshold_value(score_map: np.ndarray, region: np.ndarray, config: FindConfig) -> float:
    """The cut-off for ``score_map`` inside ``region`` (absolute, or relative to the region's range)."""
    if config.threshold_mode == "absolute":
        return float(config.threshold)
    values = score_map[region]
    if values.size == 0:
        return float("inf")
    low, high = float(values.min()), float(values.max())
    if high <= low:  # a flat map holds no object
        return float("inf")
    return low + float(config.relative_threshold) * (high - low)


def _component_areas(tile: Any, labels: np.ndarray, n: int) -> np.ndarray | None:
    """Area in m² of each label 0..n (None when the tile has no area)."""
    if not getattr(tile, "has_area", False):
        return None
    areas = np.broadcast_to(np.asarray(tile.pixel_area_map(), dtype=np.float64), labels.shape)
    return np.bincount(labels.ravel(), weights=areas.ravel(), minlength=n + 1)


def components(tile: Any, score_map: np.ndarray, config: FindConfig,
               region: np.ndarray | None = None) -> list[Instance]:
    """Threshold ``score_map`` (H, W) inside ``region`` ∩ the tile's valid mask and return the
    connected components that pass ``config.min_pixels`` and ``config.min_area_m2``, best first."""
    valid = np.asarray(tile.valid_mask(), dtype=bool)
    if region is not None:
        valid = valid & region
    cut = threshold_value(score_map, valid, config)
    fg = (score_map >= cut) & valid
    labels, n = label(fg, connectivity=2, return_num=True)
    if n == 0:
        return []
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    areas = _component_areas(tile, labels, n) if config.min_area_m2 > 0 else None
    best = ndimage.maximum_position(score_map, labels, index=np.arange(1, n + 1))
    slices = ndimage.find_objects(labels)
    out: list[Instance] = []
    for k in range(1, n + 1):
        if counts[k] < config.min_pixels:
            continue
        if areas is not None and areas[k] < config.min_area_m2:
            continue
        rows, cols = slices[k - 1]
        mask = np.zeros(labels.shape, dtype=bool)  # zero pages stay untouched outside the box
        mask[rows, cols] = labels[rows, cols] == k
        row, col = (int(v) for v in best[k - 1])
        out.append(Instance(mask=mask, box=(cols.start, rows.start, cols.stop, rows.stop),
                            best_pixel=(row, col), score=float(score_map[row, col])))
    out.sort(key=lambda inst: -inst.score)
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _boxes_intersect(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _instance_iou(a: Instance, b: Instance) -> float:
    """IoU of two instances' masks, computed on the crop of their boxes' union (the masks are
    empty outside their boxes); 0 without touching the masks when the boxes are disjoint."""
    if not _boxes_intersect(a.box, b.box):
        return 0.0
    left, top = min(a.box[0], b.box[0]), min(a.box[1], b.box[1])
    right, bottom = max(a.box[2], b.box[2]), max(a.box[3], b.box[3])
    return iou(a.mask[top:bottom, left:right], b.mask[top:bottom, left:right])


def merge_duplicates(instances: list[Instance], merge_iou: float) -> list[Instance]:
    """Greedy merge, best score first: an instance whose mask overlaps a kept one by IoU > ``merge_iou``
    is folded into it (mask union, box recomputed, the better score kept). Only pairs whose boxes
    intersect are compared, on their union box (``merge_iou`` is at least 0)."""
    kept: list[Instance] = []
    for inst in sorted(instances, key=lambda i: -i.score):
        for j, other in enumerate(kept):
            if _instance_iou(inst, other) > merge_iou:
                union = other.mask | inst.mask
                kept[j] = replace(other, mask=union, box=mask_box(union))
                break
        else:
            kept.append(inst)
    return kept


def find_instances(tile: Any, score_map: np.ndarray, config: FindConfig,
                   refiner: Refiner | None = None,
                   region: np.ndarray | None = None) -> list[Instance]:
    """The whole ``find`` pipeline on one (H, W) score map: components, then SAM refinement when
    ``config.refine == "sam"`` and a refiner is given, then duplicate merging."""
    found = components(tile, score_map, config, region)
    if not found or config.refine != "sam" or refiner is None:
        return found
    valid = np.asarray(tile.valid_mask(), dtype=bool)
    if region is not None:
        valid = valid & region
    refined = refiner.refine(tile, found, box_prompt=config.sam_box_prompt, valid=valid)
    return merge_duplicates(refined, config.merge_iou)
