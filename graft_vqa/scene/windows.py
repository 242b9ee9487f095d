"""One window of a scene, scored: the scene plan's unit of work, and the seam that decides where it runs.

:func:`run_window` reads one planned window (``Tile.read``), runs the scorer on it and keeps the
cells of its core: score maps for a job's queries, or patch features for a feature scorer (GRAFT).
It depends only on its arguments, so it gives the same cells wherever it runs. A
:class:`WindowRunner` decides where: :class:`LocalWindowRunner` runs the windows one after another
in this process (the default); ``graft_vqa.distributed.RayWindowRunner`` runs batches of them on
the actors of a Ray cluster, which read the windows themselves from the raster's path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from rasterio.windows import Window

from graft_vqa.scene.plan import PlannedWindow

VALID_FRACTION = 0.5  # a cell holds data when at least this share of its pixels is valid


def block_mean(values: np.ndarray, cell: int) -> np.ndarray:
    """(..., h, w) -> (..., ceil(h / cell), ceil(w / cell)) float32: the mean over each cell's pixels
    (cells cut by the edge average the pixels they have)."""
    h, w = values.shape[-2:]
    gh, gw = math.ceil(h / cell), math.ceil(w / cell)
    lead = values.shape[:-2]
    if h == gh * cell and w == gw * cell:  # the common case: no cut cells
        return values.reshape(*lead, gh, cell, gw, cell).mean(axis=(-3, -1), dtype=np.float32)
    pad = [(0, 0)] * len(lead) + [(0, gh * cell - h), (0, gw * cell - w)]
    sums = np.pad(values.astype(np.float32), pad).reshape(*lead, gh, cell, gw, cell).sum(axis=(-3, -1))
    rows = np.minimum(cell, h - np.arange(gh) * cell).astype(np.float32)
    cols = np.minimum(cell, w - np.arange(gw) * cell).astype(np.float32)
    return sums / np.outer(rows, cols)


def to_cells(maps: np.ndarray, height: int, width: int, cell: int) -> np.ndarray:
    """A scorer's (Q, h', w') maps of an h×w window on its cell grid: block means of full-resolution
    maps, a bilinear resize of coarser ones."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape[1:] == (height, width):
        return block_mean(maps, cell)
    size = (math.ceil(height / cell), math.ceil(width / cell))
    out = F.interpolate(torch.from_numpy(np.ascontiguousarray(maps))[None], size=size, mode="bilinear",
                        align_corners=False)
    return out[0].numpy()


def core_of(win: PlannedWindow, cells: np.ndarray, scale: int) -> np.ndarray:
    """The core part of a window's (..., rows, cols) cell array."""
    r0, r1, c0, c1 = win.core
    top, left = win.row_off // scale, win.col_off // scale
    return cells[..., r0 - top:r1 - top, c0 - left:c1 - left]


@dataclass(frozen=True)
class WindowJob:
    """What to compute in every window of a pass (plain values: sent to workers as is)."""

    scale: int  # pixels per cell of the scene's grid
    names: tuple[str, ...] = ()  # queries to score (none: only the valid cells)
    features: bool = False  # patch features of a FeatureScorer instead of score maps
    patch_size: int = 16  # the feature scorer's patch size in pixels (features only)


@dataclass
class WindowResult:
    """The core cells of one window."""

    index: int  # the window's index in the plan
    core: tuple[int, int, int, int]  # (row0, row1, col0, col1) of its core cells, ends exclusive
    valid: np.ndarray  # (rows, cols) bool: core cells holding data
    maps: np.ndarray | None = None  # (len(names), rows, cols) float32 scores; None without names
    features: np.ndarray | None = None  # (rows, cols, D) float16 features (a features job)

    @property
    def scored(self) -> bool:
        """The model ran on this window."""
        return self.maps is not None or self.features is not None


def run_window(tile: Any, win: PlannedWindow, scorer: Any, job: WindowJob) -> WindowResult:
    """Read ``win`` from ``tile``, score it and keep its core cells (see :class:`WindowJob`)."""
    window_tile = tile.read(Window(win.col_off, win.row_off, win.width, win.height))
    valid = np.asarray(window_tile.valid_mask(), dtype=np.uint8)[None]
    valid_cells = core_of(win, block_mean(valid, job.scale), job.scale)[0] >= VALID_FRACTION
    result = WindowResult(win.index, win.core, valid_cells)
    if job.features:
        grid = np.asarray(scorer.patch_grid(window_tile), dtype=np.float32)  # (gh, gw, D)
        k = job.scale // job.patch_size
        if k > 1:
            grid = np.moveaxis(block_mean(np.moveaxis(grid, -1, 0), k), 0, -1)
        core = core_of(win, np.moveaxis(grid, -1, 0), job.scale)
        result.features = np.ascontiguousarray(np.moveaxis(core, 0, -1)).astype(np.float16)
    elif job.names:
        scored = scorer.score_maps(window_tile, list(job.names))
        result.maps = np.ascontiguousarray(core_of(win, to_cells(scored, win.height, win.width, job.scale),
                                                   job.scale))
    return result


@runtime_checkable
class WindowRunner(Protocol):
    """Runs :func:`run_window` over windows of a scene, wherever it likes."""

    def run(self, tile: Any, windows: list[PlannedWindow], scorer: Any,
            job: WindowJob) -> Iterator[WindowResult]:  # pragma: no cover - protocol
        """One result per window, in any order, each as soon as it is ready."""
        ...


class LocalWindowRunner:
    """Windows one after another in this process, with this process's scorer (the default)."""

    def run(self, tile: Any, windows: list[PlannedWindow], scorer: Any, job: WindowJob) -> Iterator[WindowResult]:
        for win in windows:
            yield run_window(tile, win, scorer, job)
