"""Where a tile's pixels come from: a raster file read through rasterio, or an in-memory array.

Both sources read a window (or everything) as an H×W×C array; the file source never reads more
than the window asked for, so huge rasters can be processed block by block.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from graft_vqa.core.errors import TileNotFoundError, UnreadableTileError, UnsupportedTileError
from graft_vqa.core.tiles.bands import BandInfo

GDAL_CACHE_BYTES = 256 * 2**20  # GDAL block cache cap while reading, keeps windowed reads small


@dataclass(frozen=True)
class RasterMeta:
    """Header of a raster, read without touching its pixels."""

    height: int  # rows
    width: int  # columns
    count: int  # bands
    dtype: np.dtype  # pixel type
    crs: CRS | None  # None when not georeferenced
    transform: Affine  # pixel -> map; identity when not georeferenced
    nodata: float | None  # nodata value shared by the bands, if any
    bands: BandInfo  # band names


@contextmanager
def _gdal_env() -> Iterator[None]:
    """Quiet GDAL settings with a bounded block cache."""
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES, CPL_LOG_ERRORS="OFF"):
        yield


class FileSource:
    """A raster file read with rasterio; each read opens the file for just that window."""

    def __init__(self, path: Path):
        self.path = path

    @contextmanager
    def open(self) -> Iterator[Any]:
        """Open the dataset, mapping rasterio failures to ``UnreadableTileError``."""
        with _gdal_env(), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            try:
                ds = rasterio.open(self.path)
            except (RasterioError, OSError) as exc:
                raise UnreadableTileError(
                    f"{self.path} is not a readable raster ({exc}); check that it is a complete "
                    f"GeoTIFF, PNG or JPEG file") from None
            with ds:
                yield ds

    def meta(self, check: Callable[[RasterMeta], None] | None = None) -> RasterMeta:
        """Read the header, run ``check`` on it, then read the last block so that truncated files
        fail at load time, not later; the file is opened once for all three."""
        with self.open() as ds:
            info = BandInfo(tuple(ds.descriptions), tuple(c.name for c in ds.colorinterp))
            meta = RasterMeta(ds.height, ds.width, ds.count, np.dtype(ds.dtypes[0]),
                              ds.crs, ds.transform, ds.nodata, info)
            if check is not None:
                check(meta)
            self._check_sources(ds)
            self._probe(ds)
            return meta

    def _check_sources(self, ds: Any) -> None:
        """A mosaic (VRT) whose source files are missing fails now, naming them, not half-way through a scene."""
        if ds.driver != "VRT":
            return
        missing = [f for f in ds.files[1:] if not f.startswith("/vsi") and not Path(f).exists()]
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise UnreadableTileError(
                f"the mosaic {self.path} refers to {len(missing)} missing source file(s): {shown}; "
                f"put them back or fix the paths in the .vrt")

    def _probe(self, ds: Any) -> None:
        if ds.height == 0 or ds.width == 0:
            return
        bh, bw = ds.block_shapes[0]
        win = Window(max(0, ds.width - bw), max(0, ds.height - bh), min(bw, ds.width),
                     min(bh, ds.height))
        self._read(ds, win)

    def _read(self, ds: Any, window: Window | None, out_shape: tuple[int, int] | None = None) -> np.ndarray:
        try:
            arr = ds.read(window=window, out_shape=None if out_shape is None else (ds.count, *out_shape))
        except (RasterioError, OSError) as exc:
            raise UnreadableTileError(
                f"{self.path} could not be read ({exc.__cause__ or exc}); the file is probably "
                f"truncated or "
                f"corrupt: re-export or re-download it") from None
        return np.moveaxis(arr, 0, -1)

    def read(self, window: Window | None = None, out_shape: tuple[int, int] | None = None) -> np.ndarray:
        """H×W×C pixels of the window (the whole raster when None), resampled to ``out_shape`` (h, w) if given."""
        with self.open() as ds:
            return self._read(ds, window, out_shape)

    def read_many(self, windows: Iterator[Window]) -> Iterator[tuple[Window, np.ndarray]]:
        """Read several windows with the file opened once."""
        with self.open() as ds:
            for win in windows:
                yield win, self._read(ds, win)

    def sample(self, max_side: int) -> np.ndarray:
        """A decimated read of the whole raster, at most ``max_side`` pixels on a side."""
        with self.open() as ds:
            f = max(1, int(np.ceil(max(ds.height, ds.width) / max_side)))
            shape = (ds.count, max(1, ds.height // f), max(1, ds.width // f))
            try:
                arr = ds.read(out_shape=shape)
            except (RasterioError, OSError) as exc:
                raise UnreadableTileError(f"{self.path} could not be read ({exc})") from None
            return np.moveaxis(arr, 0, -1)

    def key(self, extra: str) -> str:
        """Stable cache id: resolved path, modification time, size and band choice."""
        st = self.path.stat()
        raw = f"file:{self.path.resolve()}:{st.st_mtime_ns}:{st.st_size}:{extra}"
        return hashlib.sha1(raw.encode()).hexdigest()


class ArraySource:
    """Pixels already in memory (numpy or PIL input, or a window cut from another tile)."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def read(self, window: Window | None = None, out_shape: tuple[int, int] | None = None) -> np.ndarray:
        """H×W×C pixels of the window (the whole array when None), every k-th pixel to about ``out_shape``."""
        arr = self.array
        if window is not None:
            (r0, r1), (c0, c1) = window.toranges()
            arr = arr[r0:r1, c0:c1]
        if out_shape is not None:
            fr, fc = max(1, arr.shape[0] // out_shape[0]), max(1, arr.shape[1] // out_shape[1])
            arr = arr[::fr, ::fc][:out_shape[0], :out_shape[1]]
        return arr

    def read_many(self, windows: Iterator[Window]) -> Iterator[tuple[Window, np.ndarray]]:
        """Read several windows."""
        for win in windows:
            yield win, self.read(win)

    def sample(self, max_side: int) -> np.ndarray:
        """A decimated view of the array, at most about ``max_side`` pixels on a side."""
        f = max(1, int(np.ceil(max(self.array.shape[:2]) / max_side)))
        return self.array[::f, ::f]

    def key(self, extra: str) -> str:
        """Hash of the array's bytes, shape and dtype (and the band choice)."""
        h = hashlib.sha1(f"{self.array.shape}:{self.array.dtype}:{extra}".encode())
        h.update(np.ascontiguousarray(self.array).tobytes())
        return h.hexdigest()


def array_from_input(image: Any) -> tuple[np.ndarray, BandInfo]:
    """H×W×C array and band names from a numpy array or a PIL image."""
    ci: tuple[str, ...] | None = None
    if hasattr(image, "mode") and hasattr(image, "getbands"):  # PIL image
        mode = image.mode
        if mode in ("P", "PA", "1", "CMYK", "YCbCr", "HSV", "LAB"):
            image = image.convert("RGBA" if mode == "PA" or "transparency" in image.info else
                                  "L" if mode == "1" else "RGB")
            mode = image.mode
        names = {"R": "red", "G": "green", "B": "blue", "A": "alpha", "L": "gray"}
        ci = tuple(names.get(b, "undefined") for b in image.getbands())
        image = np.asarray(image)
    if not isinstance(image, np.ndarray):
        raise UnsupportedTileError(
            f"cannot read a tile from {type(image).__name__}: pass a file path, a numpy H×W×C "
            f"array, a PIL image or a Tile")
    arr = np.array(image[:, :, None] if image.ndim == 2 else image, copy=True)  # own the pixels
    if arr.ndim != 3:
        raise UnsupportedTileError(f"expected an H×W or H×W×C array, got shape {image.shape}")
    if arr.shape[0] <= 16 < arr.shape[2] and arr.shape[1] > 16:
        raise UnsupportedTileError(
            f"array of shape {arr.shape} looks channels-first; pass H×W×C, e.g. "
            f"arr.transpose(1, 2, 0)")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)) \
            or arr.dtype == np.bool_:
        raise UnsupportedTileError(f"pixel type {arr.dtype} is not supported: use integers or floats")
    if ci is None or len(ci) != arr.shape[2]:
        ci = ("gray",) if arr.shape[2] == 1 else ("undefined",) * arr.shape[2]
    return arr, BandInfo((None,) * arr.shape[2], ci)


def check_path(path: str | os.PathLike) -> Path:
    """The path as ``Path``, or ``TileNotFoundError`` / ``UnreadableTileError`` with advice."""
    p = Path(path).expanduser()
    if not p.exists():
        raise TileNotFoundError(f"no tile at {p}: check the path (cwd is {Path.cwd()})")
    if p.is_dir():
        raise UnreadableTileError(f"{p} is a folder: pass the path of one image file")
    if p.stat().st_size == 0:
        raise UnreadableTileError(f"{p} is an empty file: re-export or re-download it")
    return p
