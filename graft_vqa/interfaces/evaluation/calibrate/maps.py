"""Score maps computed once per (tile, query) and served from memory: the calibration never re-encodes a tile.

:class:`MapCache` is itself a scorer, so the real ``find`` pipeline, the contrast scorer and the real
engine (held-out evaluation) all read the same cached maps. Maps are kept at the tile's resolution,
bounded by bytes; a map dropped for room is scored again and counted in ``recomputed``.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from graft_vqa.core.lru import LRU
from graft_vqa.perception.scorer import resize_maps

log = logging.getLogger(__name__)


class MapCache:
    """A caching scorer over ``scorer``: one ``score_maps`` call per (tile, query), whatever is asked after."""

    def __init__(self, scorer: Any, max_bytes: int | None = None) -> None:
        self.scorer = scorer  # the wrapped scorer
        self._maps: LRU[tuple[str, str], np.ndarray] = LRU(max_bytes=max_bytes)  # (tile key, query) -> (H, W)
        self._seen: set[tuple[str, str]] = set()  # every (tile key, query) scored once
        self.calls = 0  # score_maps calls made to the wrapped scorer
        self.tiles: set[str] = set()  # tile keys passed to the wrapped scorer
        self.recomputed = 0  # maps scored again because the byte bound had dropped them

    @property
    def weights_id(self) -> str | None:
        """The wrapped scorer's weights id (what a thresholds file records)."""
        return getattr(self.scorer, "weights_id", None)

    def score_image(self, tile: Any, options: list[str]) -> np.ndarray:
        """The wrapped scorer's image-level scores (``best_text_match``)."""
        return self.scorer.score_image(tile, options)

    def score_maps(self, tile: Any, queries: list[str]) -> np.ndarray:
        """(len(queries), H, W) float32 maps at the tile's size, scoring only the queries not cached."""
        key = tile.key
        missing = [q for q in dict.fromkeys(queries) if (key, q) not in self._maps]
        if missing:
            maps = resize_maps(np.asarray(self.scorer.score_maps(tile, missing)), (tile.height, tile.width))
            self.calls += 1
            self.tiles.add(key)
            for query, score in zip(missing, maps):
                if (key, query) in self._seen:
                    self.recomputed += 1
                self._seen.add((key, query))
                self._maps.put((key, query), np.ascontiguousarray(score))
            if self._maps.evictions and self.recomputed:
                log.warning("the score-map cache is full (%d maps re-scored so far): raise --map-cache-gb",
                            self.recomputed)
        out = [self._maps.get((key, q)) for q in queries]
        if any(m is None for m in out):  # evicted by this very call: the bound is smaller than one call
            out = list(resize_maps(np.asarray(self.scorer.score_maps(tile, list(queries))), (tile.height, tile.width)))
            self.calls += 1
        return np.stack(out) if out else np.zeros((0, tile.height, tile.width), dtype=np.float32)

    @property
    def bytes(self) -> int:
        """Bytes of maps held now."""
        return self._maps.bytes
