"""``find``'s instances: a mask on the full tile grid with its box, best pixel and score."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Box", "Instance", "box_mask", "mask_box"]

Box = tuple[int, int, int, int]  # (left, top, right, bottom) pixel columns/rows, exclusive ends


@dataclass
class Instance:
    """One connected component (or its SAM-refined mask) on the full tile grid."""

    mask: np.ndarray  # bool (H, W) on the whole tile
    box: Box  # (left, top, right, bottom) of ``mask``, exclusive ends
    best_pixel: tuple[int, int]  # (row, col) of the highest score inside the component
    score: float  # the score at ``best_pixel``
    refined: bool = False  # True when SAM replaced the component's mask
    sam_iou: float | None = None  # SAM's predicted IoU of the chosen mask, when refined

    @property
    def pixels(self) -> int:
        """Number of pixels in the mask."""
        return int(self.mask.sum())


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
