"""Writing GeoTIFFs on a raster's grid, atomically: a temporary file beside the target, then one rename.

Used for segmentation masks (single band, the input's grid, CRS and nodata; written block by block, so
rasters of any size) and classification maps (the winning label per chip). A failure or Ctrl-C leaves
the target as it was, never half written.

A mask holds 1 where the query was found and 0 elsewhere; invalid pixels (nodata, NaN, alpha 0) hold
the input's nodata value in the input's type when that value is not 0 or 1 (a uint8 mask when it fits),
else ``MASK_NODATA`` (uint8) when the input can have invalid pixels at all (:func:`mask_encoding`).
"""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from graft_vqa.core.files import atomic_output, check_output_path

GEOTIFF_SUFFIXES = (".tif", ".tiff")
TILED_FROM = 512  # rasters with a side this long or longer are written tiled (512 px blocks)
MASK_BLOCK = 2048  # side of the windows a mask is computed and written in
MASK_NODATA = 255  # a mask's nodata when the input's own cannot be kept (none, 0 or 1)
Window4 = tuple[int, int, int, int]  # (row_off, col_off, height, width)


def check_geotiff_path(path: str | os.PathLike, what: str = "output") -> Path:
    """``path`` once it can take a GeoTIFF (:func:`graft_vqa.core.files.check_output_path`).

    Raises:
        OutputPathError: a one-line message naming ``what`` and the fix.
    """
    return check_output_path(path, GEOTIFF_SUFFIXES, what)


def mask_encoding(tile: Any) -> tuple[np.dtype, float | None]:
    """The mask GeoTIFF's pixel type and nodata for ``tile`` (see the module's documentation)."""
    nodata = tile.nodata
    if nodata is not None and (np.isnan(nodata) or nodata not in (0, 1)):
        fits = not np.isnan(nodata) and float(nodata).is_integer() and 0 <= nodata <= 255
        return (np.dtype(np.uint8) if fits else np.dtype(tile.dtype)), nodata
    can_be_invalid = (nodata is not None or tile.band_info.alpha_index is not None
                      or np.issubdtype(tile.dtype, np.floating))
    return np.dtype(np.uint8), (MASK_NODATA if can_be_invalid else None)


def _profile(height: int, width: int, count: int, dtype: np.dtype, crs: Any, transform: Affine,
             nodata: float | None) -> dict[str, Any]:
    profile: dict[str, Any] = {"driver": "GTiff", "height": height, "width": width, "count": count,
                               "dtype": np.dtype(dtype).name, "compress": "deflate", "transform": transform}
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    if max(height, width) >= TILED_FROM:
        profile.update(tiled=True, blockxsize=512, blockysize=512)
    return profile


@contextmanager
def _atomic(target: Path) -> Iterator[Path]:
    """A temporary path for the GeoTIFF (:func:`graft_vqa.core.files.atomic_output`), without rasterio's
    warning for rasters that have no CRS on purpose."""
    with atomic_output(target) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield tmp


def write_mask(path: str | os.PathLike, tile: Any, mask_window: Callable[[Window4], np.ndarray], *,
               tags: Mapping[str, str] | None = None, description: str = "mask") -> Path:
    """Write a one-band mask on ``tile``'s grid, CRS and nodata (:func:`mask_encoding`), block by block:
    ``mask_window((row_off, col_off, height, width))`` gives the bool mask of each block. Atomic."""
    target = check_geotiff_path(path)
    dtype, nodata = mask_encoding(tile)
    whole = tile.height * tile.width <= tile.max_pixels
    profile = _profile(tile.height, tile.width, 1, dtype, tile.crs, tile.transform, nodata)
    with _atomic(target) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for row in range(0, tile.height, MASK_BLOCK):
            for col in range(0, tile.width, MASK_BLOCK):
                window = (row, col, min(MASK_BLOCK, tile.height - row), min(MASK_BLOCK, tile.width - col))
                data = np.asarray(mask_window(window), dtype=bool).astype(dtype)
                if nodata is not None:
                    data[~_valid(tile, window, whole)] = nodata
                dst.write(data, 1, window=Window(col, row, window[3], window[2]))
        if tags:
            dst.update_tags(**{str(k): str(v) for k, v in tags.items()})
        dst.set_band_description(1, description)
    return target


def _valid(tile: Any, window: Window4, whole: bool) -> np.ndarray:
    row, col, height, width = window
    if whole:
        return np.asarray(tile.valid_mask(), dtype=bool)[row:row + height, col:col + width]
    return np.asarray(tile.read(Window(col, row, width, height)).valid_mask(), dtype=bool)


def write_geotiff(path: str | os.PathLike, bands: np.ndarray, *, crs: Any, transform: Affine,
                  nodata: float | None = None, tags: Mapping[str, str] | None = None,
                  colormap: Mapping[int, Sequence[int]] | None = None,
                  descriptions: Sequence[str] | None = None) -> Path:
    """Write ``bands`` (``H x W`` or ``C x H x W``) as a deflate-compressed GeoTIFF, atomically.

    ``crs`` None writes a raster without georeferencing (``transform`` then maps pixels to pixels).
    """
    target = check_geotiff_path(path)
    data = np.asarray(bands)
    data = data[None] if data.ndim == 2 else data
    count, height, width = data.shape
    profile = _profile(height, width, count, data.dtype, crs, transform, nodata)
    with _atomic(target) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
        if tags:
            dst.update_tags(**{str(k): str(v) for k, v in tags.items()})
        if colormap:
            dst.write_colormap(1, {int(k): tuple(v) for k, v in colormap.items()})
        for i, text in enumerate(descriptions or (), start=1):
            dst.set_band_description(i, text)
    return target
