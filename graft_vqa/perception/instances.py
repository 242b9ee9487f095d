"""``find``'s instances: a mask *crop* over the instance's box, never a whole-tile mask.

An :class:`Instance` holds its mask only over its own box, at ``scale`` pixels per mask cell (1 on
whole tiles; a scene's cell size for instances too large to keep at full resolution), so memory grows
with the instances, not with the tile. :func:`paste` and :func:`area_m2` work on such crops.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Box", "Instance", "area_m2", "box_mask", "mask_box", "paste"]

Box = tuple[int, int, int, int]  # (left, top, right, bottom) pixel columns/rows, exclusive ends


@dataclass
class Instance:
    """One connected component (or its SAM-refined mask), as a crop over its box."""

    crop: np.ndarray  # bool (ceil(h / scale), ceil(w / scale)) over ``box``
    box: Box  # (left, top, right, bottom) in tile pixels, exclusive ends
    best_pixel: tuple[int, int]  # (row, col) tile pixel of the highest score inside the component
    score: float  # the score at ``best_pixel``
    refined: bool = False  # True when SAM replaced the component's mask
    sam_iou: float | None = None  # SAM's predicted IoU of the chosen mask, when refined
    scale: int = 1  # pixels per crop cell (1: full resolution)

    @classmethod
    def from_mask(cls, mask: np.ndarray, best_pixel: tuple[int, int], score: float, **kwargs: Any) -> Instance:
        """An instance from a full-tile bool mask (its crop is cut to the mask's box)."""
        box = mask_box(mask)
        left, top, right, bottom = box
        return cls(crop=np.array(mask[top:bottom, left:right], dtype=bool), box=box, best_pixel=best_pixel,
                   score=score, **kwargs)

    @property
    def pixels(self) -> int:
        """Number of pixels in the mask (cells count ``scale²`` pixels, clipped at the box's edge)."""
        if self.scale == 1:
            return int(self.crop.sum())
        rows, cols = _cell_sizes(self.box, self.scale)
        return int(rows @ self.crop.astype(np.int64) @ cols)

    def full_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The mask on a whole (H, W) grid; for small tiles and tests only (it allocates H×W)."""
        out = np.zeros(shape, dtype=bool)
        left, top, right, bottom = self.box
        out[top:bottom, left:right] = paste(self, self.box)
        return out

    def centroid(self) -> tuple[float, float]:
        """(col, row) of the mask's centroid in tile pixel coordinates (cells weighted by their pixels)."""
        left, top, right, bottom = self.box
        rows, cols = np.nonzero(self.crop)
        if rows.size == 0:
            return ((left + right) / 2.0, (top + bottom) / 2.0)
        heights, widths = _cell_sizes(self.box, self.scale)
        h, w = heights[rows].astype(np.float64), widths[cols].astype(np.float64)
        weight = h * w
        row_c = top + rows * self.scale + h / 2.0
        col_c = left + cols * self.scale + w / 2.0
        return (float(col_c @ weight / weight.sum()), float(row_c @ weight / weight.sum()))


def _cell_sizes(box: Box, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels per cell row and per cell column of a crop over ``box`` (the last ones may be cut)."""
    left, top, right, bottom = box
    rows = np.minimum(scale, (bottom - top) - np.arange(0, bottom - top, scale))
    cols = np.minimum(scale, (right - left) - np.arange(0, right - left, scale))
    return rows.astype(np.int64), cols.astype(np.int64)


def mask_box(mask: np.ndarray) -> Box:
    """(left, top, right, bottom) with exclusive ends of a non-empty boolean mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0, 0, 0)
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def box_mask(shape: tuple[int, int], box: Box) -> np.ndarray:
    """A bool (H, W) mask that is True inside ``box`` (left, top, right, bottom), exclusive ends."""
    region = np.zeros(shape, dtype=bool)
    left, top, right, bottom = box
    region[top:bottom, left:right] = True
    return region


def paste(inst: Instance, box: Box, scale: int = 1) -> np.ndarray:
    """``inst``'s mask on the grid of ``box`` at ``scale`` pixels per cell (cells counted from ``box``'s
    top-left corner); the parts outside ``box`` are dropped. Coarser cells are set when any pixel is."""
    if inst.scale < scale:  # paste at the instance's resolution, then coarsen on box's grid
        if scale % inst.scale:
            raise ValueError(f"cannot put a crop of {inst.scale}-pixel cells on a {scale}-pixel grid")
        return _coarsen(paste(inst, box, inst.scale), scale // inst.scale)
    left, top, right, bottom = box
    shape = (math.ceil((bottom - top) / scale), math.ceil((right - left) / scale))
    out = np.zeros(shape, dtype=bool)
    crop = inst.crop if inst.scale == scale else _refine(inst.crop, inst.box, inst.scale, scale)
    il, it = inst.box[0], inst.box[1]
    r0, c0 = (it - top) // scale, (il - left) // scale  # the crop's offset in the output grid
    rs0, cs0 = max(0, -r0), max(0, -c0)
    rd0, cd0 = max(0, r0), max(0, c0)
    h = min(crop.shape[0] - rs0, shape[0] - rd0)
    w = min(crop.shape[1] - cs0, shape[1] - cd0)
    if h > 0 and w > 0:
        out[rd0:rd0 + h, cd0:cd0 + w] = crop[rs0:rs0 + h, cs0:cs0 + w]
    return out


def _coarsen(grid: np.ndarray, k: int) -> np.ndarray:
    """A bool grid on cells k times larger ('any' of each k×k block)."""
    if k == 1:
        return grid
    h, w = math.ceil(grid.shape[0] / k), math.ceil(grid.shape[1] / k)
    padded = np.zeros((h * k, w * k), dtype=bool)
    padded[:grid.shape[0], :grid.shape[1]] = grid
    return padded.reshape(h, k, w, k).any(axis=(1, 3))


def _refine(crop: np.ndarray, box: Box, src: int, dst: int) -> np.ndarray:
    """A crop of ``src``-pixel cells on ``dst``-pixel cells (dst < src, same origin), by repetition."""
    if src % dst:
        raise ValueError(f"cannot put a crop of {src}-pixel cells on a {dst}-pixel grid")
    k = src // dst
    left, top, right, bottom = box
    fine = np.repeat(np.repeat(crop, k, axis=0), k, axis=1)
    return fine[:math.ceil((bottom - top) / dst), :math.ceil((right - left) / dst)]


def area_m2(row_areas: np.ndarray, box: Box, crop: np.ndarray, scale: int = 1) -> float:
    """Ground area of a crop: ``row_areas`` holds the area in m² of one pixel of each row of the box
    (shape (h,)); a cell weighs the areas of the pixels it covers."""
    rows, cols = _cell_sizes(box, scale)
    if scale == 1:
        per_row = np.count_nonzero(crop, axis=1).astype(np.float64)
        return float(per_row @ np.asarray(row_areas, dtype=np.float64))
    h = len(rows)
    padded = np.zeros(h * scale, dtype=np.float64)
    padded[:len(row_areas)] = row_areas
    cell_rows = padded.reshape(h, scale).sum(axis=1)  # m² of one pixel column through each cell row
    return float(cell_rows @ crop.astype(np.float64) @ cols.astype(np.float64))
