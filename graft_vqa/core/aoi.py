"""Areas of interest: a polygon given in some CRS, placed on a raster's grid.

:func:`resolve_aoi` turns what the user gave (a shapely geometry, a GeoJSON-like dict) into an
:class:`AOI` on one raster: the geometry reprojected to the raster's CRS and to its pixel grid, the
bounding window of pixels it touches, and its ground area. The rules the engine applies with it
(documented in ``docs/scenes.md`` and the API spec): an instance belongs to the AOI when its
centroid lies inside; its area counts only inside the AOI; the root ``ImagePatch`` is the AOI's
bounding window and its ``area_m2`` is the AOI's area.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Geod, Transformer
from rasterio.features import rasterize
from shapely.geometry import box as shapely_box
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from graft_vqa.core.errors import AOIError

WGS84_GEOD = Geod(ellps="WGS84")


@dataclass(frozen=True)
class AOI:
    """An area of interest placed on one raster."""

    geometry: BaseGeometry  # in the raster's CRS (map units), clipped to the raster's footprint
    geometry_px: BaseGeometry  # the same in the raster's pixel coordinates (col, row), top-left origin
    window: tuple[int, int, int, int]  # (row_off, col_off, height, width): the pixels it touches
    area_m2: float | None  # ground area inside the raster (geodesic, WGS84); None without georeferencing or gsd_m

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The bounding window as an ImagePatch box (left, top, right, bottom), exclusive ends."""
        row, col, h, w = self.window
        return (col, row, col + w, row + h)

    def mask(self, box: tuple[int, int, int, int], scale: int = 1) -> np.ndarray:
        """Bool mask of the AOI over pixel box (left, top, right, bottom), on a grid of ``scale``-pixel
        cells (a pixel or cell is inside when its centre is), shape ``(ceil(h/scale), ceil(w/scale))``."""
        left, top, right, bottom = box
        shape_ = (max(1, math.ceil((bottom - top) / scale)), max(1, math.ceil((right - left) / scale)))
        transform = Affine.translation(left, top) @ Affine.scale(scale)
        return rasterize([(self.geometry_px, 1)], out_shape=shape_, transform=transform, fill=0,
                         dtype="uint8").astype(bool)

    def contains_px(self, col: float, row: float) -> bool:
        """Whether the pixel-coordinate point (col, row) lies inside the AOI (its boundary included)."""
        return bool(self.geometry_px.intersects(shapely.Point(col, row)))


def as_geometry(aoi: Any) -> BaseGeometry:
    """A shapely geometry from a shapely geometry or a GeoJSON-like dict (Feature, FeatureCollection
    or geometry; the union of its polygons).

    Raises:
        AOIError: not a geometry, empty, or without polygons.
    """
    if isinstance(aoi, BaseGeometry):
        geom = aoi
    elif isinstance(aoi, dict):
        geom = _from_geojson(aoi)
    else:
        raise AOIError(f"an area of interest must be a shapely geometry, a GeoJSON-like dict or a file path, "
                       f"not {type(aoi).__name__}")
    polygons = shapely.get_parts(shapely.get_parts(geom))
    polygons = [p for p in polygons if p.geom_type in ("Polygon", "MultiPolygon") and not p.is_empty]
    if not polygons:
        raise AOIError("the area of interest holds no polygon: give a Polygon or MultiPolygon (a bounding box "
                       "with --bbox MINX,MINY,MAXX,MAXY works too)")
    merged = shapely.union_all([p if p.is_valid else shapely.make_valid(p) for p in polygons])
    return merged


def _from_geojson(data: dict) -> BaseGeometry:
    kind = data.get("type")
    try:
        if kind == "FeatureCollection":
            return shapely.union_all([_from_geojson(f) for f in data.get("features", [])])
        if kind == "Feature":
            return shape(data["geometry"])
        return shape(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AOIError(f"the area of interest is not valid GeoJSON ({exc})") from None


def geojson_crs(data: dict) -> str | None:
    """The CRS named by a GeoJSON dict's legacy ``crs`` member, if any (RFC 7946 GeoJSON is EPSG:4326)."""
    crs = data.get("crs")
    if isinstance(crs, dict):
        name = (crs.get("properties") or {}).get("name")
        return str(name) if name else None
    return None


def ground_area_m2(geometry: BaseGeometry, crs: Any) -> float:
    """Geodesic area in m² (WGS84 ellipsoid) of a geometry given in ``crs``."""
    if geometry.is_empty:
        return 0.0
    src = ProjCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    if not src.is_geographic or src.to_epsg() != 4326:
        to_lonlat = Transformer.from_crs(src, ProjCRS.from_epsg(4326), always_xy=True)
        geometry = shapely.transform(_densify(geometry), to_lonlat.transform, interleaved=False)
    area, _ = WGS84_GEOD.geometry_area_perimeter(geometry)
    return abs(float(area))


def _densify(geometry: BaseGeometry) -> BaseGeometry:
    """Extra vertices so straight map edges stay close to their true shape after reprojection."""
    minx, miny, maxx, maxy = geometry.bounds
    step = max(maxx - minx, maxy - miny) / 256.0
    return shapely.segmentize(geometry, step) if step > 0 else geometry


def resolve_aoi(aoi: Any, tile: Any, aoi_crs: Any = None) -> AOI:
    """Place ``aoi`` (shapely geometry or GeoJSON-like dict) given in ``aoi_crs`` on ``tile``'s grid.

    ``aoi_crs`` None means: a dict's legacy ``crs`` member, else EPSG:4326 for a dict (RFC 7946),
    else the raster's own CRS for a shapely geometry.

    Raises:
        AOIError: the AOI misses the raster, the raster has no CRS while the AOI has one, or the
            geometry is unusable.
    """
    geom = as_geometry(aoi)
    if aoi_crs is None and isinstance(aoi, dict):
        aoi_crs = geojson_crs(aoi) or "EPSG:4326"
    raster_crs = getattr(tile, "crs", None)
    if raster_crs is None:
        if aoi_crs is not None:
            raise AOIError(f"this raster has no CRS, so an area of interest in {aoi_crs} cannot be placed on it; "
                           "give the AOI as a shapely geometry in pixel coordinates (col, row) without a CRS")
        map_geom = geom
    elif aoi_crs is None:
        map_geom = geom
    else:
        map_geom = reproject(geom, aoi_crs, raster_crs)
    footprint = shapely_box(0, 0, tile.width, tile.height)
    inverse = ~tile.transform
    geom_px = shapely.transform(_densify(map_geom), lambda xy: np.column_stack(inverse @ (xy[:, 0], xy[:, 1])))
    geom_px = geom_px.intersection(footprint)
    if geom_px.is_empty or geom_px.area <= 0:
        minx, miny, maxx, maxy = map_geom.bounds
        raise AOIError(f"the area of interest ({minx:.6g}, {miny:.6g}, {maxx:.6g}, {maxy:.6g} in the raster's CRS) "
                       f"does not overlap the raster; check its coordinates and --aoi-crs")
    window = _window(geom_px, tile.width, tile.height)
    clipped = shapely.transform(geom_px, lambda xy: np.column_stack(tile.transform @ (xy[:, 0], xy[:, 1])))
    area = _area_m2(tile, clipped, geom_px)
    return AOI(geometry=clipped, geometry_px=geom_px, window=window, area_m2=area)


def _window(geom_px: BaseGeometry, width: int, height: int) -> tuple[int, int, int, int]:
    minx, miny, maxx, maxy = geom_px.bounds
    eps = 1e-6  # reprojection round-off must not add a row or column
    col0, row0 = max(0, int(math.floor(minx + eps))), max(0, int(math.floor(miny + eps)))
    col1, row1 = min(width, int(math.ceil(maxx - eps))), min(height, int(math.ceil(maxy - eps)))
    return (row0, col0, max(1, row1 - row0), max(1, col1 - col0))


def _area_m2(tile: Any, clipped_map: BaseGeometry, geom_px: BaseGeometry) -> float | None:
    """Ground area: geodesic for georeferenced rasters; pixels × gsd² when only gsd_m is known."""
    if getattr(tile, "explicit_gsd", False) or tile.crs is None:
        gsd = getattr(tile, "gsd_m", None)
        return float(geom_px.area * gsd * gsd) if gsd else None
    return ground_area_m2(clipped_map, tile.crs)


def reproject(geometry: BaseGeometry, src: Any, dst: Any) -> BaseGeometry:
    """``geometry`` from CRS ``src`` to CRS ``dst`` (densified first, so edges bend as they should)."""
    src_crs = ProjCRS.from_user_input(src.to_wkt() if hasattr(src, "to_wkt") else src)
    dst_crs = ProjCRS.from_user_input(dst.to_wkt() if hasattr(dst, "to_wkt") else dst)
    if src_crs == dst_crs:
        return geometry
    transformer = Transformer.from_crs(src_crs, dst_crs, always_xy=True)
    return shapely.transform(_densify(geometry), transformer.transform, interleaved=False)


def to_geojson_dict(geometry: BaseGeometry) -> dict:
    """A GeoJSON geometry dict."""
    return dict(mapping(geometry))
