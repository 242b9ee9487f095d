"""``load_tile``: one entry point for paths, numpy arrays, PIL images and existing tiles."""
from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np
from affine import Affine

from graft_vqa.core.errors import UnsupportedTileError
from graft_vqa.core.tiles.bands import select_bands
from graft_vqa.core.tiles.tile import Tile
from graft_vqa.core.tiles.geo import build_geo
from graft_vqa.core.tiles.sources import ArraySource, FileSource, RasterMeta, array_from_input, check_path

log = logging.getLogger(__name__)

MIN_SIDE = 16  # smallest height/width accepted: one 16-pixel ViT patch
DEFAULT_MAX_PIXELS = 64_000_000  # whole-tile reads above this many pixels must use windows()


def _check_meta(meta: RasterMeta, what: str) -> None:
    if meta.height < MIN_SIDE or meta.width < MIN_SIDE:
        raise UnsupportedTileError(
            f"{what} is {meta.width}x{meta.height} pixels; graft-vqa needs at least "
            f"{MIN_SIDE}x{MIN_SIDE} (one model patch): use a larger image")
    if meta.count < 1:
        raise UnsupportedTileError(f"{what} has no bands")
    if not (np.issubdtype(meta.dtype, np.integer) or np.issubdtype(meta.dtype, np.floating)):
        raise UnsupportedTileError(f"{what} has pixel type {meta.dtype}; use integer or float data")
    if meta.count == 2 and meta.bands.alpha_index is None:
        log.info("%s has 2 bands: the RGB view is the first band as gray", what)


def load_tile(image: Any, *, gsd_m: float | None = None,
              bands: Sequence[int | str] | None = None,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> Tile:
    """Read a tile from a path (GeoTIFF, COG, PNG, JPEG), an H×W(×C) array, a PIL image or a Tile.

    Args:
        image: what to read; a ``Tile`` is returned as is unless ``gsd_m``/``bands`` change it.
        gsd_m: ground sample distance in metres; required for areas of non-georeferenced images
            (RSVQA-LR: 10.0, RSVQA-HR: 0.1524) and overrides the georeferencing when given.
        bands: 1 or 3 bands for the RGB view, as 0-based indexes or names ("red", "nir", band
            descriptions); default red/green/blue by colour interpretation, else the first three.
        max_pixels: largest height*width that ``pixels()``/``rgb()`` read whole.

    Raises:
        TileNotFoundError: the path does not exist.
        UnreadableTileError: not a raster, truncated or corrupt.
        UnsupportedTileError: smaller than 16x16, unsupported pixel type or bad band choice.
    """
    if isinstance(image, Tile):
        if gsd_m is None and bands is None:
            return image
        return image.with_options(gsd_m=gsd_m, bands=bands)
    if isinstance(image, (str, os.PathLike)):
        source: FileSource | ArraySource = FileSource(check_path(image))
        what = str(source.path)
        meta = source.meta(check=lambda m: _check_meta(m, what))
        if meta.crs is None and not meta.transform.almost_equals(Affine.identity()):
            log.warning("%s has a transform but no CRS: treated as not georeferenced", what)
    else:
        arr, info = array_from_input(image)
        source = ArraySource(arr)
        meta = RasterMeta(arr.shape[0], arr.shape[1], arr.shape[2], arr.dtype, None,
                          Affine.identity(), None, info)
        what = f"the {type(image).__name__} image"
        _check_meta(meta, what)
    geo = build_geo(meta.crs, meta.transform, meta.height, meta.width, gsd_m)
    return Tile(source, meta, geo, select_bands(meta.bands, bands), max_pixels=max_pixels)
