"""A synthetic scorer with known blobs, so app tests know the right answers without weights."""
from __future__ import annotations

from typing import Any

import numpy as np

from graft_vqa.config import EngineConfig, FindConfig

BLOB_SIDE = 24  # side of each square blob, in tile pixels
BLOB_STEP = 60  # distance between blob corners (blobs never touch)


class BlobScorer:
    """Scores 1.0 inside ``blobs[query]`` separate squares and 0.0 elsewhere.

    ``blobs`` maps tile width -> {query substring: number of blobs}, so tiles of different sizes
    give different, known answers.
    """

    def __init__(self, blobs: dict[int, dict[str, int]]) -> None:
        self.blobs = blobs
        self.calls: list[tuple[str, tuple[str, ...]]] = []  # (tile key, queries) per call

    def score_maps(self, tile: Any, queries: list[str]) -> np.ndarray:
        self.calls.append((tile.key, tuple(queries)))
        maps = np.zeros((len(queries), tile.height, tile.width), dtype=np.float32)
        per_tile = self.blobs.get(tile.width, {})
        for q, query in enumerate(queries):
            n = sum(count for word, count in per_tile.items() if word in query)
            for i in range(n):
                top, left = 10 + (i // 5) * BLOB_STEP, 10 + (i % 5) * BLOB_STEP
                maps[q, top:top + BLOB_SIDE, left:left + BLOB_SIDE] = 1.0
        return maps

    def score_image(self, tile: Any, options: list[str]) -> np.ndarray:
        return np.linspace(1.0, 0.0, len(options), dtype=np.float32)


def blob_engine_factory(blobs: dict[int, dict[str, int]]):  # noqa: ANN201 - returns a factory
    """An app engine factory: a real Engine with a :class:`BlobScorer`, no SAM, rule planner."""
    from graft_vqa.engine import Engine

    scorer = BlobScorer(blobs)

    def factory(settings: Any) -> Engine:
        config = EngineConfig(find=FindConfig(threshold=settings.threshold, refine="none"))
        return Engine(scorer=scorer, config=config)

    factory.scorer = scorer  # type: ignore[attr-defined]
    return factory


class SlowBlobScorer(BlobScorer):
    """A :class:`BlobScorer` that takes ``delay_s`` per call, so a test can watch a question being answered."""

    def __init__(self, blobs: dict[int, dict[str, int]], delay_s: float) -> None:
        super().__init__(blobs)
        self.delay_s = delay_s

    def score_maps(self, tile: Any, queries: list[str]) -> np.ndarray:
        import time

        time.sleep(self.delay_s)
        return super().score_maps(tile, queries)


def slow_blob_engine_factory(blobs: dict[int, dict[str, int]], delay_s: float):  # noqa: ANN201
    """Like :func:`blob_engine_factory`, with a :class:`SlowBlobScorer`."""
    from graft_vqa.engine import Engine

    scorer = SlowBlobScorer(blobs, delay_s)

    def factory(settings: Any) -> Engine:
        config = EngineConfig(find=FindConfig(threshold=settings.threshold, refine="none"), gsd_m=settings.gsd_m)
        return Engine(scorer=scorer, config=config)

    return factory
