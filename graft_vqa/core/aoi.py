"""Areas of interest: a polygon given in some CRS, placed on a raster's grid.

:func:`resolve_aoi` turns what the user gave (a shapely geometry, a GeoJSON-like dict, or the path of
a GeoJSON/GeoPackage/Shapefile) into an :class:`AOI` on one raster: the geometry reprojected to the
raster's CRS and to its pixel grid, the bounding window of pixels it touches, and its ground area.
:func:`aoi_from_user` reads and checks what an interface was given (``--aoi FILE`` or ``--bbox``,
``--aoi-crs``) before any work, applying the defaults: the CRS of ``--aoi-crs``, else the file's
own (a file without one is an error), else for ``--bbox`` and shapely geometries the raster's.

The rules the engine applies with it (documented in ``docs/scenes.md`` and the API spec): an
instance belongs to the AOI when its centroid lies inside; its area counts only inside the AOI;
the root ``ImagePatch`` is the AOI's bounding window and its ``area_m2`` is the AOI's area.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Geod, Transformer
from rasterio.features import rasterize
from shapely.geometry import box as shapely_box
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from graft_vqa.core.errors import AOIError, AOIOutsideRasterError
from graft_vqa.core.vectors import read_polygons

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
    # pyproj adds each ring's signed area, so holes subtract only when wound against the exterior
    area, _ = WGS84_GEOD.geometry_area_perimeter(shapely.orient_polygons(geometry))
    return abs(float(area))


def _densify(geometry: BaseGeometry) -> BaseGeometry:
    """Extra vertices so straight map edges stay close to their true shape after reprojection."""
    minx, miny, maxx, maxy = geometry.bounds
    step = max(maxx - minx, maxy - miny) / 256.0
    return shapely.segmentize(geometry, step) if step > 0 else geometry


def resolve_aoi(aoi: Any, tile: Any, aoi_crs: Any = None) -> AOI:
    """Place ``aoi`` (shapely geometry, GeoJSON-like dict, :class:`UserAOI` or the path of a vector
    file) given in ``aoi_crs`` on ``tile``'s grid.

    ``aoi_crs`` None means: a file's own CRS (a file without one is an error), a dict's legacy
    ``crs`` member, else EPSG:4326 for a dict (RFC 7946), else the raster's own CRS for a shapely
    geometry.

    Raises:
        AOIOutsideRasterError: the AOI misses the raster.
        AOIError: the raster has no CRS while the AOI has one, the file is unreadable, empty or has
            no CRS, or the geometry is unusable.
    """
    geom, aoi_crs = _given(aoi, aoi_crs)
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
        raise AOIOutsideRasterError(f"the area of interest ({minx:.6g}, {miny:.6g}, {maxx:.6g}, {maxy:.6g} in the "
                                    "raster's CRS) does not overlap the raster; check its coordinates and --aoi-crs")
    window = _window(geom_px, tile.width, tile.height)
    clipped = shapely.transform(geom_px, lambda xy: np.column_stack(tile.transform @ (xy[:, 0], xy[:, 1])))
    area = _area_m2(tile, clipped, geom_px)
    return AOI(geometry=clipped, geometry_px=geom_px, window=window, area_m2=area)


@dataclass(frozen=True)
class UserAOI:
    """An area of interest as the user gave it, read and checked, not yet placed on a raster."""

    geometry: BaseGeometry  # the union of the given polygons, in ``crs``
    crs: str | None  # CRS of ``geometry`` (WKT or authority string); None: the raster's own CRS
    source: str  # what was given, for messages: the file path or "bbox MINX,MINY,MAXX,MAXY"

    def ask_options(self) -> dict[str, Any]:
        """The keyword arguments of ``Engine.ask`` for this AOI: ``{"aoi": ..., "aoi_crs": ...}``."""
        return {"aoi": self.geometry, "aoi_crs": self.crs}


def aoi_from_user(aoi: Any = None, bbox: Any = None, aoi_crs: Any = None, raster_crs: Any = None) -> UserAOI | None:
    """Read and check an area of interest before any work; None when neither ``aoi`` nor ``bbox``.

    ``aoi``: a vector file path (GeoJSON, GeoPackage, Shapefile: the union of the first layer's
    polygons), a GeoJSON-like dict or a shapely geometry. ``bbox``: ``"MINX,MINY,MAXX,MAXY"`` or four
    numbers. The CRS: ``aoi_crs`` when given; else a file's own CRS (none is an error), a dict's
    legacy ``crs`` member or EPSG:4326 (RFC 7946); else, for ``bbox`` and shapely geometries,
    ``raster_crs`` (None: the raster's own CRS, decided when the AOI is placed on it).

    Raises:
        AOIError: both or a bad ``aoi``/``bbox``/``aoi_crs``; the message says what to do.
    """
    if aoi is not None and bbox is not None:
        raise AOIError("give an area of interest file (--aoi) or a bounding box (--bbox), not both")
    if aoi is None and bbox is None:
        if aoi_crs is not None:
            raise AOIError("--aoi-crs was given without an area of interest: add --aoi FILE or "
                           "--bbox MINX,MINY,MAXX,MAXY")
        return None
    if bbox is not None:
        geom, source, crs = parse_bbox(bbox), f"bbox {_bbox_text(bbox)}", crs_text(aoi_crs)
    else:
        geom, crs = _given(aoi, aoi_crs)
        source = str(aoi) if isinstance(aoi, (str, os.PathLike)) else type(aoi).__name__
    if crs is None and raster_crs is not None:
        crs = crs_text(raster_crs)
    return UserAOI(geometry=geom, crs=crs, source=source)


def _given(aoi: Any, aoi_crs: Any) -> tuple[BaseGeometry, str | None]:
    """The geometry and its CRS (None: the raster's) from a path, a dict, a UserAOI or a geometry."""
    if isinstance(aoi, UserAOI):
        return aoi.geometry, crs_text(aoi_crs) if aoi_crs is not None else aoi.crs
    crs = crs_text(aoi_crs) if aoi_crs is not None else None
    if isinstance(aoi, (str, os.PathLike)):
        geom, file_crs = load_aoi_file(aoi)
        crs = crs or file_crs
        if crs is None:
            raise AOIError(f"{aoi} has no CRS (a Shapefile without its .prj, or an undefined SRS): pass --aoi-crs "
                           "(aoi_crs=), e.g. --aoi-crs EPSG:4326")
        return geom, crs
    geom = as_geometry(aoi)
    if crs is None and isinstance(aoi, dict):
        crs = crs_text(geojson_crs(aoi) or "EPSG:4326")
    return geom, crs


def load_aoi_file(path: str | os.PathLike) -> tuple[BaseGeometry, str | None]:
    """The union of the polygons of a vector file's first layer (GeoJSON, GeoPackage, Shapefile,
    anything GDAL reads) and the file's CRS (None when it declares none).

    Raises:
        AOIError: the file is missing, unreadable, empty, or holds no polygons.
    """
    geometries, crs = read_polygons(path)
    if not geometries:
        raise AOIError(f"{path} holds no features: save the area of interest into it again, or give "
                       "--bbox MINX,MINY,MAXX,MAXY instead")
    polygons = [p for p in shapely.get_parts(geometries) if p.geom_type in ("Polygon", "MultiPolygon")]
    if not polygons:
        kinds = sorted({g.geom_type for g in geometries})
        raise AOIError(f"{path} holds no polygons (only {', '.join(kinds)}): an area of interest is a polygon; "
                       "buffer the features into polygons, or give --bbox MINX,MINY,MAXX,MAXY")
    return as_geometry(shapely.GeometryCollection(polygons)), crs


def parse_bbox(bbox: str | Sequence[float]) -> BaseGeometry:
    """The rectangle of ``"MINX,MINY,MAXX,MAXY"`` (or four numbers) as a shapely Polygon.

    Raises:
        AOIError: not four numbers, a non-finite number, or a minimum not below its maximum.
    """
    text = _bbox_text(bbox)
    parts = [p.strip() for p in text.split(",")] if isinstance(bbox, str) else list(bbox)
    if len(parts) != 4:
        raise AOIError(f"bbox {text!r} has {len(parts)} value(s); give four numbers MINX,MINY,MAXX,MAXY "
                       "separated by commas, e.g. --bbox 404000,3284000,406000,3286000")
    values = []
    for part in parts:
        try:
            value = float(part)
        except (TypeError, ValueError):
            raise AOIError(f"bbox {text!r}: {part!r} is not a number; give four numbers MINX,MINY,MAXX,MAXY") from None
        if not math.isfinite(value):
            raise AOIError(f"bbox {text!r}: {part!r} is not a finite number; give four numbers MINX,MINY,MAXX,MAXY")
        values.append(value)
    minx, miny, maxx, maxy = values
    for axis, lo, hi in (("X", minx, maxx), ("Y", miny, maxy)):
        if not lo < hi:
            raise AOIError(f"bbox {text!r}: MIN{axis} ({lo:g}) must be less than MAX{axis} ({hi:g}); the order is "
                           "MINX,MINY,MAXX,MAXY")
    return shapely_box(minx, miny, maxx, maxy)


def _bbox_text(bbox: Any) -> str:
    if isinstance(bbox, str):
        return bbox.strip()
    try:
        return ",".join(str(v) for v in bbox)
    except TypeError:
        raise AOIError(f"a bbox is 'MINX,MINY,MAXX,MAXY' or four numbers, not {type(bbox).__name__}") from None


def parse_crs(crs: Any, what: str = "--aoi-crs", error: type[Exception] = AOIError) -> ProjCRS:
    """``crs`` (EPSG code, ``"EPSG:4326"``, WKT, PROJ string, a CRS object) as a pyproj CRS.

    Raises:
        error (AOIError by default): pyproj does not know it; the message names ``what``.
    """
    if isinstance(crs, ProjCRS):
        return crs
    try:
        return ProjCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    except Exception:  # noqa: BLE001 - pyproj raises CRSError and others for unknown input
        raise error(f"{what} {str(crs)[:80]!r} is not a CRS pyproj knows; give e.g. EPSG:4326, EPSG:32618 "
                       "or WKT text") from None


def crs_text(crs: Any, what: str = "--aoi-crs", error: type[Exception] = AOIError) -> str | None:
    """A checked CRS as an authority string (``"EPSG:32618"``) where it has one, else WKT."""
    if crs is None:
        return None
    parsed = parse_crs(crs, what, error)
    authority = parsed.to_authority(min_confidence=100)
    return f"{authority[0]}:{authority[1]}" if authority else parsed.to_wkt()


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


def reproject(geometry: BaseGeometry, src: Any, dst: Any, max_segment: float | None = None) -> BaseGeometry:
    """``geometry`` from CRS ``src`` to CRS ``dst``, densified first so edges bend as they should:
    no edge longer than ``max_segment`` (in ``src`` units; None: 1/256 of the geometry's extent).
    Give many small geometries one ``max_segment`` from their common extent, so short pixel edges
    are not split needlessly."""
    src_crs = ProjCRS.from_user_input(src.to_wkt() if hasattr(src, "to_wkt") else src)
    dst_crs = ProjCRS.from_user_input(dst.to_wkt() if hasattr(dst, "to_wkt") else dst)
    if src_crs == dst_crs:
        return geometry
    transformer = _transformer(src_crs.to_wkt(), dst_crs.to_wkt())
    dense = _densify(geometry) if max_segment is None else shapely.segmentize(geometry, max_segment)
    return shapely.transform(dense, transformer.transform, interleaved=False)


@functools.lru_cache(maxsize=32)
def _transformer(src_wkt: str, dst_wkt: str) -> Transformer:
    return Transformer.from_crs(ProjCRS.from_wkt(src_wkt), ProjCRS.from_wkt(dst_wkt), always_xy=True)


def to_geojson_dict(geometry: BaseGeometry) -> dict:
    """A GeoJSON geometry dict."""
    return dict(mapping(geometry))
