"""Band choice, robust stretch to uint8 and validity masks for the RGB view of a tile.

Rules (documented behaviour, tested):

- ``bands=None``: bands whose colour interpretation is red, green, blue (in that order) when all
  three exist; otherwise the first three bands (4+ bands, e.g. R,G,B,NIR); a 1-band raster is
  replicated to gray RGB; a 2-band raster uses its first band as gray (when the second band is an
  alpha band it masks pixels; otherwise it is ignored).
- ``bands=[i, j, k]`` picks bands by 0-based index (the channel axis of ``pixels()``) or by name,
  matched case-insensitively against band descriptions and colour interpretations ("red", "nir").
  One band (``bands=[i]``) gives a gray view.
- uint8 data is used as is; every other dtype is stretched per band between its 2nd and 98th
  percentiles of valid pixels (computed once per tile from a decimated read) to 0..255.
- Invalid pixels (all bands equal to nodata, any NaN, or alpha == 0) become 0 in the RGB view.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from graft_vqa.core.errors import UnsupportedTileError

PERCENTILES = (2.0, 98.0)  # robust stretch limits for non-uint8 data


@dataclass(frozen=True)
class BandInfo:
    """Names of the bands of a raster, as read from the file."""

    descriptions: tuple[str | None, ...]  # per-band description (GDAL band description)
    colorinterp: tuple[str, ...]  # per-band colour interpretation name ("red", "alpha", "undefined")

    @property
    def count(self) -> int:
        """Number of bands."""
        return len(self.colorinterp)

    @property
    def alpha_index(self) -> int | None:
        """0-based index of the alpha band, if any."""
        return self.colorinterp.index("alpha") if "alpha" in self.colorinterp else None

    def names(self) -> list[str]:
        """Human-readable name per band, for error messages."""
        return [d or c for d, c in zip(self.descriptions, self.colorinterp)]


def _by_name(info: BandInfo, name: str) -> int:
    key = name.strip().lower()
    for i, d in enumerate(info.descriptions):
        if d and d.strip().lower() == key:
            return i
    for i, c in enumerate(info.colorinterp):
        if c == key or (key == "grey" and c == "gray"):
            return i
    raise UnsupportedTileError(
        f"no band named {name!r}; the bands are {info.names()} (pass 0-based indexes instead, "
        f"e.g. bands=[0, 1, 2])")


def select_bands(info: BandInfo, bands: Sequence[int | str] | None) -> tuple[int, ...]:
    """0-based indexes of the bands that make the RGB view (length 1 = gray, or 3)."""
    if bands is None:
        rgb = [info.colorinterp.index(c) for c in ("red", "green", "blue") if c in info.colorinterp]
        if len(rgb) == 3:
            return tuple(rgb)
        data = [i for i in range(info.count) if i != info.alpha_index]
        return tuple(data[:3]) if len(data) >= 3 else (data[0] if data else 0,)
    if isinstance(bands, (str, int)):
        bands = [bands]
    if len(bands) not in (1, 3):
        raise UnsupportedTileError(
            f"bands must name 1 (gray) or 3 (RGB) bands, got {list(bands)}")
    out = []
    for b in bands:
        if isinstance(b, (int, np.integer)) and not isinstance(b, bool):
            if not 0 <= int(b) < info.count:
                raise UnsupportedTileError(
                    f"band index {b} is out of range: this raster has {info.count} bands "
                    f"(0-based indexes 0..{info.count - 1}: {info.names()})")
            out.append(int(b))
        elif isinstance(b, str):
            out.append(_by_name(info, b))
        else:
            raise UnsupportedTileError(f"bands entries must be int indexes or names, got {b!r}")
    return tuple(out)


def valid_mask(pixels: np.ndarray, nodata: float | None, alpha_index: int | None) -> np.ndarray:
    """Boolean H×W: False where all data bands equal nodata, any band is NaN, or alpha is 0."""
    data_idx = [i for i in range(pixels.shape[2]) if i != alpha_index]
    data = pixels[:, :, data_idx]
    valid = np.ones(pixels.shape[:2], dtype=bool)
    if nodata is not None and not np.isnan(nodata):
        valid &= ~np.all(data == nodata, axis=2)
    if np.issubdtype(pixels.dtype, np.floating):
        valid &= ~np.any(np.isnan(data), axis=2)
    if alpha_index is not None:
        valid &= pixels[:, :, alpha_index] != 0
    return valid


@dataclass(frozen=True)
class Stretch:
    """Per-band linear stretch to 0..255 (None for uint8 data, which is used as is)."""

    low: tuple[float, ...] | None  # value mapped to 0, per selected band
    high: tuple[float, ...] | None  # value mapped to 255, per selected band


def fit_stretch(sample: np.ndarray, band_idx: Sequence[int], valid: np.ndarray) -> Stretch:
    """Percentile stretch limits from a (possibly decimated) sample of the whole tile."""
    if sample.dtype == np.uint8:
        return Stretch(None, None)
    lows, highs = [], []
    for b in band_idx:
        vals = sample[:, :, b][valid].astype(np.float64)
        vals = vals[np.isfinite(vals)]
        lo, hi = np.percentile(vals, PERCENTILES) if vals.size else (0.0, 1.0)
        lows.append(float(lo))
        highs.append(float(hi))
    return Stretch(tuple(lows), tuple(highs))


def to_rgb(pixels: np.ndarray, band_idx: Sequence[int], stretch: Stretch,
           valid: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 view: chosen bands, stretched, invalid pixels set to 0."""
    h, w = pixels.shape[:2]
    out = np.zeros((h, w, 3), dtype=np.uint8)
    for k in range(3):
        j = k if len(band_idx) == 3 else 0
        band = pixels[:, :, band_idx[j]]
        if stretch.low is None:
            out[:, :, k] = band
            continue
        lo, hi = stretch.low[j], stretch.high[j]
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        f = (band.astype(np.float32) - np.float32(lo)) * np.float32(scale)
        out[:, :, k] = np.clip(np.nan_to_num(f, nan=0.0), 0, 255).astype(np.uint8)
    out[~valid] = 0
    return out
