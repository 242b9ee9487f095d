"""The engine's perception seams, as protocols: anything with these methods plugs in.

- :class:`Scorer`: text queries -> per-pixel score maps (the GRAFT scorer, or synthetic maps in tests);
- :class:`ImageScorer`: a whole tile against a list of texts (``best_text_match``);
- :class:`Refiner`: SAM refinement of ``find``'s components;
- :class:`Embedder`: tiles and texts -> one embedding each, in one space (search and classification).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # annotations only: the engine imports these protocols at start-up, before numpy is needed
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


@runtime_checkable
class MapSource(Protocol):
    """Where a tile's (or a scene's) score maps and instances come from, on a grid of ``scale``-pixel cells.

    :class:`~graft_vqa.perception.tile_maps.TileMaps` serves a whole tile at full resolution (scale 1);
    :class:`~graft_vqa.scene.maps.SceneMaps` a raster of any size window by window (scale: the cell size).
    """

    scale: int  # pixels per map cell

    def score_maps(self, names: list[str]) -> np.ndarray:  # pragma: no cover - protocol
        """(len(names), ceil(H / scale), ceil(W / scale)) float32 scores."""
        ...

    def valid(self) -> np.ndarray:  # pragma: no cover - protocol
        """Bool (ceil(H / scale), ceil(W / scale)): cells holding data (not nodata)."""
        ...

    def find(self, score_map: np.ndarray, box: tuple[int, int, int, int], config: Any,
             refiner: Refiner | None, name: str | None = None) -> list[Instance]:  # pragma: no cover - protocol
        """``find``'s instances of one score map (of query ``name``) inside pixel ``box``: components,
        refinement, merging."""
        ...


@runtime_checkable
class FeatureScorer(Protocol):
    """A scorer whose maps are cosines between patch features and text embeddings (the GRAFT scorer).

    Scenes keep such a scorer's features on disk, so later questions cost a dot product, not a model
    pass. ``model_id`` names the weights (None: do not cache features on disk).
    """

    model_id: str | None  # identifies the model and weights; part of the feature cache's key
    patch_size: int  # pixels per feature cell

    def patch_grid(self, tile: Any) -> Any:  # pragma: no cover - protocol
        """(ceil(h / patch_size), ceil(w / patch_size), D) L2-normalised features of ``tile``."""
        ...

    def text_embeddings(self, texts: list[str]) -> Any:  # pragma: no cover - protocol
        """(len(texts), D) L2-normalised text embeddings."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """Image-level embeddings of tiles and texts in one space: rows L2-normalised, so a dot product is a cosine.

    ``tiles`` are :class:`graft_vqa.core.tiles.Tile` objects (whole files or chips cut from a raster).
    An embedder may also offer ``model_id: str`` (what an index records: another id is another space) and
    ``logit_scale: float`` (the softmax scale of classification; CLIP's 100 when absent).
    """

    def embed_images(self, tiles: Sequence[Any]) -> np.ndarray:  # pragma: no cover - protocol
        """(len(tiles), D) float32."""
        ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - protocol
        """(len(texts), D) float32."""
        ...
