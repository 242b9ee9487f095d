"""A synthetic scorer for end-to-end tests: known rectangles per query name, nothing else."""
from __future__ import annotations

import numpy as np

Rect = tuple[int, int, int, int]  # (top, bottom, left, right) in pixels, ends exclusive


class RectScorer:
    """Scores 0.5 inside each query's rectangles and 0.0 elsewhere; records the queries it saw."""

    def __init__(self, rects: dict[str, list[Rect]], image_scores: dict[str, float] | None = None) -> None:
        self.rects = rects
        self.image_scores = image_scores or {}
        self.queries: list[str] = []

    def score_maps(self, tile, queries: list[str]) -> np.ndarray:
        self.queries.extend(queries)
        maps = np.zeros((len(queries), tile.height, tile.width), dtype=np.float32)
        for i, name in enumerate(queries):
            for top, bottom, left, right in self.rects.get(name, []):
                maps[i, top:bottom, left:right] = 0.5
        return maps

    def score_image(self, tile, options: list[str]) -> np.ndarray:
        return np.array([self.image_scores.get(o, 0.0) for o in options], dtype=np.float32)


class MaskScorer:
    """Scores 0.5 on each query's boolean mask and 0.0 elsewhere; ``per_tile`` (file name -> query ->
    mask) gives some tiles masks of their own."""

    def __init__(self, masks: dict[str, np.ndarray], per_tile: dict[str, dict[str, np.ndarray]] | None = None) -> None:
        self.masks = masks
        self.per_tile = per_tile or {}

    def score_maps(self, tile, queries: list[str]) -> np.ndarray:
        name = (tile.path or "").replace("\\", "/").rsplit("/", 1)[-1]
        masks = self.per_tile.get(name, self.masks)
        empty = np.zeros((tile.height, tile.width), dtype=bool)
        return np.stack([np.where(masks.get(q, empty), 0.5, 0.0) for q in queries]).astype(np.float32)
