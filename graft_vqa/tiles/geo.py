"""Georeferencing of a tile: ground sample distance and pixel areas in metres.

Projected CRSs use the transform and the CRS's linear unit (areas in the projection plane).
Geographic CRSs (e.g. EPSG:4326) use geodesics on the CRS's ellipsoid (``pyproj.Geod``): the GSD
is measured at the tile centre and areas are exact per row of cells, never degrees times a constant.
Tiles without a CRS have areas only when the caller gives ``gsd_m``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from affine import Affine
from pyproj import Geod
from rasterio.crs import CRS

from graft_vqa.errors import AreaUnavailableError

log = logging.getLogger(__name__)

WGS84 = Geod(ellps="WGS84")


@dataclass(frozen=True)
class GeoInfo:
    """What a tile knows about its place on the ground."""

    crs: CRS | None  # coordinate reference system; None when not georeferenced
    transform: Affine  # pixel (col, row) -> map (x, y); identity when not georeferenced
    georeferenced: bool  # a CRS and a non-identity transform are present
    is_geographic: bool  # CRS units are degrees (areas come from geodesics)
    gsd_m: float | None  # ground sample distance in metres (explicit gsd_m wins)
    explicit_gsd: bool  # gsd_m was given by the caller and overrides the georeferencing

    @property
    def has_area(self) -> bool:
        """Whether areas in m² can be computed."""
        return self.gsd_m is not None


def geod_for(crs: CRS) -> Geod:
    """The ellipsoid of a geographic CRS as a ``pyproj.Geod`` (WGS84 when it cannot be read)."""
    try:
        from pyproj import CRS as ProjCRS

        return ProjCRS.from_user_input(crs.to_wkt()).get_geod() or WGS84
    except Exception:  # pragma: no cover - exotic CRS definitions
        log.warning("could not read the ellipsoid of %s; using WGS84", crs)
        return WGS84


def _pixel_steps(transform: Affine) -> tuple[float, float]:
    """Length of one pixel step along columns and along rows, in CRS units."""
    return math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e)


def _geographic_gsd(crs: CRS, transform: Affine, height: int, width: int) -> float:
    """Mean of the geodesic lengths of one column step and one row step at the tile centre."""
    geod = geod_for(crs)
    c, r = width / 2.0, height / 2.0
    x0, y0 = transform @ (c, r)
    x1, y1 = transform @ (c + 1, r)
    x2, y2 = transform @ (c, r + 1)
    _, _, dx = geod.inv(x0, y0, x1, y1)
    _, _, dy = geod.inv(x0, y0, x2, y2)
    return (abs(dx) + abs(dy)) / 2.0


def build_geo(crs: CRS | None, transform: Affine | None, height: int, width: int,
              gsd_m: float | None) -> GeoInfo:
    """Work out GSD and georeferencing; an explicit ``gsd_m`` overrides the CRS for areas."""
    transform = transform if transform is not None else Affine.identity()
    georef = crs is not None and not transform.almost_equals(Affine.identity())
    is_geo = bool(georef and crs.is_geographic)
    if gsd_m is not None:
        if not (math.isfinite(gsd_m) and gsd_m > 0):
            raise ValueError(f"gsd_m must be a positive number of metres, got {gsd_m!r}")
        if georef:
            log.info("explicit gsd_m=%s overrides the georeferencing for areas", gsd_m)
        return GeoInfo(crs, transform, georef, is_geo, float(gsd_m), True)
    if not georef:
        return GeoInfo(crs, transform, False, False, None, False)
    if is_geo:
        return GeoInfo(crs, transform, True, True, _geographic_gsd(crs, transform, height, width), False)
    factor = crs.linear_units_factor[1]
    sx, sy = _pixel_steps(transform)
    return GeoInfo(crs, transform, True, False, (sx + sy) / 2.0 * factor, False)


def _row_cell_areas_geographic(geo: GeoInfo, height: int, width: int,
                               row_off: int = 0) -> np.ndarray:
    """Geodesic area (m²) of one cell in each row (cells of a north-up row are equal)."""
    geod = geod_for(geo.crs)
    t = geo.transform
    if abs(t.b) > 1e-15 or abs(t.d) > 1e-15:
        log.warning("rotated geographic raster: cell areas taken at the middle column")
    col = width // 2
    areas = np.empty(height, dtype=np.float64)
    for i in range(height):
        r = row_off + i
        corners = [t @ (col, r), t @ (col + 1, r), t @ (col + 1, r + 1), t @ (col, r + 1)]
        lons = [p[0] for p in corners]
        lats = [min(90.0, max(-90.0, p[1])) for p in corners]
        area, _ = geod.polygon_area_perimeter(lons, lats)
        areas[i] = abs(area)
    return areas


def pixel_area_column(geo: GeoInfo, height: int, width: int) -> np.ndarray:
    """Area in m² of the pixels of each row, shape ``(height, 1)``.

    Raises:
        AreaUnavailableError: the tile has neither georeferencing nor an explicit ``gsd_m``.
    """
    if not geo.has_area:
        raise AreaUnavailableError(
            "this image is not georeferenced (no CRS), so areas in m² are unknown: pass the ground "
            "sample distance, e.g. load_tile(path, gsd_m=10.0) for Sentinel-2 / RSVQA-LR or "
            "gsd_m=0.1524 for RSVQA-HR")
    if geo.explicit_gsd:
        col = np.full(height, geo.gsd_m ** 2)
    elif geo.is_geographic:
        col = _row_cell_areas_geographic(geo, height, width)
    else:
        factor = geo.crs.linear_units_factor[1]
        col = np.full(height, abs(geo.transform.determinant) * factor ** 2)
    return col.reshape(height, 1)
