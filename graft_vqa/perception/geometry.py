"""Masks → polygons, metric geometry, and the size and shape attributes of ``ImagePatch``.

Documented thresholds (module constants, so callers and the API spec can quote them):

- size: area in m² below ``SIZE_SMALL_MAX_M2`` is ``"small"``, below ``SIZE_MEDIUM_MAX_M2``
  ``"medium"``, else ``"large"``. Without georeferencing, the fraction of the tile's area is used
  instead: below ``SIZE_SMALL_MAX_FRACTION`` small, below ``SIZE_MEDIUM_MAX_FRACTION`` medium.
- shape, from the pixel-edge polygon of the mask: ``fill`` = area / area of the minimum rotated
  rectangle, ``aspect`` = long side / short side of that rectangle, ``circularity`` = 4πA / P²
  with the perimeter P measured by scikit-image's ``regionprops`` (which smooths the pixel
  staircase). ``fill >= SHAPE_RECT_FILL`` → ``"square"`` when ``aspect <= SHAPE_SQUARE_ASPECT``
  else ``"rectangular"``; otherwise ``circularity >= SHAPE_CIRCLE_CIRCULARITY`` and
  ``aspect <= SHAPE_CIRCLE_ASPECT`` → ``"circular"``; anything else ``"irregular"``.

Tracing is the costly part, so outlines and shape labels are remembered by mask content
(``GEOMETRY_MEMO`` masks each): the questions on one tile that ask for the shapes or relations of the
same instances trace each one once.
"""
from __future__ import annotations

import functools
import hashlib
import math
import threading
from typing import Any

import numpy as np
import shapely
from shapely import affinity
from affine import Affine
from rasterio import features
from shapely.geometry import MultiPolygon, Polygon, shape as shapely_shape
from skimage.measure import regionprops

from graft_vqa.core.lru import LRU

SIZE_SMALL_MAX_M2 = 500.0  # below: "small" (a house, a small pond)
SIZE_MEDIUM_MAX_M2 = 10_000.0  # below: "medium" (up to one hectare); above: "large"
SIZE_SMALL_MAX_FRACTION = 0.01  # without georeferencing: below 1 % of the tile is "small"
SIZE_MEDIUM_MAX_FRACTION = 0.10  # below 10 % of the tile is "medium"
SHAPE_RECT_FILL = 0.90  # fills at least 90 % of its minimum rotated rectangle: a rectangle
SHAPE_SQUARE_ASPECT = 1.25  # a rectangle whose long side is at most 1.25x the short one: a square
SHAPE_CIRCLE_CIRCULARITY = 0.85  # 4πA/P² of a disc is 1, of a square π/4 ≈ 0.785
SHAPE_CIRCLE_ASPECT = 1.25  # a circle's minimum rotated rectangle is a square
GEOMETRY_MEMO = 4096  # outlines and shape labels remembered, by mask content

_memo: LRU[tuple, Any] = LRU(max_items=2 * GEOMETRY_MEMO)
_memo_lock = threading.Lock()


def _remembered(key: tuple, make: Any) -> Any:
    """``make()`` once per ``key`` (thread-safe; computed outside the lock)."""
    with _memo_lock:
        found = _memo.get(key)
    if found is None:
        found = make()
        with _memo_lock:
            _memo.put(key, found)
    return found


def mask_polygon(mask: np.ndarray, transform: Affine = Affine.identity()) -> Polygon | MultiPolygon:
    """Exact pixel-edge outline of a boolean mask (holes kept) under ``transform``, remembered by content."""
    mask = np.asarray(mask, dtype=bool)
    return _remembered(("outline", mask_key(mask), tuple(transform)), lambda: _trace(mask, transform))


def _trace(mask: np.ndarray, transform: Affine) -> Polygon | MultiPolygon:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return Polygon()
    top, left = int(rows[0]), int(cols[0])
    m = np.ascontiguousarray(mask[top:rows[-1] + 1, left:cols[-1] + 1], dtype=np.uint8)
    shifted = transform @ Affine.translation(left, top)  # only the mask's box is traced
    # 8-connected tracing matches find's 8-connected components: one part per instance, but a
    # ring may touch itself at a pixel corner, which make_valid splits into valid polygons.
    parts = [shapely_shape(geom) for geom, value in features.shapes(m, mask=m.astype(bool), connectivity=8,
                                                                     transform=shifted) if value]
    if not parts:
        return Polygon()
    merged = shapely.union_all([p if p.is_valid else shapely.make_valid(p) for p in parts])
    polygons = polygon_parts(merged if merged.is_valid else shapely.make_valid(merged))
    if not polygons:
        return Polygon()
    return polygons[0] if len(polygons) == 1 else MultiPolygon(polygons)


def polygon_parts(geom: Any) -> list[Polygon]:
    """The non-empty polygons of a Polygon, MultiPolygon or collection (other types dropped)."""
    if isinstance(geom, Polygon):
        return [] if geom.is_empty else [geom]
    return [p for g in getattr(geom, "geoms", []) for p in polygon_parts(g)]


def polygon_rings(geom: Any) -> list[list[list[tuple[float, float]]]]:
    """``geom`` as a list of polygons, each ``[exterior, *holes]`` of (x, y) tuples."""
    return [[[(float(x), float(y)) for x, y in ring.coords] for ring in (p.exterior, *p.interiors)]
            for p in polygon_parts(geom)]


def box_polygon(box: tuple[int, int, int, int], transform: Affine = Affine.identity()) -> Polygon:
    """The rectangle (left, top, right, bottom) in pixels, under ``transform``."""
    left, top, right, bottom = box
    corners = [transform @ (c, r) for c, r in ((left, top), (right, top), (right, bottom), (left, bottom))]
    return Polygon(corners)


def to_map(geom_px: Any, transform: Affine) -> Any:
    """A pixel-coordinate geometry under the affine ``transform`` (pixel → map), without re-tracing."""
    if transform == Affine.identity():
        return geom_px
    tr = transform
    return affinity.affine_transform(geom_px, [tr.a, tr.b, tr.d, tr.e, tr.c, tr.f])


def _metre_factor(crs: Any) -> float:
    try:
        return float(crs.linear_units_factor[1])
    except Exception:  # noqa: BLE001 - a CRS without linear units: assume metres
        return 1.0


def explicit_gsd(tile: Any) -> bool:
    """True when the caller gave ``gsd_m`` explicitly (it then wins over the CRS, for areas and distances)."""
    return bool(getattr(tile, "explicit_gsd", False))


@functools.lru_cache(maxsize=16)
def _local_transformer(crs_wkt: str, lon: float, lat: float) -> Any:
    """A geographic CRS → local azimuthal equidistant (metres) transformer, built once per tile centre."""
    from pyproj import CRS, Transformer

    local = CRS.from_proj4(f"+proj=aeqd +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m")
    return Transformer.from_crs(CRS.from_user_input(crs_wkt), local, always_xy=True)


def metric_geometry(geom_px: Any, tile: Any) -> Any | None:
    """The pixel-coordinate geometry in metres: pixels × ``gsd_m`` when ``gsd_m`` was given explicitly
    (as for areas), else the projected CRS (scaled to metres), a local azimuthal equidistant
    projection for geographic CRSs, or pixels × ``gsd_m``; None without scale."""
    if getattr(tile, "georeferenced", False) and tile.crs is not None and not explicit_gsd(tile):
        in_crs = to_map(geom_px, tile.transform)
        if not tile.is_geographic:
            k = _metre_factor(tile.crs)
            return affinity.scale(in_crs, k, k, origin=(0, 0)) if k != 1.0 else in_crs
        lon, lat = tile.pixel_to_map(tile.width / 2, tile.height / 2)
        to_local = _local_transformer(tile.crs.to_wkt(), float(lon), float(lat))
        return shapely.transform(in_crs, to_local.transform, interleaved=False)
    if getattr(tile, "gsd_m", None):
        g = float(tile.gsd_m)
        return affinity.scale(geom_px, g, g, origin=(0, 0))
    return None


def size_label(area_m2: float | None, fraction: float) -> str:
    """"small" / "medium" / "large" from the area in m² (or the tile fraction when area is None)."""
    if area_m2 is not None:
        return "small" if area_m2 < SIZE_SMALL_MAX_M2 else "medium" if area_m2 < SIZE_MEDIUM_MAX_M2 else "large"
    return ("small" if fraction < SIZE_SMALL_MAX_FRACTION
            else "medium" if fraction < SIZE_MEDIUM_MAX_FRACTION else "large")


def shape_measures(mask: np.ndarray) -> dict[str, float]:
    """``fill``, ``aspect`` and ``circularity`` of a mask (see the module docstring)."""
    m = np.asarray(mask, dtype=bool)
    area = float(m.sum())
    if area == 0:
        return {"fill": 0.0, "aspect": 1.0, "circularity": 0.0}
    rect = mask_polygon(m).minimum_rotated_rectangle
    xs, ys = rect.exterior.coords.xy if isinstance(rect, Polygon) else ([0, 1, 1], [0, 0, 1])
    sides = sorted(math.dist((xs[i], ys[i]), (xs[i + 1], ys[i + 1])) for i in range(2))
    short, long_ = max(sides[0], 1.0), max(sides[1], 1.0)
    perimeter = sum(p.perimeter for p in regionprops(m.astype(np.uint8))) or 1.0
    return {"fill": area / max(rect.area, 1.0), "aspect": long_ / short,
            "circularity": float(4 * math.pi * area / perimeter ** 2)}


def mask_key(mask: np.ndarray) -> bytes:
    """A digest of a boolean mask's content and position (equal masks, equal keys)."""
    m = np.asarray(mask, dtype=bool)
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return b"empty"
    crop = m[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    digest = hashlib.blake2b(np.packbits(crop).tobytes(), digest_size=16)
    digest.update(np.array([rows[0], cols[0], *crop.shape], dtype=np.int64).tobytes())
    return digest.digest()


def shape_label(mask: np.ndarray) -> str:
    """"square" / "rectangular" / "circular" / "irregular" (thresholds in the module docstring),
    remembered by mask content."""
    return _remembered(("shape", mask_key(mask)), lambda: _shape_label(mask))


def _shape_label(mask: np.ndarray) -> str:
    s = shape_measures(mask)
    if s["fill"] >= SHAPE_RECT_FILL:
        return "square" if s["aspect"] <= SHAPE_SQUARE_ASPECT else "rectangular"
    if s["circularity"] >= SHAPE_CIRCLE_CIRCULARITY and s["aspect"] <= SHAPE_CIRCLE_ASPECT:
        return "circular"
    return "irregular"
