"""The engine's perception seams, as protocols: anything with these methods plugs in.

- :class:`Scorer`: text queries -> per-pixel score maps (the GRAFT scorer, or synthetic maps in tests);
- :class:`ImageScorer`: a whole tile against a list of texts (``best_text_match``);
- :class:`Refiner`: SAM refinement of ``find``'s components.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from graft_vqa.perception.instances import Instance


@runtime_checkable
class Scorer(Protocol):
    """Pixel-level scoring: one map per query, shape ``(len(queries), h, w)``, higher meaning more likely;
    ``find`` resizes the maps to the tile. ``tile`` is a :class:`graft_vqa.core.tiles.Tile` (a window
    tile of a scene when ``tile.window`` is set)."""

    def score_maps(self, tile: Any, queries: list[str]) -> np.ndarray:  # pragma: no cover - protocol
        ...


@runtime_checkable
class ImageScorer(Protocol):
    """Image-level scoring: one score per option for the whole tile, shape ``(len(options),)``."""

    def score_image(self, tile: Any, options: list[str]) -> np.ndarray:  # pragma: no cover - protocol
        ...


@runtime_checkable
class Refiner(Protocol):
    """Refines ``find``'s components (SAM): same instances, better masks, in the same order."""

    def refine(self, tile: Any, instances: list[Instance], *, box_prompt: bool = False,
               valid: np.ndarray | None = None) -> list[Instance]:  # pragma: no cover - protocol
        ...
