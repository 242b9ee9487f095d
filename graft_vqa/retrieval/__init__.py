"""Search over tile collections: chips embedded by an image-level model into a LanceDB index.

- :func:`build_index` (``graft-vqa index``): embed every chip of a collection, incrementally;
- :func:`search` (``graft-vqa search``): the chips that best match a text, optionally inside a place.
"""
from graft_vqa.retrieval.indexer import IndexReport, build_index
from graft_vqa.retrieval.query import Hit, hits_geojson, place_filter, search

__all__ = ["Hit", "IndexReport", "build_index", "hits_geojson", "place_filter", "search"]
