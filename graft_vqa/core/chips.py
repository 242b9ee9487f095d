"""Chips: the windows a raster is cut into for image-level models, and their footprints in EPSG:4326.

A raster whose sides are both at most ``whole_max`` pixels is one chip (the whole file); a larger one,
or any raster when an explicit ``chip`` size is given, is cut into a row-major grid of ``chip`` x
``chip`` windows starting every ``chip - overlap`` pixels, the last ones cut to the raster's edge
(:meth:`graft_vqa.core.tiles.Tile.windows`' grid). Windows are ``(row_off, col_off, height, width)``
in the raster's pixels, as ``Tile.window`` is.

A footprint is the window's outline taken to longitude/latitude (EPSG:4326), densified so that edges
bend as the projection bends them, then simplified within ``FOOTPRINT_TOLERANCE_DEG`` (a few vertices
per edge instead of hundreds); rasters without georeferencing have none.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import shapely
from shapely.geometry import box as shapely_box
from shapely.geometry.base import BaseGeometry

from graft_vqa.core.aoi import reproject

WGS84 = "EPSG:4326"
FOOTPRINT_TOLERANCE_DEG = 1e-8  # footprint vertices within this of the densified outline (about 1 mm) are dropped
Window = tuple[int, int, int, int]  # (row_off, col_off, height, width) in the raster's pixels


def chip_windows(height: int, width: int, *, chip: int | None, default_chip: int, whole_max: int,
                 overlap: int = 0) -> list[Window]:
    """The chips of a ``height`` x ``width`` raster (see the module's rules)."""
    if chip is None and height <= whole_max and width <= whole_max:
        return [(0, 0, height, width)]
    size = chip or default_chip
    step = size - overlap
    rows = range(0, max(1, height - overlap), step)
    cols = range(0, max(1, width - overlap), step)
    return [(r, c, min(size, height - r), min(size, width - c)) for r in rows for c in cols]


def footprint(tile: Any, window: Window) -> BaseGeometry | None:
    """The window's outline in EPSG:4326 (a shapely Polygon), or None when ``tile`` is not georeferenced."""
    if not getattr(tile, "georeferenced", False) or tile.crs is None:
        return None
    row, col, height, width = window
    outline = shapely.transform(shapely_box(col, row, col + width, row + height),
                                lambda xy: _apply(tile.transform, xy))
    return shapely.simplify(reproject(outline, tile.crs, WGS84), FOOTPRINT_TOLERANCE_DEG)


def _apply(transform: Any, xy: np.ndarray) -> np.ndarray:
    xs, ys = transform @ (xy[:, 0], xy[:, 1])
    return np.column_stack([xs, ys])
