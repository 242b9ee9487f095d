"""SAM refinement of ``find``'s components: one image embedding per tile, one batched decoder call.

The logic follows ``segment_anything.SamPredictor`` (resize the longest side to 1024, normalise,
encode once; transform the prompts into the resized frame; decode; upscale the masks to the tile)
but keeps the embedding in a per-tile cache and decodes every component's prompt in one batch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from graft_vqa.core.errors import CheckpointError, WeightsNotFoundError
from graft_vqa.core.lru import LRU
from graft_vqa.perception.instances import Instance, mask_box

log = logging.getLogger(__name__)

SAM_NAMES = ("vit_b", "vit_l", "vit_h")


def build_sam(name: str = "vit_b", checkpoint: str | None = None) -> torch.nn.Module:
    """Build a SAM model from segment-anything's registry (``vit_b``, ``vit_l``, ``vit_h``).

    ``checkpoint=None`` gives random weights (tests, benchmarks); otherwise the state dict is read
    with ``torch.load(map_location="cpu", weights_only=True)``.
    """
    from pathlib import Path

    from segment_anything import sam_model_registry

    if name not in SAM_NAMES:
        raise CheckpointError(f"unknown SAM model {name!r}: use one of {', '.join(SAM_NAMES)}")
    sam = sam_model_registry[name](checkpoint=None)
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise WeightsNotFoundError(f"SAM checkpoint {path} not found: download sam_{name} from "
                                       "https://github.com/facebookresearch/segment-anything and pass its path")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            sam.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001 - report any unreadable file the same way
            raise CheckpointError(f"cannot load SAM {name} weights from {path}: {exc}. "
                                  f"Is it the official sam_{name} checkpoint?") from exc
    return sam.eval()


@dataclass
class _Embedding:
    features: torch.Tensor  # (1, 256, 64, 64) image embedding
    input_size: tuple[int, int]  # (h, w) of the resized image before padding
    original_size: tuple[int, int]  # (H, W) of the tile


@dataclass
class SamMasks:
    """Decoder output for N prompts at the tile's resolution."""

    masks: np.ndarray  # bool (N, M, H, W); M = 3 with multimask output
    iou_predictions: np.ndarray  # float (N, M), SAM's own quality estimate


class SamRefiner:
    """Refines components with SAM; embeddings cached per ``tile.key`` (LRU, ``cache_size`` tiles)."""

    def __init__(self, sam: torch.nn.Module, cache_size: int = 4, max_batch: int | None = None) -> None:
        from segment_anything.utils.transforms import ResizeLongestSide

        self.sam = sam.eval()
        self.max_batch = max_batch  # prompts per decoder call; None: all of a tile's prompts in one call
        self.transform = ResizeLongestSide(sam.image_encoder.img_size)
        self.cache_size = cache_size  # tiles whose embedding is kept
        self._cache: LRU[str, _Embedding] = LRU(max_items=cache_size)
        self.encoder_calls = 0  # number of image-encoder runs (for tests and benchmarks)

    @property
    def device(self) -> torch.device:
        return next(self.sam.parameters()).device

    @torch.no_grad()
    def embed(self, tile: Any) -> _Embedding:
        """The tile's SAM image embedding, computed once per ``tile.key``."""
        key = tile.key
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        rgb = np.ascontiguousarray(tile.rgb())
        resized = self.transform.apply_image(rgb)
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1)[None].float()
        features = self.sam.image_encoder(self.sam.preprocess(x))
        self.encoder_calls += 1
        emb = _Embedding(features, tuple(resized.shape[:2]), tuple(rgb.shape[:2]))
        return self._cache.put(key, emb)

    def predict(self, tile: Any, points: np.ndarray, boxes: np.ndarray | None = None,
                multimask: bool = True) -> SamMasks:
        """Decode N point prompts in one batch (in chunks of ``max_batch`` when set).

        ``points``: (N, 2) as (col, row) pixel coordinates of the tile; ``boxes``: optional (N, 4)
        as (left, top, right, bottom). Every point is a foreground click.
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        step = self.max_batch or max(len(points), 1)
        parts = [self._decode(tile, points[i:i + step], None if boxes is None else np.asarray(boxes)[i:i + step],
                              multimask) for i in range(0, len(points), step)]
        return SamMasks(np.concatenate([p.masks for p in parts]),
                        np.concatenate([p.iou_predictions for p in parts]))

    def candidates(self, tile: Any, points: np.ndarray,
                   boxes: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per prompt, in order: its multimask candidates as bool (M, H, W) at the tile's size and
        SAM's predicted IoUs (M,). Decoded in chunks of ``max_batch`` but upscaled one prompt at a
        time, so memory stays at one prompt's masks however many prompts there are."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        step = self.max_batch or max(len(points), 1)
        for i in range(0, len(points), step):
            logits, ious, emb = self._decode_low_res(
                tile, points[i:i + step], None if boxes is None else np.asarray(boxes)[i:i + step], True)
            for k in range(logits.shape[0]):
                yield self._upscale(logits[k:k + 1], emb)[0], ious[k]

    def _decode(self, tile: Any, points: np.ndarray, boxes: np.ndarray | None, multimask: bool) -> SamMasks:
        logits, ious, emb = self._decode_low_res(tile, points, boxes, multimask)
        return SamMasks(self._upscale(logits, emb), ious)

    @torch.no_grad()
    def _decode_low_res(self, tile: Any, points: np.ndarray, boxes: np.ndarray | None,
                        multimask: bool) -> tuple[torch.Tensor, np.ndarray, _Embedding]:
        """Low-resolution logits (N, M, 256, 256), predicted IoUs (N, M) and the tile's embedding."""
        emb = self.embed(tile)
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 1, 2) + 0.5  # pixel centres
        coords = torch.as_tensor(self.transform.apply_coords(pts, emb.original_size),
                                 dtype=torch.float32, device=self.device)
        labels = torch.ones(coords.shape[:2], dtype=torch.int64, device=self.device)
        box_t = None
        if boxes is not None:
            box_t = torch.as_tensor(self.transform.apply_boxes(np.asarray(boxes, dtype=np.float64),
                                                               emb.original_size),
                                    dtype=torch.float32, device=self.device)
        sparse, dense = self.sam.prompt_encoder(points=(coords, labels), boxes=box_t, masks=None)
        low_res, iou_pred = self.sam.mask_decoder(
            image_embeddings=emb.features, image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask)
        return low_res, iou_pred.float().cpu().numpy(), emb

    def _upscale(self, low_res: torch.Tensor, emb: _Embedding) -> np.ndarray:
        """Low-resolution logits (N, M, 256, 256) → bool masks at the tile's size.

        SAM's own ``postprocess_masks`` upsamples to 1024², crops the padding and resamples to the
        image; cropping the padding on the 256² grid and resampling once is the same geometry at a
        fraction of the memory (N × 3 × 1024² floats add up to gigabytes for many prompts).
        """
        size = self.sam.image_encoder.img_size
        scale = low_res.shape[-1] / size
        h = max(1, round(emb.input_size[0] * scale))
        w = max(1, round(emb.input_size[1] * scale))
        cropped = low_res[..., :h, :w]
        out = np.empty((low_res.shape[0], low_res.shape[1], *emb.original_size), dtype=bool)
        for k in range(low_res.shape[0]):  # one prompt at a time: M x H x W floats, not N x M x H x W
            masks = F.interpolate(cropped[k:k + 1], size=emb.original_size, mode="bilinear", align_corners=False)
            out[k] = (masks[0] > self.sam.mask_threshold).cpu().numpy()
        return out

    def refine(self, tile: Any, instances: list[Instance], *, box_prompt: bool = False,
               valid: np.ndarray | None = None) -> list[Instance]:
        """Replace each component's mask by the SAM mask (of the multimask output) with the best IoU
        against it, ties broken by SAM's predicted IoU. A component that no SAM mask overlaps keeps
        its own mask (``refined=False``). ``valid`` (bool H×W) clips the SAM masks. Refined masks are
        full-resolution crops over their own boxes."""
        if not instances:
            return []
        points = np.array([[inst.best_pixel[1], inst.best_pixel[0]] for inst in instances])
        boxes = np.array([inst.box for inst in instances]) if box_prompt else None
        refined: list[Instance] = []
        shape = (tile.height, tile.width)
        for inst, (masks, predicted) in zip(instances, self.candidates(tile, points, boxes)):
            candidates = masks if valid is None else masks & valid
            own = inst.full_mask(shape)
            inter = np.logical_and(candidates, own).sum(axis=(1, 2))
            union = np.logical_or(candidates, own).sum(axis=(1, 2))
            ious = inter / np.maximum(union, 1)
            best = max(range(len(ious)), key=lambda m: (ious[m], predicted[m]))
            if ious[best] <= 0:
                refined.append(inst)
                continue
            mask = candidates[best]
            box = mask_box(mask)
            left, top, right, bottom = box
            refined.append(replace(inst, crop=mask[top:bottom, left:right].copy(), box=box, scale=1, refined=True,
                                   sam_iou=float(predicted[best])))
        log.debug("SAM refined %d of %d components", sum(r.refined for r in refined), len(refined))
        return refined
