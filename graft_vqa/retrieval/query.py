"""``search``: the chips of an index that best match a text, optionally inside a place.

The text is embedded by the same kind of embedder that built the index (its ``model_id`` must match);
the store returns the nearest chips by cosine (exact below ``ANN_MIN_ROWS`` chips, IVF above). A place
filter (``bbox`` or ``aoi``, in ``aoi_crs``) keeps the chips whose EPSG:4326 footprint intersects it:
the store pre-filters on the footprints' bounding boxes, then the footprints themselves are tested.
Chips without georeferencing have no footprint and never match a place filter.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence

import shapely
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from graft_vqa.config import EmbedConfig, apply_options
from graft_vqa.core.aoi import aoi_from_user, reproject
from graft_vqa.core.chips import WGS84
from graft_vqa.core.errors import ConfigError
from graft_vqa.models import embedder_model_id, resolve_embedder
from graft_vqa.retrieval.store import ChipStore, check_model

log = logging.getLogger(__name__)

OVERFETCH = 4  # with a place filter, chips fetched per wanted hit before the exact footprint test


@dataclass(frozen=True)
class Hit:
    """One chip found by :func:`search`."""

    path: str  # the raster file
    window: tuple[int, int, int, int]  # (row_off, col_off, height, width) in the raster's pixels
    score: float  # cosine between the chip's embedding and the text's
    footprint: BaseGeometry | None  # the chip's outline in EPSG:4326 (None without georeferencing)
    crs: str | None = None  # the raster's CRS
    date: str | None = None  # acquisition date recorded in the file (ISO 8601), if any

    def to_feature(self, rank: int | None = None) -> dict[str, Any]:
        """A GeoJSON Feature (RFC 7946: EPSG:4326; a null geometry without georeferencing)."""
        row, col, height, width = self.window
        props = {"path": self.path, "score": self.score, "row_off": row, "col_off": col, "height": height,
                 "width": width, "crs": self.crs, "date": self.date}
        if rank is not None:
            props = {"rank": rank, **props}
        geometry = mapping(self.footprint) if self.footprint is not None else None
        return {"type": "Feature", "geometry": geometry, "properties": props}


def hits_geojson(hits: Sequence[Hit], text: str = "") -> dict[str, Any]:
    """The hits as a GeoJSON FeatureCollection, best first."""
    return {"type": "FeatureCollection", "features": [h.to_feature(i + 1) for i, h in enumerate(hits)],
            "properties": {"query": text}}


def place_filter(bbox: Any = None, aoi: Any = None, aoi_crs: Any = None) -> BaseGeometry | None:
    """The place as a geometry in EPSG:4326 (None: no filter), read by :func:`graft_vqa.core.aoi.aoi_from_user`:
    ``bbox`` is ``"MINX,MINY,MAXX,MAXY"`` or four numbers; ``aoi`` a vector file (GeoJSON, GeoPackage,
    Shapefile), a GeoJSON-like dict or a shapely geometry; both in ``aoi_crs`` (default: a file's own
    CRS, a dict's ``crs`` member, else EPSG:4326).

    Raises:
        AOIError: both given, a bad bounding box, an unreadable file, or an unusable geometry.
    """
    user = aoi_from_user(aoi, bbox, aoi_crs, raster_crs=WGS84)
    if user is None:
        return None
    return reproject(user.geometry, user.crs or WGS84, WGS84)


def _bbox_sql(place: BaseGeometry) -> str:
    minx, miny, maxx, maxy = place.bounds
    return f"minx <= {maxx!r} AND maxx >= {minx!r} AND miny <= {maxy!r} AND maxy >= {miny!r}"


def _hit(row: dict[str, Any]) -> Hit:
    geom = shapely.from_wkb(row["footprint"]) if row.get("footprint") is not None else None
    window = (int(row["row_off"]), int(row["col_off"]), int(row["height"]), int(row["width"]))
    return Hit(row["path"], window, float(row["score"]), geom, row.get("crs"), row.get("date"))


def search_store(store: ChipStore, vector: Any, top_k: int, place: BaseGeometry | None = None) -> list[Hit]:
    """The ``top_k`` best chips of ``store`` for the embedding ``vector`` inside ``place`` (EPSG:4326)."""
    if place is None:
        return [_hit(r) for r in store.nearest(vector, top_k)]
    where, limit, total = _bbox_sql(place), top_k * OVERFETCH + 16, store.count()
    shapely.prepare(place)
    while True:
        rows = store.nearest(vector, limit, where)
        hits = [h for h in (_hit(r) for r in rows) if h.footprint is not None and place.intersects(h.footprint)]
        if len(hits) >= top_k or len(rows) < limit or limit >= total:
            return hits[:top_k]
        limit *= 4


def search(index: str | os.PathLike, text: str, top_k: int = 10, embedder: Any = None, *,
           bbox: str | Sequence[float] | None = None, aoi: Any = None, aoi_crs: Any = None,
           config: EmbedConfig | None = None, **options: Any) -> list[Hit]:
    """The ``top_k`` chips of the index folder ``index`` that best match ``text``, best first.

    Args:
        embedder: an :class:`~graft_vqa.perception.protocols.Embedder` with the index's ``model_id``;
            ``None`` builds the default one from ``config`` / ``options`` (``EmbedConfig`` fields).
        bbox, aoi, aoi_crs: a place filter (see :func:`place_filter`).

    Raises:
        IndexNotFoundError: no index at ``index``.
        EmbedderMismatchError: the index was built with other weights (the message names both).
        AOIError: an unusable place.
    """
    if top_k < 1:
        raise ConfigError(f"top_k must be at least 1, got {top_k}")
    text = str(text).strip()
    if not text:
        raise ConfigError("the search text is empty; say what to look for, e.g. 'a baseball field'")
    place = place_filter(bbox, aoi, aoi_crs)
    store = ChipStore.open(index)
    (config,) = apply_options(options, config or EmbedConfig())
    embedder, _ = resolve_embedder(embedder, config, images=False)
    check_model(store.meta, store.folder, embedder_model_id(embedder))
    vector = embedder.embed_texts([text])[0]
    return search_store(store, vector, top_k, place)
