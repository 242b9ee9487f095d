"""Writing GeoTIFFs on a raster's grid, atomically: a temporary file beside the target, then one rename.

Used for segmentation masks (single band, the input's grid, CRS and nodata) and classification maps
(the winning label per chip). A failure or Ctrl-C leaves the target as it was, never half written.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

from graft_vqa.core.errors import OutputPathError

GEOTIFF_SUFFIXES = (".tif", ".tiff")
TILED_FROM = 512  # rasters with a side this long or longer are written tiled (512 px blocks)


def check_geotiff_path(path: str | os.PathLike, what: str = "output") -> Path:
    """``path`` as a Path once it can take a GeoTIFF: a ``.tif``/``.tiff`` name in an existing folder.

    Raises:
        OutputPathError: a one-line message naming ``what`` and the fix.
    """
    target = Path(path).expanduser()
    if target.suffix.lower() not in GEOTIFF_SUFFIXES:
        raise OutputPathError(f"{what} {target}: a GeoTIFF needs a .tif or .tiff name")
    if target.is_dir():
        raise OutputPathError(f"{what} {target} is a folder; give a file name inside it")
    if not target.parent.is_dir():
        raise OutputPathError(f"{what} {target}: the folder {target.parent} does not exist; create it first")
    if not os.access(target.parent, os.W_OK):
        raise OutputPathError(f"{what} {target}: cannot write in {target.parent}; choose another folder")
    return target


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
    profile: dict[str, Any] = {"driver": "GTiff", "height": height, "width": width, "count": count,
                               "dtype": data.dtype.name, "compress": "deflate", "transform": transform}
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    if max(height, width) >= TILED_FROM:
        profile.update(tiled=True, blockxsize=512, blockysize=512)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp.tif")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write(data)
                if tags:
                    dst.update_tags(**{str(k): str(v) for k, v in tags.items()})
                if colormap:
                    dst.write_colormap(1, {int(k): tuple(v) for k, v in colormap.items()})
                for i, text in enumerate(descriptions or (), start=1):
                    dst.set_band_description(i, text)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
