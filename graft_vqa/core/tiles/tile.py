"""The ``Tile``: one raster with its RGB view, georeferencing, areas and windowed reads."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Iterator, Sequence

import numpy as np
from affine import Affine
from rasterio.windows import Window

from graft_vqa.core.errors import UnsupportedTileError
from graft_vqa.core.tiles.bands import Stretch, fit_stretch, select_bands, to_rgb, valid_mask
from graft_vqa.core.tiles.geo import GeoInfo, build_geo, pixel_area_column
from graft_vqa.core.tiles.sources import ArraySource, FileSource, RasterMeta

STRETCH_SAMPLE_SIDE = 1024  # side of the decimated read that fixes the percentile stretch


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class Tile:
    """A raster tile. Build it with :func:`graft_vqa.core.tiles.load_tile`.

    Arrays returned by ``pixels()``, ``rgb()``, ``valid_mask()`` and ``pixel_area_map()`` are
    cached and read-only: copy them before modifying. Whole-tile reads refuse rasters larger than
    ``max_pixels``; use ``windows()`` or ``crop_window()`` for those.
    """

    def __init__(self, source: FileSource | ArraySource, meta: RasterMeta, geo: GeoInfo,
                 band_idx: tuple[int, ...], *, max_pixels: int, stretch: Stretch | None = None,
                 key: str | None = None, window: tuple[int, int, int, int] | None = None):
        self._source, self._meta, self._geo = source, meta, geo
        # (row_off, col_off, height, width) of this tile in the scene it was cut from; None for a whole raster
        self.window = window
        self.bands: tuple[int, ...] = band_idx  # 0-based bands of the RGB view (1 = gray)
        self.max_pixels = max_pixels  # largest H*W that whole-tile reads accept
        self._stretch = stretch
        self._key = key
        self._cache: dict[str, np.ndarray] = {}

    # --- header ----------------------------------------------------------------------------
    path = property(lambda self: str(self._source.path) if isinstance(self._source, FileSource)
                    else None, doc="File path, or None for in-memory tiles.")
    height = property(lambda self: self._meta.height, doc="Rows.")
    width = property(lambda self: self._meta.width, doc="Columns.")
    count = property(lambda self: self._meta.count, doc="Number of bands.")
    dtype = property(lambda self: self._meta.dtype, doc="Pixel type of the raw bands.")
    nodata = property(lambda self: self._meta.nodata, doc="Nodata value, or None.")
    band_info = property(lambda self: self._meta.bands, doc="Band descriptions and colours.")
    crs = property(lambda self: self._geo.crs if self._geo.georeferenced else None,
                   doc="rasterio CRS, or None when not georeferenced.")
    transform = property(lambda self: self._geo.transform, doc="affine pixel -> map transform.")
    georeferenced = property(lambda self: self._geo.georeferenced, doc="Has a CRS and transform.")
    is_geographic = property(lambda self: self._geo.is_geographic, doc="CRS in degrees.")
    gsd_m = property(lambda self: self._geo.gsd_m, doc="Ground sample distance in metres.")
    has_area = property(lambda self: self._geo.has_area, doc="Areas in m² are available.")
    explicit_gsd = property(lambda self: self._geo.explicit_gsd,
                            doc="gsd_m was given by the caller and wins over the CRS for areas and distances.")

    @property
    def pixel_area_m2(self) -> float | None:
        """Mean area of one pixel in m² over the tile (None without georeferencing/gsd_m)."""
        if not self.has_area:
            return None
        return float(self.pixel_area_map().mean())

    @property
    def key(self) -> str:
        """Stable id for caches: file path+mtime+size or array hash, plus band choice and an
        explicit ``gsd_m`` (the same file with another ``gsd_m`` has other areas)."""
        if self._key is None:
            gsd = f";gsd_m={self._geo.gsd_m!r}" if self._geo.explicit_gsd else ""
            self._key = self._source.key(f"bands={self.bands}{gsd}")
        return self._key

    def __getstate__(self) -> dict:
        """Pickled without its cached arrays (they are re-read on demand): a file tile sent to another
        process (a Ray worker) is its path, header, georeferencing, band choice and stretch."""
        return {**self.__dict__, "_cache": {}}

    @property
    def megapixels(self) -> float:
        """Size in millions of pixels."""
        return self.height * self.width / 1e6

    def __repr__(self) -> str:
        crs = self.crs.to_string() if self.crs is not None else None
        return (f"Tile({self.path or 'array'}, {self.width}x{self.height}x{self.count} {self.dtype},"
                f" crs={crs}, gsd_m={self.gsd_m})")

    # --- pixels ----------------------------------------------------------------------------
    def _check_whole_read(self, what: str) -> None:
        if self.height * self.width > self.max_pixels:
            raise UnsupportedTileError(
                f"{what}: this tile is {self.width}x{self.height} ({self.megapixels:.0f} "
                f"megapixels), more than the {self.max_pixels / 1e6:.0f}-megapixel limit for "
                f"whole-tile reads; process it with tile.windows(size) or cut a part with "
                f"tile.crop_window(col, row, width, height) (or raise max_pixels in load_tile)")

    def pixels(self) -> np.ndarray:
        """Raw H×W×C pixels (read-only)."""
        if "pixels" not in self._cache:
            self._check_whole_read("pixels()")
            self._cache["pixels"] = _readonly(np.ascontiguousarray(self._source.read()))
        return self._cache["pixels"]

    def valid_mask(self) -> np.ndarray:
        """Boolean H×W: False for nodata, NaN or transparent pixels."""
        if "valid" not in self._cache:
            m = valid_mask(self.pixels(), self.nodata, self.band_info.alpha_index)
            self._cache["valid"] = _readonly(m)
        return self._cache["valid"]

    def stretch(self) -> Stretch:
        """Percentile stretch of the RGB view, fixed once per tile from a decimated read."""
        if self._stretch is None and self.dtype == np.uint8:
            self._stretch = Stretch(None, None)  # uint8 is used as is: no need to read
        if self._stretch is None:
            sample = self._source.sample(STRETCH_SAMPLE_SIDE)
            valid = valid_mask(sample, self.nodata, self.band_info.alpha_index)
            self._stretch = fit_stretch(sample, self.bands, valid)
        return self._stretch

    def rgb(self) -> np.ndarray:
        """H×W×3 uint8 view for models (band choice, stretch, invalid pixels = 0; read-only).

        Raises:
            UnsupportedTileError: every pixel is nodata, or the tile is too large to read whole.
        """
        if "rgb" not in self._cache:
            valid = self.valid_mask()
            if not valid.any():
                raise UnsupportedTileError(
                    f"every pixel of this tile is nodata (nodata={self.nodata}): there is nothing "
                    f"to look at; check the file or pick another tile")
            out = to_rgb(self.pixels(), self.bands, self.stretch(), valid)
            self._cache["rgb"] = _readonly(out)
        return self._cache["rgb"]

    # --- areas and coordinates -------------------------------------------------------------
    def pixel_area_map(self) -> np.ndarray:
        """Area in m² of the pixels of each row, shape (H, 1), broadcastable to H×W.

        Raises:
            AreaUnavailableError: not georeferenced and no ``gsd_m`` given.
        """
        if "area" not in self._cache:
            self._cache["area"] = _readonly(pixel_area_column(self._geo, self.height, self.width))
        return self._cache["area"]

    def area_m2(self, mask: np.ndarray) -> float:
        """Ground area in m² of the True pixels of an H×W mask (exact per row for EPSG:4326).

        Raises:
            AreaUnavailableError: not georeferenced and no ``gsd_m`` given.
            ValueError: the mask is not H×W.
        """
        areas = self.pixel_area_map()  # raises AreaUnavailableError with advice
        mask = np.asarray(mask)
        if mask.shape != (self.height, self.width):
            raise ValueError(f"mask has shape {mask.shape}, expected {(self.height, self.width)}")
        per_row = np.count_nonzero(mask, axis=1).astype(np.float64)
        return float(per_row @ areas[:, 0])

    def pixel_to_map(self, col: float | np.ndarray, row: float | np.ndarray) -> tuple:
        """Map (x, y) of pixel coordinates; (0, 0) is the top-left corner, (c+0.5, r+0.5) a centre.

        Without georeferencing the map coordinates are the pixel coordinates.
        """
        return self.transform @ (col, row)

    def map_to_pixel(self, x: float | np.ndarray, y: float | np.ndarray) -> tuple:
        """Fractional pixel (col, row) of map coordinates (inverse of ``pixel_to_map``)."""
        return ~self.transform @ (x, y)

    # --- windows ---------------------------------------------------------------------------
    def _window_list(self, size: int, overlap: int) -> list[Window]:
        if size <= 0 or overlap < 0 or overlap >= size:
            raise ValueError(f"need size > 0 and 0 <= overlap < size, got size={size}, "
                             f"overlap={overlap}")
        step = size - overlap
        rows = range(0, max(1, self.height - overlap), step)
        cols = range(0, max(1, self.width - overlap), step)
        return [Window(c, r, min(size, self.width - c), min(size, self.height - r))
                for r in rows for c in cols]

    def windows(self, size: int, overlap: int = 0, *,
                rgb: bool = False) -> Iterator[tuple[Window, np.ndarray]]:
        """Read the tile window by window, row-major; never loads more than one window.

        Windows start every ``size - overlap`` pixels; those on the right and bottom edges are
        cut to the raster (so with ``overlap=0`` they partition the tile exactly). Yields
        ``(Window, array)`` with raw H×W×C pixels, or the uint8 RGB view when ``rgb=True`` (using
        the tile-wide stretch; all-nodata windows come out black instead of raising).
        """
        wins = self._window_list(size, overlap)
        stretch = self.stretch() if rgb else None
        for win, arr in self._source.read_many(iter(wins)):
            if rgb:
                valid = valid_mask(arr, self.nodata, self.band_info.alpha_index)
                arr = to_rgb(arr, self.bands, stretch, valid)
            yield win, arr

    def read(self, window: Window) -> "Tile":
        """A small in-memory Tile for a window, keeping CRS, gsd and stretch; its ``transform`` places it
        in the scene's CRS and its ``window`` is ``(row_off, col_off, height, width)`` in the scene's pixels."""
        win = window.round_offsets().round_lengths()
        full = Window(0, 0, self.width, self.height)
        try:
            win = win.intersection(full)
        except Exception:
            raise UnsupportedTileError(f"window {window} lies outside the {self.width}x"
                                       f"{self.height} tile") from None
        if win.width <= 0 or win.height <= 0:
            raise UnsupportedTileError(f"window {window} is empty")
        if win.width * win.height > self.max_pixels:
            raise UnsupportedTileError(f"window {window} is larger than max_pixels="
                                       f"{self.max_pixels}: use a smaller window")
        arr = np.ascontiguousarray(self._source.read(win))
        tr: Affine = self.transform @ Affine.translation(win.col_off, win.row_off)
        meta = replace(self._meta, height=int(win.height), width=int(win.width), transform=tr)
        g = self._geo
        geo = build_geo(g.crs, tr, meta.height, meta.width, g.gsd_m if g.explicit_gsd else None)
        key = hashlib.sha1(f"{self.key}:{win.flatten()}".encode()).hexdigest()
        row0, col0 = (self.window[0], self.window[1]) if self.window else (0, 0)
        scene_window = (row0 + int(win.row_off), col0 + int(win.col_off), meta.height, meta.width)
        return Tile(ArraySource(arr), meta, geo, self.bands, max_pixels=self.max_pixels,
                    stretch=self.stretch(), key=key, window=scene_window)

    def crop_window(self, col_off: int, row_off: int, width: int, height: int) -> "Tile":
        """A small Tile of ``width``×``height`` pixels from (col_off, row_off); see ``read``."""
        return self.read(Window(col_off, row_off, width, height))

    def read_window(self, col_off: int, row_off: int, width: int, height: int, *, max_side: int) -> "Tile":
        """Like ``crop_window``, decimated so that no side exceeds ``max_side`` pixels (any window size:
        a whole scene for an image-level model); the transform and ``gsd_m`` follow the coarser pixels."""
        f = max(1, -(-max(width, height) // max_side))
        if f == 1:
            return self.crop_window(col_off, row_off, width, height)
        win = Window(col_off, row_off, width, height).intersection(Window(0, 0, self.width, self.height))
        out = (max(1, int(win.height) // f), max(1, int(win.width) // f))
        arr = np.ascontiguousarray(self._source.read(win, out_shape=out))
        sx, sy = win.width / out[1], win.height / out[0]
        tr: Affine = self.transform @ Affine.translation(win.col_off, win.row_off) @ Affine.scale(sx, sy)
        meta = replace(self._meta, height=out[0], width=out[1], transform=tr)
        g = self._geo
        geo = build_geo(g.crs, tr, out[0], out[1], g.gsd_m * max(sx, sy) if g.explicit_gsd else None)
        key = hashlib.sha1(f"{self.key}:{win.flatten()}:/{f}".encode()).hexdigest()
        return Tile(ArraySource(arr), meta, geo, self.bands, max_pixels=self.max_pixels, stretch=self.stretch(),
                    key=key)

    def with_options(self, *, gsd_m: float | None = None,
                     bands: Sequence[int | str] | None = None) -> "Tile":
        """The same pixels with another explicit ``gsd_m`` and/or band choice."""
        g = self._geo
        geo = build_geo(g.crs, g.transform, self.height, self.width,
                        gsd_m if gsd_m is not None else (g.gsd_m if g.explicit_gsd else None))
        idx = select_bands(self.band_info, bands) if bands is not None else self.bands
        return Tile(self._source, self._meta, geo, idx, max_pixels=self.max_pixels,
                    stretch=self._stretch if idx == self.bands else None)
