"""The window plan of a scene: overlapping windows whose *cores* tile the scene on a cell grid.

A scene of H×W pixels is scored on a grid of ``cell``-pixel cells (GRAFT's 16-pixel patches, or
coarser so that the grid stays below ``max_cells``). Windows of ``window`` pixels start every
``window - overlap`` pixels; each keeps only its core (half the overlap is given to each
neighbour), so the cores partition the grid exactly and every cell is scored by the window in which
it lies farthest from an edge. Only windows that meet the area of interest are planned.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Callable

from shapely.geometry import box as shapely_box
from shapely.geometry.base import BaseGeometry


Progress = Callable[[int, int, str], None]  # (windows done, windows in all, what) -> None


@dataclass(frozen=True)
class PlannedWindow:
    """One window: the pixels read, and the cells it writes (its core)."""

    index: int  # position in the plan's full list of windows (stable: used to mark windows done)
    row_off: int  # first pixel row read
    col_off: int  # first pixel column read
    height: int  # pixel rows read
    width: int  # pixel columns read
    core: tuple[int, int, int, int]  # (row0, row1, col0, col1) of the cells it writes, ends exclusive

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the pixels read."""
        return (self.col_off, self.row_off, self.col_off + self.width, self.row_off + self.height)


def _starts(length: int, window: int, stride: int) -> list[int]:
    if length <= window:
        return [0]
    return list(range(0, length - window + stride, stride))


def _cores(starts: list[int], length: int, stride: int, overlap: int) -> list[tuple[int, int]]:
    """Pixel ranges of the cores: half the overlap to each side, the first and last reach the edges."""
    cores = []
    for i, s in enumerate(starts):
        lo = 0 if i == 0 else s + overlap // 2
        hi = length if i == len(starts) - 1 else starts[i + 1] + overlap // 2
        cores.append((lo, hi))
    return cores


@dataclass(frozen=True)
class WindowPlan:
    """Windows and cells of one H×W scene."""

    height: int  # scene rows
    width: int  # scene columns
    cell: int  # pixels per cell side
    window: int  # window side in pixels (a multiple of cell)
    overlap: int  # overlap in pixels (a multiple of 2 * cell)

    @classmethod
    def build(cls, height: int, width: int, *, window: int = 1024, overlap: int = 64, cell: int = 16,
              max_cells: int = 16_000_000) -> WindowPlan:
        """A plan whose cell doubles until the grid has at most ``max_cells`` cells; window and overlap
        are rounded up to fit the cell."""
        while math.ceil(height / cell) * math.ceil(width / cell) > max_cells:
            cell *= 2
        window = max(cell, math.ceil(window / cell) * cell)
        overlap = math.ceil(overlap / (2 * cell)) * 2 * cell
        if overlap >= window:
            overlap = max(0, window - 2 * cell)
        return cls(height, width, cell, window, overlap)

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of cells."""
        return (math.ceil(self.height / self.cell), math.ceil(self.width / self.cell))

    @property
    def key(self) -> str:
        """Identifies the plan (for caches of features computed with it)."""
        raw = f"{self.height}x{self.width}/cell{self.cell}/win{self.window}/ovl{self.overlap}"
        return hashlib.sha1(raw.encode()).hexdigest()[:16]

    def windows(self, region_px: BaseGeometry | None = None) -> list[PlannedWindow]:
        """Every window, row-major; with ``region_px`` (a pixel-coordinate geometry), only those whose
        core meets it (the others are never read)."""
        stride = self.window - self.overlap
        rows, cols = _starts(self.height, self.window, stride), _starts(self.width, self.window, stride)
        row_cores, col_cores = _cores(rows, self.height, stride, self.overlap), _cores(cols, self.width, stride,
                                                                                       self.overlap)
        out = []
        for i, (r, (r0, r1)) in enumerate(zip(rows, row_cores)):
            for j, (c, (c0, c1)) in enumerate(zip(cols, col_cores)):
                core = (r0 // self.cell, math.ceil(r1 / self.cell), c0 // self.cell, math.ceil(c1 / self.cell))
                win = PlannedWindow(i * len(cols) + j, r, c, min(self.window, self.height - r),
                                    min(self.window, self.width - c), core)
                if region_px is None or region_px.intersects(shapely_box(c0, r0, c1, r1)):
                    out.append(win)
        return out

    def count(self) -> int:
        """Number of windows of the whole scene."""
        stride = self.window - self.overlap
        return len(_starts(self.height, self.window, stride)) * len(_starts(self.width, self.window, stride))
