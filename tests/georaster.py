"""Small georeferenced rasters and vector files written to ``tmp_path`` for AOI and vector tests."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
import shapely
from affine import Affine
from pyogrio import raw
from pyproj import Geod, Transformer

UTM18 = "EPSG:32618"
UTM_ORIGIN = (400_000.0, 3_290_000.0)  # upper-left corner of the UTM test rasters (about 29.7 N, 76.0 W)
GEOD = Geod(ellps="WGS84")


def write_raster(path: Path, *, crs: str | None, transform: Affine | None, width: int = 200, height: int = 200,
                 count: int = 3) -> Path:
    """A uint8 GeoTIFF (a gentle gradient, no nodata) with ``crs`` and ``transform``."""
    data = np.broadcast_to((np.arange(width, dtype=np.uint16) % 200 + 20).astype(np.uint8), (count, height, width))
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype="uint8")
    if transform is not None:
        profile["transform"] = transform
    if crs is not None:
        profile["crs"] = crs
    with warnings.catch_warnings():  # NotGeoreferencedWarning: a raster without georeferencing is the point
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.ascontiguousarray(data))
    return path


def utm_raster(path: Path, gsd: float = 10.0, size: int = 200) -> Path:
    """A ``size``² raster in EPSG:32618 at ``gsd`` metres, upper-left at :data:`UTM_ORIGIN`."""
    x0, y0 = UTM_ORIGIN
    return write_raster(path, crs=UTM18, transform=Affine(gsd, 0, x0, 0, -gsd, y0), width=size, height=size)


def write_vector(path: Path, geometries: list, crs: str | None, driver: str | None = None) -> Path:
    """One feature per shapely geometry, with an ``id`` field, through pyogrio."""
    wkb = np.array([shapely.to_wkb(g) for g in geometries], dtype=object)
    kind = geometries[0].geom_type if geometries else "Polygon"
    with warnings.catch_warnings():  # "'crs' was not provided": the point of some tests
        warnings.simplefilter("ignore", UserWarning)
        raw.write(path, wkb, [np.arange(len(geometries), dtype=np.int64)], ["id"], driver=driver, crs=crs,
                  geometry_type=kind)
    return path


def to_crs(geometry, src: str, dst: str):
    """``geometry`` reprojected vertex by vertex (densify it first for faithful edges)."""
    transformer = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(geometry, transformer.transform, interleaved=False)


def geodesic_area(lonlat_geometry) -> float:
    """Ground area in m² of a lon/lat geometry on the WGS84 ellipsoid (holes subtracted whatever their
    winding: pyproj adds each ring's signed area)."""
    return abs(GEOD.geometry_area_perimeter(shapely.orient_polygons(lonlat_geometry))[0])
