"""Georeferencing of a tile: ground sample distance and pixel areas in metres.

One mechanism for every CRS (geographic or projected): the ground area of a pixel is its area in
CRS units, ``|det(transform)|``, times the local areal scale at the centre of its row's middle cell
(:func:`areal_factors`): the ellipsoid's ``M·N·cos(lat)`` over the Jacobian of lon/lat -> map. So
EPSG:4326 cells shrink towards the poles (never degrees times a constant), EPSG:3857 at 60°N gives
about a quarter of the plane area, and UTM areas include the projection's scale factor (0.9996 on
the central meridian). The GSD is the mean geodesic length of one column step and one row step at
the tile centre. Tiles without a CRS have areas only when the caller gives ``gsd_m``.
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import numpy as np
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Geod, Transformer
from rasterio.crs import CRS

from graft_vqa.core.errors import AreaUnavailableError, UnsupportedTileError

log = logging.getLogger(__name__)

WGS84 = Geod(ellps="WGS84")
JACOBIAN_STEP_DEG = 1e-4  # lon/lat step of the central differences in areal_factors


@dataclass(frozen=True)
class GeoInfo:
    """What a tile knows about its place on the ground."""

    crs: CRS | None  # coordinate reference system; None when not georeferenced
    transform: Affine  # pixel (col, row) -> map (x, y); identity when not georeferenced
    georeferenced: bool  # a CRS and a non-identity transform are present
    is_geographic: bool  # CRS units are degrees
    gsd_m: float | None  # ground sample distance in metres (explicit gsd_m wins)
    explicit_gsd: bool  # gsd_m was given by the caller and overrides the georeferencing

    @property
    def has_area(self) -> bool:
        """Whether areas in m² can be computed."""
        return self.gsd_m is not None


@functools.lru_cache(maxsize=32)
def _pyproj_crs(wkt: str) -> ProjCRS:
    return ProjCRS.from_user_input(wkt)


@functools.lru_cache(maxsize=32)
def _transformers(wkt: str) -> tuple[Transformer, Transformer, Geod]:
    """map -> lon/lat and lon/lat -> map transformers of a CRS, and its ellipsoid (built once per CRS)."""
    crs = _pyproj_crs(wkt)
    geodetic = crs.geodetic_crs or _pyproj_crs("EPSG:4326")
    return (Transformer.from_crs(crs, geodetic, always_xy=True),
            Transformer.from_crs(geodetic, crs, always_xy=True), geodetic.get_geod() or WGS84)


def _to_lonlat(crs: CRS, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    to_lonlat, _, _ = _transformers(crs.to_wkt())
    lon, lat = to_lonlat.transform(xs, ys)
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


def areal_factors(crs: CRS, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Ground area in m² of one CRS unit² at map points ``(xs, ys)``, the same way for every CRS.

    The ground area of a small lon/lat cell is ``M·N·cos(lat)·dλ·dφ`` (meridional and prime-vertical
    radii of curvature of the CRS's ellipsoid); its area in the map is ``|det J|·dλ·dφ``, with ``J``
    the Jacobian of lon/lat -> map, taken by central differences through pyproj. Their ratio is the
    local areal scale: exact for geographic CRSs (``J`` is the unit conversion), the projection's
    areal scale factor for projected ones. Points where the projection is undefined fall back to
    the plane area (metres per unit squared), with a warning.
    """
    _, to_map, geod = _transformers(crs.to_wkt())
    lon, lat = _to_lonlat(crs, np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64))
    h = JACOBIAN_STEP_DEG
    north, south = np.minimum(lat + h, 90.0), np.maximum(lat - h, -90.0)
    xe, ye = (np.asarray(v) for v in to_map.transform(lon + h, lat))
    xw, yw = (np.asarray(v) for v in to_map.transform(lon - h, lat))
    xn, yn = (np.asarray(v) for v in to_map.transform(lon, north))
    xs_, ys_ = (np.asarray(v) for v in to_map.transform(lon, south))
    dlam, dphi = math.radians(2 * h), np.radians(north - south)
    det = ((xe - xw) * (yn - ys_) - (xn - xs_) * (ye - yw)) / (dlam * dphi)
    phi = np.radians(lat)
    w = np.sqrt(1.0 - geod.es * np.sin(phi) ** 2)
    ground = (geod.a / w) * (geod.a * (1.0 - geod.es) / w ** 3) * np.abs(np.cos(phi))
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = ground / np.abs(det)
    good = np.isfinite(factor) & (factor > 0)
    if not good.all():
        log.warning("%s: no areal scale at %d point(s); plane areas used there", crs.to_string(),
                    int((~good).sum()))
        plane = 1.0 if crs.is_geographic else float(crs.linear_units_factor[1]) ** 2
        factor = np.where(good, factor, plane)
    return factor


def _ground_gsd(crs: CRS, transform: Affine, height: int, width: int) -> float:
    """Mean of the geodesic lengths of one column step and one row step at the tile centre."""
    c, r = width / 2.0, height / 2.0
    xs, ys = transform @ (np.array([c, c + 1, c]), np.array([r, r, r + 1]))
    lon, lat = _to_lonlat(crs, xs, ys)
    geod = _transformers(crs.to_wkt())[2]
    _, _, dx = geod.inv(lon[0], lat[0], lon[1], lat[1])
    _, _, dy = geod.inv(lon[0], lat[0], lon[2], lat[2])
    return (abs(dx) + abs(dy)) / 2.0


def _check_gsd(gsd_m: float) -> float:
    try:
        value = float(gsd_m)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UnsupportedTileError(
            f"gsd_m must be a positive number of metres per pixel, got {gsd_m!r}: pass e.g. "
            f"gsd_m=10.0 for Sentinel-2 / RSVQA-LR or gsd_m=0.1524 for RSVQA-HR, or leave it out "
            f"for georeferenced tiles")
    return value


def build_geo(crs: CRS | None, transform: Affine | None, height: int, width: int,
              gsd_m: float | None) -> GeoInfo:
    """Work out GSD and georeferencing; an explicit ``gsd_m`` overrides the CRS for areas.

    Raises:
        UnsupportedTileError: ``gsd_m`` is given but not a positive finite number.
    """
    transform = transform if transform is not None else Affine.identity()
    georef = crs is not None and not transform.almost_equals(Affine.identity())
    is_geo = bool(georef and crs.is_geographic)
    if gsd_m is not None:
        gsd = _check_gsd(gsd_m)
        if georef:
            log.info("explicit gsd_m=%s overrides the georeferencing for areas", gsd)
        return GeoInfo(crs, transform, georef, is_geo, gsd, True)
    if not georef:
        return GeoInfo(crs, transform, False, False, None, False)
    return GeoInfo(crs, transform, True, is_geo, _ground_gsd(crs, transform, height, width), False)


def _row_cell_areas(geo: GeoInfo, height: int, width: int) -> np.ndarray:
    """Ground area (m²) of the middle cell of each row: ``|det(transform)|`` times the areal factor
    at that cell's centre (the cells of one row are taken as equal)."""
    t = geo.transform
    if abs(t.b) > 1e-15 or abs(t.d) > 1e-15:
        log.warning("rotated raster: cell areas taken at the middle column")
    rows = np.arange(height, dtype=np.float64) + 0.5
    xs, ys = t @ (np.full(height, width / 2.0), rows)
    return abs(t.determinant) * areal_factors(geo.crs, xs, ys)


def pixel_area_column(geo: GeoInfo, height: int, width: int) -> np.ndarray:
    """Area in m² of the pixels of each row, shape ``(height, 1)``.

    Raises:
        AreaUnavailableError: the tile has neither georeferencing nor an explicit ``gsd_m``.
    """
    if not geo.has_area:
        raise AreaUnavailableError(
            "this image is not georeferenced (no CRS), so areas in m² are unknown: give its ground "
            "sample distance in metres per pixel, e.g. gsd_m=10.0 for Sentinel-2 / RSVQA-LR or "
            "gsd_m=0.1524 for RSVQA-HR")
    if geo.explicit_gsd:
        col = np.full(height, geo.gsd_m ** 2)
    else:
        col = _row_cell_areas(geo, height, width)
    return col.reshape(height, 1)
