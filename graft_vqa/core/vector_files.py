"""A minimal vector writer (pyogrio) for segmentation outputs: polygons with attributes, written atomically.

Formats by extension: GeoPackage (``.gpkg``) and FlatGeobuf (``.fgb``); GeoJSON is written from a dict by
the caller. (Interim: replaced by the project's shared vector outputs once they land.)
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from graft_vqa.core.errors import OutputPathError

DRIVERS = {".gpkg": "GPKG", ".fgb": "FlatGeobuf"}


def write_polygons(path: str | os.PathLike, geometries: Sequence[BaseGeometry], columns: Mapping[str, np.ndarray],
                   crs: str | None) -> Path:
    """One feature per geometry with ``columns`` (typed numpy arrays), in ``crs``, written atomically."""
    from pyogrio import raw

    target = Path(path)
    driver = DRIVERS.get(target.suffix.lower())
    if driver is None:
        raise OutputPathError(f"{target}: unknown vector format {target.suffix!r}; use one of "
                              f"{', '.join(DRIVERS)} or .geojson")
    wkb = np.array([shapely.to_wkb(shapely.multipolygons(shapely.get_parts(g))) for g in geometries], dtype=object)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        tmp = staging / target.name
        raw.write(tmp, wkb, list(columns.values()), list(columns), layer=target.stem, driver=driver, crs=crs,
                  geometry_type="MultiPolygon")
        os.replace(tmp, target)
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
    return target
