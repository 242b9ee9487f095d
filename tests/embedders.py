"""A synthetic embedder with known vectors, and small georeferenced rasters painted in known colours.

:class:`ColourEmbedder` embeds a tile as its mean valid colour (red, green, blue, and a constant
fourth component), L2-normalised; the texts "red", "green", "blue", "grey" are the matching axes. So
every score of a search or a classification can be computed by hand from the painted colours.
"""
from __future__ import annotations

import os
import signal
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

TEXTS = {"red": [1, 0, 0, 0], "green": [0, 1, 0, 0], "blue": [0, 0, 1, 0], "grey": [0, 0, 0, 1]}
GREY = 60.0  # the constant fourth component of every image vector


def colour_vector(rgb: Sequence[float]) -> np.ndarray:
    """The embedding ColourEmbedder gives a chip of mean colour ``rgb``."""
    v = np.array([*rgb, GREY], dtype=np.float64)
    return (v / np.linalg.norm(v)).astype(np.float32)


class ColourEmbedder:
    """Image vector = normalised (mean R, mean G, mean B, GREY) over valid pixels; texts from ``TEXTS``.

    ``kill_after``: SIGKILL this process at the start of that call of ``embed_images`` (1-based), to
    test resuming an interrupted indexing. ``calls`` records the number of tiles of each call.
    """

    model_id = "colour-embedder-v1"
    logit_scale = 10.0

    def __init__(self, kill_after: int | None = None, model_id: str | None = None) -> None:
        self.kill_after = kill_after
        self.calls: list[int] = []
        if model_id:
            self.model_id = model_id

    def embed_images(self, tiles: Sequence[Any]) -> np.ndarray:
        self.calls.append(len(tiles))
        if self.kill_after is not None and len(self.calls) >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        out = []
        for tile in tiles:
            rgb = np.asarray(tile.rgb(), dtype=np.float64)
            valid = np.asarray(tile.valid_mask())
            out.append(colour_vector(rgb[valid].mean(axis=0)))
        return np.stack(out)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([np.asarray(TEXTS[t], dtype=np.float32) for t in texts])


def write_raster(path: Path, rgb: np.ndarray, crs: str | None = "EPSG:32618", origin: tuple[float, float] = (500_000.0, 4_500_000.0),
                 pixel: float = 10.0, nodata: float | None = None, tags: dict[str, str] | None = None) -> Path:
    """Write an H x W x 3 uint8 GeoTIFF (north-up, ``pixel`` map units per pixel from ``origin``)."""
    h, w, _ = rgb.shape
    profile = {"driver": "GTiff", "height": h, "width": w, "count": 3, "dtype": "uint8"}
    if crs is not None:
        profile.update(crs=crs, transform=Affine(pixel, 0, origin[0], 0, -pixel, origin[1]))
    if nodata is not None:
        profile["nodata"] = nodata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # crs=None: a plain image on purpose
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.moveaxis(rgb, -1, 0))
            if tags:
                dst.update_tags(**tags)
    return path


def solid(colour: Sequence[int], h: int = 64, w: int = 64) -> np.ndarray:
    """An h x w x 3 uint8 image of one colour."""
    out = np.zeros((h, w, 3), dtype=np.uint8)
    out[...] = np.asarray(colour, dtype=np.uint8)
    return out
