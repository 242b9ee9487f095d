"""Score maps and instances of a whole tile at full resolution (the :class:`MapSource` of tiles)."""
from __future__ import annotations

from typing import Any

import numpy as np

from graft_vqa.config import FindConfig
from graft_vqa.core.errors import GraftVQAError
from graft_vqa.perception.components import find_instances
from graft_vqa.perception.instances import Box, Instance
from graft_vqa.perception.protocols import Refiner, Scorer
from graft_vqa.perception.scorer import resize_maps


class TileMaps:
    """A tile read whole: the scorer's maps resized to the tile (bilinear), components at full resolution."""

    scale = 1  # pixels per map cell

    def __init__(self, tile: Any, scorer: Scorer) -> None:
        self.tile = tile
        self.scorer = scorer

    def score_maps(self, names: list[str]) -> np.ndarray:
        """(len(names), H, W) float32 scores from one scorer call."""
        maps = np.asarray(self.scorer.score_maps(self.tile, list(names)))
        if maps.ndim != 3 or maps.shape[0] != len(names):
            raise GraftVQAError(f"the scorer returned shape {maps.shape} for {len(names)} queries; a scorer's "
                                "score_maps(tile, queries) must return (len(queries), h, w)")
        return resize_maps(maps, (self.tile.height, self.tile.width))

    def valid(self) -> np.ndarray:
        """The tile's valid mask (H, W)."""
        return np.asarray(self.tile.valid_mask(), dtype=bool)

    def find(self, score_map: np.ndarray, box: Box, config: FindConfig, refiner: Refiner | None,
             name: str | None = None) -> list[Instance]:
        """Components inside ``box``, refined and merged (see :func:`find_instances`)."""
        return find_instances(self.tile, score_map, config, refiner=refiner, region=box)
