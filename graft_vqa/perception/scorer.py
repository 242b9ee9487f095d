"""Scorers: text queries → per-pixel score maps on a tile.

A scorer is any object with ``score_maps(tile, queries) -> np.ndarray (len(queries), h, w)``,
higher meaning more likely (:class:`~graft_vqa.perception.protocols.Scorer`). Scorers that can also
score the whole image against a list of texts (``best_text_match``) offer
``score_image(tile, options) -> np.ndarray (len(options),)``.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from graft_vqa.core.lru import LRU

log = logging.getLogger(__name__)


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (Q, gh, gw) maps to (Q, h, w), float32 (no copy when already that size)."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.shape[1:] == tuple(size):
        return maps
    t = torch.from_numpy(np.ascontiguousarray(maps))[None]
    out = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)
    return out[0].numpy()


class GraftScorer:
    """The default scorer: GRAFT pixel-level features against CLIP text embeddings (cosines).

    The tile's patch-feature grid (one 512-d feature per 16-px patch) is computed once per
    ``tile.key`` and kept for ``cache_size`` tiles: in one pass at the tile's own resolution when
    both sides lie between 224 px and ``native_max`` (RSVQA's 256 and 512 px tiles), else from
    overlapping 224-px windows. Text embeddings are cached per query in a byte-bounded LRU
    (``text_cache_mb``): names a program uses once do not pile up.
    """

    def __init__(self, model: torch.nn.Module, text_encoder: Any, template: str = "raw",
                 *, overlap: int = 32, batch_size: int = 8, cache_size: int = 4, native_max: int = 640,
                 text_cache_mb: float = 1.0,
                 model_id: str | None = None) -> None:
        self.model = model.eval()
        self.model_id = model_id  # names the weights (scenes cache features on disk under it); None: no disk cache
        self.patch_size = int(getattr(getattr(model, "config", None), "patch_size", 16))  # pixels per feature
        self.text_encoder = text_encoder
        self.template = template  # prompt template name passed to the text encoder
        self.native_max = native_max  # longest side encoded in one pass (0: always sliding windows)
        self.overlap = overlap  # sliding-window overlap in pixels
        self.batch_size = batch_size  # windows per forward pass
        self.cache_size = cache_size  # tiles whose feature grid is kept
        self._grids: LRU[str, torch.Tensor] = LRU(max_items=cache_size)
        self._images: LRU[str, torch.Tensor] = LRU(max_items=cache_size)
        self.text_cache_mb = text_cache_mb  # text embeddings kept (2 KB each: 1 MB holds 512 names)
        self._texts: LRU[str, torch.Tensor] = LRU(max_bytes=int(text_cache_mb * (1 << 20)))  # text -> (512,)
        self.grid_calls = 0  # number of patch-grid computations (for tests and benchmarks)
        self.weights_id: str | None = None  # what identifies its scores (set by models.build_default_scorer)

    def patch_grid(self, tile: Any) -> torch.Tensor:
        """(gh, gw, 512) L2-normalised features of the tile, cached by ``tile.key``."""
        key = tile.key
        cached = self._grids.get(key)
        if cached is not None:
            return cached
        from graft_models.sliding import native_grid, patch_grid

        with torch.no_grad():
            if 224 <= min(tile.height, tile.width) and max(tile.height, tile.width) <= self.native_max:
                grid = native_grid(self.model, tile.rgb())
            else:
                grid = patch_grid(self.model, tile.rgb(), window=224, overlap=self.overlap,
                                  batch_size=self.batch_size)
        self.grid_calls += 1
        grid_t = torch.as_tensor(np.asarray(grid, dtype=np.float32))
        return self._grids.put(key, grid_t)

    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """(N, 512) normalised text embeddings, computed once per text (bounded LRU)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._texts]
        fresh: dict[str, torch.Tensor] = {}
        if missing:
            with torch.no_grad():
                emb = self.text_encoder.encode(missing, template=self.template)
            fresh = dict(zip(missing, torch.as_tensor(emb).float().cpu()))
        rows = [fresh[t] if t in fresh else self._texts.get(t) for t in texts]
        for text, row in zip(texts, rows):
            self._texts.put(text, row)
        return torch.stack(rows)

    def score_maps(self, tile: Any, queries: list[str]) -> np.ndarray:
        """(Q, h, w) float32 cosine scores, bilinearly resized from the patch grid to the tile."""
        if not queries:
            return np.zeros((0, tile.height, tile.width), dtype=np.float32)
        grid = self.patch_grid(tile)
        text = self.text_embeddings(list(queries))
        maps = torch.einsum("hwc,qc->qhw", grid, text).numpy()
        return resize_maps(maps, (tile.height, tile.width))

    def score_image(self, tile: Any, options: list[str]) -> np.ndarray:
        """(len(options),) cosines between the image-level GRAFT embedding and each option."""
        key = tile.key
        image = self._images.get(key)
        if image is None:
            from graft_models.preprocess import to_tensor

            device = next(self.model.parameters()).device
            with torch.no_grad():
                emb = self.model.encode_image(to_tensor(np.array(tile.rgb()), size=224).to(device))
            image = self._images.put(key, emb[0].float().cpu())
        return (self.text_embeddings(list(options)) @ image).numpy().astype(np.float32)
