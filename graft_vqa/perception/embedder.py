"""The default :class:`~graft_vqa.perception.protocols.Embedder`: image-level GRAFT + the CLIP text tower.

Chips go through GRAFT's zero-shot preprocessing (:func:`graft_models.zeroshot.encode_images`): chips
smaller than the model input are zero-padded (centred, so they keep their ground sample distance),
larger ones are resized to it.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch

from graft_models.zeroshot import encode_images
from graft_vqa.core.errors import GraftVQAError

log = logging.getLogger(__name__)


class GraftEmbedder:
    """Embeds tiles with GRAFT's image-level head and texts with the CLIP text tower (both L2-normalised).

    Args:
        model: a :class:`graft_models.GraftModel` (its ``encode_image``); None for an embedder of texts only.
        text_encoder: a :class:`graft_models.TextEncoder` (its ``encode(texts, template)``).
        template: prompt template name for texts (``"raw"``, ``"ensemble"``).
        batch_size: chips per forward pass.
        model_id: what an index records about these weights (another id: another embedding space).
    """

    def __init__(self, model: torch.nn.Module | None, text_encoder: Any, *, template: str = "raw",
                 batch_size: int = 16, model_id: str = "graft") -> None:
        self.model = model.eval() if model is not None else None
        self.text_encoder = text_encoder
        self.template = template  # prompt template of embed_texts
        self.batch_size = batch_size  # chips per forward pass
        self.model_id = model_id  # recorded by indexes; compared when they are searched
        scale = getattr(model, "logit_scale", None)
        self.logit_scale = float(scale.detach().exp()) if scale is not None else 100.0  # softmax scale

    def embed_images(self, tiles: Sequence[Any]) -> np.ndarray:
        """(len(tiles), D) float32 image-level embeddings of the tiles' RGB views."""
        if self.model is None:
            raise GraftVQAError("this embedder was built for texts only (images=False); build it with its image model")
        if not tiles:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = encode_images(self.model, (t.rgb() for t in tiles), batch_size=self.batch_size, total=len(tiles))
        return emb.numpy().astype(np.float32, copy=False)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), D) float32 text embeddings under the template."""
        with torch.no_grad():
            emb = self.text_encoder.encode(list(texts), template=self.template)
        return torch.as_tensor(emb).float().cpu().numpy()

    @property
    def dim(self) -> int:
        """Embedding size."""
        return int(self.model.config.embed_dim)
