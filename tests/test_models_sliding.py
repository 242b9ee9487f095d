"""Preprocessing and sliding-window patch grids."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from graft_models import build_graft
from graft_models.preprocess import CLIP_MEAN, CLIP_STD, to_tensor
from graft_models.sliding import patch_grid
from graft_vqa.core.errors import UnsupportedTileError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_graft("graft-tiny")


def random_rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def features(model, crop):
    x = transforms.Normalize(CLIP_MEAN, CLIP_STD)(transforms.ToTensor()(Image.fromarray(crop)))
    with torch.no_grad():
        return model.encode_patches(x.unsqueeze(0))[0]


def test_to_tensor_matches_clip_torchvision_pipeline():
    rgb = random_rgb(64, 64)
    clip = transforms.Compose([
        transforms.Resize((224, 224), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD),
    ])
    expected = clip(Image.fromarray(rgb)).unsqueeze(0)
    got = to_tensor(rgb)
    assert got.shape == (1, 3, 224, 224)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    grey = to_tensor(np.full((10, 10), 255, np.uint8), size=None)
    torch.testing.assert_close(grey[0, :, 0, 0], (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD))
    with pytest.raises(UnsupportedTileError, match="uint8"):
        to_tensor(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(UnsupportedTileError, match="H x W x 3"):
        to_tensor(np.zeros((8, 8, 4), np.uint8))


def test_single_window_equals_direct_encoding(model):
    rgb = random_rgb(224, 224, 1)
    grid = patch_grid(model, rgb)
    assert grid.shape == (14, 14, 512) and grid.dtype == np.float32
    np.testing.assert_allclose(grid, features(model, rgb).numpy(), atol=1e-5)


def test_overlap_is_averaged_then_renormalised(model):
    rgb = random_rgb(224, 320, 2)  # two windows across: x = 0 and x = 96 (6 patches), overlap 128 px
    grid = patch_grid(model, rgb, overlap=128)
    left, right = features(model, rgb[:, :224]), features(model, rgb[:, 96:])
    assert grid.shape == (14, 20, 512)
    np.testing.assert_allclose(grid[:, :6], left[:, :6].numpy(), atol=1e-5)
    np.testing.assert_allclose(grid[:, 14:], right[:, 8:].numpy(), atol=1e-5)
    blended = F.normalize(left[:, 6:] + right[:, :8], dim=-1)
    np.testing.assert_allclose(grid[:, 6:14], blended.numpy(), atol=1e-5)


def test_edges_padded_and_batching_does_not_change_result(model):
    rgb = random_rgb(250, 470, 3)  # not multiples of 16: ceil(250/16)=16, ceil(470/16)=30
    batched = patch_grid(model, rgb, overlap=64, batch_size=8)
    single = patch_grid(model, rgb, overlap=64, batch_size=1)
    assert batched.shape == (16, 30, 512)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    small = patch_grid(model, random_rgb(40, 50, 4))  # smaller than a window: padded up to 224
    assert small.shape == (3, 4, 512)


def test_real_tile_and_bad_arguments(model):
    with rasterio.open(DATA / "tiles" / "neon_osbs_029_10cm.tif") as src:
        rgb = np.moveaxis(src.read([1, 2, 3]), 0, -1)
    grid = patch_grid(model, rgb, overlap=32)
    assert grid.shape == (25, 25, 512) and np.isfinite(grid).all()
    with pytest.raises(ValueError, match="multiples of 16"):
        patch_grid(model, rgb, overlap=20)
