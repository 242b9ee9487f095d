"""Image preprocessing as the official GRAFT code does it: bicubic resize to 224, CLIP mean/std."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from graft_vqa.core.errors import UnsupportedTileError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's RGB mean (0-1 scale)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)  # OpenAI CLIP's RGB std (0-1 scale)


def check_rgb(rgb: np.ndarray) -> np.ndarray:
    """Validate an ``H x W x 3`` uint8 array (``H x W`` grey is stacked to three channels)."""
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise UnsupportedTileError(f"expected an H x W x 3 RGB array, got shape {rgb.shape}; use Tile.rgb()")
    if rgb.dtype != np.uint8:
        raise UnsupportedTileError(f"expected uint8 RGB, got {rgb.dtype}; use Tile.rgb() to stretch to uint8")
    return rgb


def normalize_batch(rgbs: list[np.ndarray], device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(B, 3, H, W)`` CLIP-normalised tensor on ``device`` from equally sized uint8 RGB arrays."""
    batch = np.stack([check_rgb(rgb) for rgb in rgbs])  # (B, H, W, 3), a fresh writable copy
    x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).to(dtype)


def normalize(rgb: np.ndarray) -> torch.Tensor:
    """``(1, 3, H, W)`` float tensor, CLIP-normalised, without resizing."""
    return normalize_batch([rgb])


def to_tensor(rgb: np.ndarray, size: int | None = 224) -> torch.Tensor:
    """``(1, 3, size, size)`` model input from an ``H x W x 3`` uint8 array.

    Resizes straight to ``size x size`` with PIL bicubic (CLIP's interpolation; square tiles
    keep their content, non-square ones are stretched, as the official GRAFT preprocessing
    does), then applies CLIP's mean and std. ``size=None`` keeps the native size.
    """
    rgb = check_rgb(rgb)
    if size is not None and rgb.shape[:2] != (size, size):
        rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC))
    return normalize(rgb)
