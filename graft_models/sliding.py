"""Sliding-window patch features for tiles larger than the model's 224 px window.

The tile is cut into ``window x window`` crops that overlap by ``overlap`` pixels (both
multiples of the patch size, so every crop's patches line up with the tile's 16 px grid).
Crops are encoded in batches; a patch covered by several crops gets the mean of their features,
renormalised to unit length.

Output shape: ``(ceil(H / 16), ceil(W / 16), D)``, one feature per 16 px patch *including* a
partial last row/column. The tile is edge-padded (border pixels replicated) up to a multiple of
16 and to at least one window before cutting, so the last patch sees the image's own border
pixels rather than black.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from graft_models.preprocess import check_rgb, normalize_batch

logger = logging.getLogger(__name__)

PROGRESS_MIN_WINDOWS = 16  # show a progress bar from this many windows on


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets covering ``[0, length)``; the last window is flush with the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def pad_to_grid(rgb: np.ndarray, patch: int, window: int) -> np.ndarray:
    """Edge-pad ``H x W x 3`` to multiples of ``patch`` and at least ``window`` on each side."""
    h, w = rgb.shape[:2]
    hp = max(window, math.ceil(h / patch) * patch)
    wp = max(window, math.ceil(w / patch) * patch)
    if (hp, wp) == (h, w):
        return rgb
    return np.pad(rgb, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")


def _to_batch(crops: list[np.ndarray], param: torch.Tensor) -> torch.Tensor:
    """CLIP-normalised ``(B, 3, window, window)`` tensor from uint8 crops, on ``param``'s device/dtype."""
    return normalize_batch(crops, param.device, param.dtype)


@torch.inference_mode()
def patch_grid(model: torch.nn.Module, rgb_uint8: np.ndarray, window: int = 224, overlap: int = 32,
               batch_size: int = 8, progress: bool | None = None) -> np.ndarray:
    """One L2-normalised feature per 16 px patch of the whole tile: ``float32 (ceil(H/16), ceil(W/16), D)``.

    ``model`` is a :class:`~graft_models.model.GraftModel` (anything with ``encode_patches`` and
    ``config.patch_size``). ``progress=None`` shows a bar from ``PROGRESS_MIN_WINDOWS`` windows.
    """
    rgb = check_rgb(rgb_uint8)
    patch = model.config.patch_size
    if window % patch or overlap % patch or not 0 <= overlap < window:
        raise ValueError(f"window ({window}) and overlap ({overlap}) must be multiples of {patch}, overlap < window")
    h, w = rgb.shape[:2]
    padded = pad_to_grid(rgb, patch, window)
    stride = window - overlap
    boxes = [(y, x) for y in window_starts(padded.shape[0], window, stride)
             for x in window_starts(padded.shape[1], window, stride)]
    param = next(model.parameters())
    device = param.device
    gh, gw, g = padded.shape[0] // patch, padded.shape[1] // patch, window // patch
    total = None
    counts = torch.zeros(gh, gw, 1, device=device)
    show = len(boxes) >= PROGRESS_MIN_WINDOWS if progress is None else progress
    for i in tqdm(range(0, len(boxes), batch_size), desc="GRAFT windows", disable=not show,
                  unit="batch"):
        chunk = boxes[i:i + batch_size]
        feats = model.encode_patches(_to_batch([padded[y:y + window, x:x + window] for y, x in chunk], param))
        if total is None:
            total = torch.zeros(gh, gw, feats.shape[-1], device=device)
        feats = feats.float()
        for (y, x), f in zip(chunk, feats):
            total[y // patch:y // patch + g, x // patch:x // patch + g] += f
            counts[y // patch:y // patch + g, x // patch:x // patch + g] += 1
    grid = F.normalize(total / counts, dim=-1)
    logger.debug("patch grid %dx%d from %d windows", gh, gw, len(boxes))
    return grid[: math.ceil(h / patch), : math.ceil(w / patch)].float().cpu().numpy()


@torch.inference_mode()
def native_grid(model: torch.nn.Module, rgb_uint8: np.ndarray) -> np.ndarray:
    """The tile encoded in one pass at its own resolution: ``float32 (ceil(H/16), ceil(W/16), D)``.

    The tile is edge-padded to multiples of the patch size only, and the model interpolates its
    position embedding to the tile's grid (as GRAFT features of RSVQA-HR 512 px tiles are taken).
    Cheaper than sliding windows for tiles up to a few hundred pixels; the cost grows with the
    square of the number of patches, so large tiles should use :func:`patch_grid`.
    """
    rgb = check_rgb(rgb_uint8)
    patch = model.config.patch_size
    h, w = rgb.shape[:2]
    padded = pad_to_grid(rgb, patch, patch)
    feats = model.encode_patches(_to_batch([padded], next(model.parameters())))  # (1, gh, gw, D)
    return feats[0, : math.ceil(h / patch), : math.ceil(w / patch)].float().cpu().numpy()
