"""The :class:`Answer` every entry point returns, and its GeoJSON export."""
from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, Field, model_validator

AnswerKind = Literal["bool", "count", "area_m2", "text"]
Ring = list[tuple[float, float]]  # closed ring of (col, row) pixel coordinates


class Detection(BaseModel):
    """One instance found by ``find``: enough to audit and to draw it."""

    name: str  # the query text that found it
    score: float  # best GRAFT cosine score inside the instance
    box: tuple[int, int, int, int]  # (left, top, right, bottom) in pixel columns/rows, exclusive ends
    area_m2: float | None = None  # None when the tile has no georeferencing and no gsd_m
    polygons_px: list[list[Ring]] = Field(default_factory=list)  # polygons, each [exterior, *holes]
    geometry: dict[str, Any] | None = None  # GeoJSON geometry in the tile's CRS, when georeferenced
    refined: bool = False  # True when SAM refined the mask

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

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_geojson(self) -> dict[str, Any]:
        """The detections as a GeoJSON FeatureCollection (map coordinates when georeferenced,
        else pixel coordinates with ``"pixel_coordinates": true``)."""
        features = []
        pixel = any(d.geometry is None for d in self.detections)
        for d in self.detections:
            if d.geometry is not None and not pixel:
                geometry = d.geometry
            else:
                geometry = d.geometry_px()
            features.append({
                "type": "Feature",
                "geometry": geometry,
                "properties": {"name": d.name, "score": d.score, "area_m2": d.area_m2, "refined": d.refined},
            })
        collection: dict[str, Any] = {"type": "FeatureCollection", "features": features,
                                      "properties": {"question": self.question, "answer": self.answer}}
        if pixel:
            collection["properties"]["pixel_coordinates"] = True
        elif self.crs:
            collection["properties"]["crs"] = self.crs
        return collection
