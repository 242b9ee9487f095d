"""Multi-positive pair dataset: a satellite image with a variable number of ground photos.

A sample is one satellite image (CLIP-normalised tensor), its ground photos (raw image tensors, or
stored frozen-encoder embeddings) and, per photo, the flat index of the patch that holds it.
:func:`collate_pairs` flattens the ground side and records each photo's owner.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from graft_models.data.official import SatRecord
from graft_models.preprocess import normalize
from graft_vqa.core.errors import DatasetNotFoundError


class EmbeddingLookup(Protocol):
    """Anything that maps ground photo keys to embeddings (see graft_models.embed_ground)."""

    def get(self, keys: list[str]) -> Tensor: ...  # noqa: D102


def normalise(rgb: np.ndarray) -> Tensor:
    """uint8 H x W x 3 -> CLIP-normalised float (3, H, W)."""
    return normalize(rgb)[0]


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image as RGB, with an error that names the file when it cannot be read."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as exc:
        raise DatasetNotFoundError(f"cannot read image {path}: {exc}; check the pair data root") from None


def ground_tensor(path: str | Path, size: int = 224) -> Tensor:
    """CLIP preprocessing of a ground photo: resize the short side to ``size``, centre crop."""
    im = load_rgb(path)
    scale = size / min(im.size)
    w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
    im = im.resize((w, h), Image.BICUBIC)
    left, top = (w - size) // 2, (h - size) // 2
    return normalise(np.asarray(im.crop((left, top, left + size, top + size))))


def patch_index(dx: float, dy: float, width: int, height: int, size: int, patch: int) -> int:
    """Flat index (row * grid + col) of the patch holding a photo at offset (dx, dy) from the centre.

    The satellite image of ``width`` x ``height`` px is resized to ``size`` x ``size``.
    """
    grid = size // patch
    col = (dx + width / 2) * size / width // patch
    row = (dy + height / 2) * size / height // patch
    return int(min(max(row, 0), grid - 1)) * grid + int(min(max(col, 0), grid - 1))


class PairDataset(Dataset):
    """Satellite images with their ground photos from :class:`SatRecord` s under ``root``."""

    def __init__(self, root: str | Path, records: list[SatRecord], *, image_size: int = 224,
                 patch_size: int = 16, ground_size: int = 224,
                 embeddings: EmbeddingLookup | None = None, max_ground: int = 25) -> None:
        """``embeddings`` given: ground photos come as stored embeddings, else as image tensors."""
        if not records:
            raise DatasetNotFoundError(f"no pairs under {root}; check the split name and CSV files")
        self.root = Path(root)
        self.records = records
        self.image_size, self.patch_size, self.ground_size = image_size, patch_size, ground_size
        self.embeddings = embeddings
        self.max_ground = max_ground

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        im = load_rgb(self.root / rec.sat)
        w, h = im.size
        s = self.image_size
        sat = normalise(np.asarray(im.resize((s, s), Image.BICUBIC)))
        grounds = rec.grounds[: self.max_ground]
        offsets = rec.offsets[: self.max_ground]
        patch = torch.tensor([patch_index(dx, dy, w, h, s, self.patch_size) for dx, dy in offsets],
                             dtype=torch.long)
        if self.embeddings is not None:
            ground = self.embeddings.get(grounds).float()
        else:
            ground = torch.stack([ground_tensor(self.root / g, self.ground_size) for g in grounds])
        return {"sat": sat, "ground": ground, "patch": patch, "index": i}


@dataclass
class PairBatch:
    """A collated batch; the ground side is flattened over satellite images."""

    sat: Tensor  # (B, 3, H, W) CLIP-normalised satellite images
    ground: Tensor  # (M, D) stored embeddings or (M, 3, h, w) ground images
    owner: Tensor  # (M,) long, the satellite image (0..B-1) each ground photo belongs to
    patch: Tensor  # (M,) long, flat patch index of each ground photo in its satellite image
    index: Tensor  # (B,) long, dataset indices of the satellite images

    def to(self, device: torch.device | str) -> "PairBatch":
        """The batch on ``device``."""
        return PairBatch(*(t.to(device, non_blocking=True) for t in
                           (self.sat, self.ground, self.owner, self.patch, self.index)))


def collate_pairs(samples: list[dict]) -> PairBatch:
    """Stack satellite images and concatenate ground photos (variable counts) with owner indices."""
    counts = torch.tensor([s["ground"].shape[0] for s in samples])
    return PairBatch(
        sat=torch.stack([s["sat"] for s in samples]),
        ground=torch.cat([s["ground"] for s in samples]),
        owner=torch.repeat_interleave(torch.arange(len(samples)), counts),
        patch=torch.cat([s["patch"] for s in samples]),
        index=torch.tensor([s["index"] for s in samples], dtype=torch.long),
    )
