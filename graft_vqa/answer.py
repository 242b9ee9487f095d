"""The :class:`Answer` every entry point returns, and its exports: RFC 7946 GeoJSON and vector files.

``Answer.to_geojson()`` is RFC 7946 GeoJSON: WGS84 longitude/latitude (reprojected from the raster's
CRS), exteriors counter-clockwise. ``to_geojson(crs=RASTER_CRS)`` (or any other CRS) keeps those
coordinates instead and says so: the legacy ``crs`` member names the CRS and the collection's
``properties.rfc7946`` is false. ``Answer.to_file(path)`` writes GeoPackage, GeoJSON, FlatGeobuf
or Shapefile by extension, one feature per detection with ``label``, ``score``, ``area_m2``,
``perimeter_m`` (``perim_m`` in Shapefiles), ``refined``, ``question`` and ``answer``; GeoJSON as
above, the other formats in the raster's CRS unless ``crs=`` reprojects. Images without
georeferencing keep pixel coordinates (column, row from the top-left corner) and say so.

Every string in an answer is clean (``core.text.clean_text``): a program or the model that wrote
it cannot put a lone surrogate (``model_dump_json`` would fail) or a terminal escape sequence in
what the CLI, the app or an evaluation record shows.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator

from graft_vqa.core.text import clean_text, clean_value

if TYPE_CHECKING:  # pragma: no cover
    from shapely.geometry.base import BaseGeometry

AnswerKind = Literal["bool", "count", "area_m2", "percent", "text"]
# every warning of a model built with random weights says this (graft_vqa.models), so an answer knows
UNTRAINED_MARK = "random weights"
RASTER_CRS = "raster"  # crs= value of to_geojson/to_file: keep the raster's own CRS
WGS84 = "EPSG:4326"  # RFC 7946 coordinates: longitude, latitude on WGS84
PIXEL_NOTE = "pixel coordinates (column, row from the top-left corner): the image has no georeferencing"
Ring = list[tuple[float, float]]  # closed ring of (col, row) pixel coordinates


class Detection(BaseModel):
    """One instance found by ``find``: enough to audit and to draw it."""

    name: str  # the query text that found it
    score: float  # best GRAFT cosine score inside the instance
    box: tuple[int, int, int, int]  # (left, top, right, bottom) in pixel columns/rows, exclusive ends
    area_m2: float | None = None  # None when the tile has no georeferencing and no gsd_m
    perimeter_m: float | None = None  # outline length in metres (holes included); None like area_m2
    polygons_px: list[list[Ring]] = Field(default_factory=list)  # polygons, each [exterior, *holes]
    geometry: dict[str, Any] | None = None  # GeoJSON geometry in the tile's CRS, when georeferenced
    refined: bool = False  # True when SAM refined the mask

    @field_validator("name", mode="after")
    @classmethod
    def _clean_name(cls, value: str) -> str:
        return clean_text(value)

    @model_validator(mode="before")
    @classmethod
    def _one_polygon(cls, data: Any) -> Any:
        """Accept the older ``polygon_px=[exterior, *holes]`` (one polygon) as ``polygons_px``."""
        if isinstance(data, dict) and "polygon_px" in data:
            data = dict(data)
            rings = data.pop("polygon_px")
            data.setdefault("polygons_px", [rings] if rings else [])
        return data

    def geometry_px(self) -> dict[str, Any]:
        """GeoJSON geometry in pixel coordinates: Polygon, MultiPolygon, or the box without polygons."""
        polygons = [[[list(p) for p in ring] for ring in poly] for poly in self.polygons_px if poly]
        if not polygons:
            left, top, right, bottom = self.box
            polygons = [[[[left, top], [right, top], [right, bottom], [left, bottom], [left, top]]]]
        if len(polygons) == 1:
            return {"type": "Polygon", "coordinates": polygons[0]}
        return {"type": "MultiPolygon", "coordinates": polygons}


class Answer(BaseModel):
    """A typed, auditable answer.

    ``answer`` is the short normalised string (``"yes"``, ``"3"``, ``"1520 m2"``); ``value`` the typed
    value. A failed program sets ``error`` and never answers "no".
    """

    model_config = ConfigDict(validate_assignment=True)  # strings stay clean when a field is set later

    question: str = ""
    answer: str  # short normalised string
    value: Union[bool, int, float, str, None] = None  # typed value (None when the program failed)
    kind: AnswerKind = "text"
    program: str = ""  # the program source that produced the answer
    detections: list[Detection] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)  # seconds per stage
    warnings: list[str] = Field(default_factory=list)
    error: str | None = None  # set when planning or running failed
    status: str = "ok"  # the sandbox status: ok, refused, timeout, memory, error, not_understood
    crs: str | None = None  # the tile's CRS (WKT or EPSG string) for the GeoJSON export

    @field_validator("question", "answer", "status", mode="after")
    @classmethod
    def _clean_line(cls, value: str | None) -> str | None:
        return None if value is None else clean_text(value)

    @field_validator("program", "error", mode="after")
    @classmethod
    def _clean_text(cls, value: str | None) -> str | None:
        return None if value is None else clean_text(value, keep_newlines=True)

    @field_validator("value", mode="after")
    @classmethod
    def _clean_value(cls, value: Any) -> Any:
        return clean_text(value) if isinstance(value, str) else value

    @field_validator("warnings", mode="after")
    @classmethod
    def _clean_warnings(cls, value: list[str]) -> list[str]:
        return [clean_text(w, keep_newlines=True) for w in value]

    @field_validator("timings", mode="after")
    @classmethod
    def _clean_timings(cls, value: dict[str, float]) -> dict[str, float]:
        return clean_value(value)

    @property
    def ok(self) -> bool:
        return self.error is None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def untrained(self) -> bool:
        """True when a model with random weights answered (``allow_untrained`` without weights): the
        answer is NOT meaningful, and every interface must say so next to it."""
        return any(UNTRAINED_MARK in warning for warning in self.warnings)

    def to_geojson(self, crs: Any = None) -> dict[str, Any]:
        """The detections as a GeoJSON FeatureCollection.

        ``crs`` None (the default): RFC 7946, WGS84 longitude/latitude, reprojected from the
        raster's CRS. :data:`RASTER_CRS` keeps the raster's CRS, any other CRS reprojects to it;
        both write the legacy ``crs`` member and ``properties.rfc7946 = false``. Images without
        georeferencing keep pixel coordinates with ``properties.pixel_coordinates = true``.

        Raises:
            OutputPathError: an unknown ``crs``, or a ``crs`` for an image without georeferencing.
        """
        import shapely
        from shapely.geometry import mapping

        geometries, target = self._geometries(crs, default=WGS84)
        features = [{"type": "Feature", "id": i, "geometry": mapping(shapely.orient_polygons(g)),
                     "properties": {**self._properties(i, d), "question": self.question, "answer": self.answer}}
                    for i, (d, g) in enumerate(zip(self.detections, geometries))]
        props: dict[str, Any] = {"question": self.question, "answer": self.answer, "source_crs": self.crs}
        collection: dict[str, Any] = {"type": "FeatureCollection", "features": features, "properties": props}
        if target is None:
            props.update(pixel_coordinates=True, rfc7946=False, coordinates=PIXEL_NOTE)
        elif target == WGS84:
            props.update(rfc7946=True, coordinates="RFC 7946: WGS84 longitude, latitude")
        else:
            props.update(rfc7946=False, coordinates=f"{target} (not RFC 7946 WGS84 longitude/latitude; the legacy "
                                                    "crs member names the CRS)")
            collection["crs"] = {"type": "name", "properties": {"name": _crs_urn(target)}}
        return collection

    def to_file(self, path: str | os.PathLike, crs: Any = None) -> Path:
        """Write the detections to ``path``: GeoPackage (``.gpkg``), GeoJSON (``.geojson``/``.json``,
        as :meth:`to_geojson`), FlatGeobuf (``.fgb``) or Shapefile (``.shp``), chosen by extension.

        One feature per detection (``id`` its index in ``detections``) with ``label``, ``score``,
        ``area_m2``, ``perimeter_m`` (``perim_m`` in a Shapefile), ``refined``, ``question`` and
        ``answer`` (also in the layer metadata of GeoPackage and FlatGeobuf files). Coordinates: the
        raster's CRS unless ``crs`` reprojects (GeoJSON: WGS84 unless ``crs`` is given). The file is
        written under a temporary name next to ``path`` and renamed: an error or Ctrl-C leaves no
        half file, and an existing file is replaced whole.

        Raises:
            OutputPathError: unknown extension or CRS, missing or read-only folder.
        """
        from graft_vqa.core.files import check_output_path, write_json
        from graft_vqa.core.vectors import VECTOR_FORMATS, driver_for, write_features

        target = check_output_path(path, VECTOR_FORMATS, "vector output")
        if driver_for(target) == "GeoJSON":
            return write_json(target, self.to_geojson(crs))
        geometries, dst = self._geometries(crs, default=RASTER_CRS)
        columns = {
            "id": np.arange(len(self.detections), dtype=np.int64),
            "label": np.array([d.name for d in self.detections], dtype=object),
            "score": np.array([d.score for d in self.detections], dtype=np.float64),
            "area_m2": _floats(d.area_m2 for d in self.detections),
            "perimeter_m": _floats(d.perimeter_m for d in self.detections),
            "refined": np.array([d.refined for d in self.detections], dtype=bool),
            "question": np.array([self.question] * len(self.detections), dtype=object),
            "answer": np.array([self.answer] * len(self.detections), dtype=object),
        }
        metadata = {"question": self.question, "answer": self.answer,
                    "coordinates": PIXEL_NOTE if dst is None else dst}
        return write_features(target, geometries, columns, crs=dst, metadata=metadata)

    # --- export helpers ----------------------------------------------------------------------
    def _geometries(self, crs: Any, default: str) -> tuple[list["BaseGeometry"], str | None]:
        """The detections' geometries in the asked CRS, and that CRS (None: pixel coordinates).

        ``crs`` None means ``default`` (:data:`WGS84` or :data:`RASTER_CRS`)."""
        import shapely
        from shapely.geometry import shape

        from graft_vqa.core.aoi import crs_text, reproject
        from graft_vqa.core.errors import OutputPathError

        wanted = default if crs is None else crs
        if self.crs is None or any(d.geometry is None for d in self.detections):
            if crs not in (None, RASTER_CRS):
                raise OutputPathError(f"the image has no georeferencing, so its detections stay in pixel coordinates "
                                      f"and cannot be given in {crs}; drop the output CRS (--vector-crs)")
            return [shape(d.geometry_px()) for d in self.detections], None
        source = crs_text(self.crs, "the answer's CRS", OutputPathError)
        target = source if wanted == RASTER_CRS else crs_text(wanted, "output CRS (--vector-crs)", OutputPathError)
        geometries = [shape(d.geometry) for d in self.detections]
        if target != source and geometries:
            minx, miny, maxx, maxy = shapely.total_bounds(geometries)
            step = max(maxx - minx, maxy - miny) / 256.0 or None  # one step for all: short edges stay whole
            geometries = [reproject(g, source, target, max_segment=step) for g in geometries]
        return geometries, target

    @staticmethod
    def _properties(index: int, d: Detection) -> dict[str, Any]:
        return {"id": index, "label": d.name, "score": d.score, "area_m2": d.area_m2, "perimeter_m": d.perimeter_m,
                "refined": d.refined}


def _floats(values: Any) -> np.ndarray:
    """A float column, None as NaN (written as null)."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _crs_urn(crs: str) -> str:
    """``"EPSG:32618"`` as the OGC URN GeoJSON's legacy ``crs`` member uses; other CRSs as given."""
    authority, _, code = crs.partition(":")
    return f"urn:ogc:def:crs:{authority}::{code}" if code and code.isalnum() else crs
