"""Vector files through pyogrio (GDAL/OGR): polygons read from an AOI file, features written out.

Formats by extension (:data:`VECTOR_FORMATS`): GeoPackage, GeoJSON, FlatGeobuf, Shapefile.
Writes go through :func:`graft_vqa.core.files.atomic_output`. GeoJSON files are written by the
caller from its RFC 7946 dict (:meth:`graft_vqa.answer.Answer.to_geojson`), not by GDAL, so the
file and the dict are the same; the other formats are written here.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from graft_vqa.core.errors import AOIError, OutputPathError
from graft_vqa.core.files import atomic_output

log = logging.getLogger(__name__)

VECTOR_FORMATS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON", ".fgb": "FlatGeobuf",
                  ".shp": "ESRI Shapefile"}  # extension -> OGR driver
SHAPEFILE_NAMES = {"perimeter_m": "perim_m"}  # dBase field names hold at most 10 characters
METADATA_DRIVERS = ("GPKG", "FlatGeobuf")  # drivers that keep layer metadata (question, answer, CRS notes)


def driver_for(path: str | os.PathLike) -> str:
    """The OGR driver for ``path``'s extension.

    Raises:
        OutputPathError: unknown extension (the message lists the known ones).
    """
    suffix = Path(path).suffix.lower()
    if suffix not in VECTOR_FORMATS:
        raise OutputPathError(f"{path}: unknown vector format {Path(path).suffix or '(no extension)'!r}; "
                              f"use one of {', '.join(VECTOR_FORMATS)}")
    return VECTOR_FORMATS[suffix]


def read_polygons(path: str | os.PathLike) -> tuple[list[BaseGeometry], str | None]:
    """The polygon geometries of the first layer of a vector file and its CRS (WKT or authority
    string; None when the file declares none).

    Raises:
        AOIError: the file is missing or not a vector file GDAL reads.
    """
    from pyogrio import raw
    from pyogrio.errors import DataLayerError, DataSourceError

    source = Path(path).expanduser()
    if not source.exists():
        raise AOIError(f"area of interest file {source} does not exist; check the path")
    try:
        with warnings.catch_warnings():  # "more than one layer found": the first is used, as documented
            warnings.simplefilter("ignore", UserWarning)
            meta, _, wkb, _ = raw.read(source, columns=[], read_geometry=True)
    except (DataSourceError, DataLayerError, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AOIError(f"cannot read {source} as a vector file ({first}); give a GeoJSON, "
                       "GeoPackage or Shapefile") from None
    geometries = [g for g in shapely.from_wkb(wkb) if g is not None and not g.is_empty] if wkb is not None else []
    return geometries, meta.get("crs") or None


def write_features(path: str | os.PathLike, geometries: Sequence[BaseGeometry], columns: Mapping[str, Sequence[Any]],
                   crs: str | None, metadata: Mapping[str, str] | None = None) -> Path:
    """Write one feature per geometry with ``columns`` (name -> one value per geometry, a typed numpy
    array for a column that may be empty) to ``path``
    (GeoPackage, FlatGeobuf or Shapefile by extension), atomically.

    Polygons and MultiPolygons are kept as they are (a layer holding both is written as
    MultiPolygon); invalid geometries are repaired with ``make_valid``. ``metadata`` goes into the
    layer metadata where the format keeps it (GeoPackage, FlatGeobuf).
    """
    from pyogrio import raw

    target = Path(path)
    driver = driver_for(target)
    if driver == "GeoJSON":
        raise OutputPathError(f"{target}: GeoJSON is written from Answer.to_geojson(), not through write_features")
    geoms = [_valid(g) for g in geometries]
    kinds = {g.geom_type for g in geoms}
    geometry_type = "MultiPolygon" if "MultiPolygon" in kinds else "Polygon"
    names, data = [], []
    for name, values in columns.items():
        names.append(SHAPEFILE_NAMES.get(name, name) if driver == "ESRI Shapefile" else name)
        data.append(_column(values))
    options: dict[str, Any] = {}
    if metadata and driver in METADATA_DRIVERS:
        options["layer_metadata"] = {str(k): str(v) for k, v in metadata.items()}
    wkb = np.array([shapely.to_wkb(g) for g in geoms], dtype=object)
    with atomic_output(target) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)  # pixel coordinates, said in metadata
        raw.write(tmp, wkb, data, names, layer=target.stem, driver=driver, crs=crs, geometry_type=geometry_type,
                  promote_to_multi=geometry_type == "MultiPolygon", **options)
    log.info("wrote %d features to %s (%s)", len(geoms), target, driver)
    return target


def _valid(geom: BaseGeometry) -> BaseGeometry:
    """``geom`` made valid, keeping only its polygon parts."""
    if geom.is_valid:
        return geom
    fixed = shapely.make_valid(geom)
    parts = [p for p in shapely.get_parts(fixed) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else fixed


def _column(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """A typed numpy column: an array as it is; else float (None -> NaN, written as null), bool, int,
    or object strings. Give arrays for columns that may be empty, so their type is known."""
    if isinstance(values, np.ndarray):
        return values
    items = list(values)
    present = [v for v in items if v is not None]
    if present and all(isinstance(v, bool) for v in present) and len(present) == len(items):
        return np.array(items, dtype=bool)
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present) and len(present) == len(items):
        return np.array(items, dtype=np.int64)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return np.array([np.nan if v is None else float(v) for v in items], dtype=np.float64)
    return np.array([None if v is None else str(v) for v in items], dtype=object)
