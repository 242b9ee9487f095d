"""GraftScorer end to end: tiny random GRAFT + tiny text tower, and once with full ViT-B/16 weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from graft_models import build_graft, build_text_encoder
from graft_models.preprocess import to_tensor
from graft_models.sliding import patch_grid
from graft_vqa.config import FindConfig
from graft_vqa.image_patch import ImagePatch, PatchContext
from graft_vqa.perception.scorer import GraftScorer
from graft_vqa.core.tiles import load_tile


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_graft("graft-tiny").eval(), build_text_encoder("clip-tiny", allow_random=True)


def test_tiny_scorer_maps_cache_and_find(shared_data, tiny):
    model, text = tiny
    tile = load_tile(shared_data / "tiles" / "neon_osbs_029_10cm.tif")  # 400 x 400: 25 x 25 patches
    scorer = GraftScorer(model, text, native_max=0)  # always sliding windows
    maps = scorer.score_maps(tile, ["tree", "road"])
    assert maps.shape == (2, 400, 400) and maps.dtype == np.float32 and np.isfinite(maps).all()
    grid = patch_grid(model, tile.rgb(), window=224, overlap=32)
    emb = text.encode(["tree", "road"]).float().numpy()
    corner = grid[0, 0] @ emb.T  # bilinear upsampling keeps the corner cells exactly
    last = grid[-1, -1] @ emb.T
    np.testing.assert_allclose(maps[:, 0, 0], corner, atol=1e-5)
    np.testing.assert_allclose(maps[:, -1, -1], last, atol=1e-5)
    assert np.abs(maps).max() <= 1.0 + 1e-5  # cosines
    scorer.score_maps(tile, ["water"])
    assert scorer.grid_calls == 1  # the feature grid is computed once per tile
    image = scorer.score_image(tile, ["forest", "city"])
    with torch.no_grad():
        img = model.encode_image(to_tensor(tile.rgb()))[0].numpy()
    np.testing.assert_allclose(image, text.encode(["forest", "city"]).float().numpy() @ img, atol=1e-5)

    config = FindConfig(threshold_mode="relative", relative_threshold=0.8, refine="none", min_pixels=1)
    root = ImagePatch(tile, context=PatchContext(tile=tile, scorer=scorer, config=config))
    found = root.find("tree")
    assert found and found[0].score == pytest.approx(float(maps[0][tile.valid_mask()].max()), abs=1e-6)
    assert root.best_text_match(["forest", "city"]) == ["forest", "city"][int(np.argmax(image))]


def test_sliding_windows_on_a_non_square_tile(shared_data, tiny):
    model, text = tiny
    tile = load_tile(shared_data / "tiles" / "rgbn_5m_utm18n.tif")  # 515 x 403: several windows
    maps = GraftScorer(model, text, native_max=0).score_maps(tile, ["field"])
    assert maps.shape == (1, 403, 515) and np.isfinite(maps).all()


def test_mid_size_tiles_are_encoded_natively_in_one_pass(shared_data, tiny):
    model, text = tiny
    tile = load_tile(shared_data / "rsvqa_lr_sample" / "Images_LR" / "0.tif", gsd_m=10.0)  # 256 x 256
    passes = []
    hook = model.pixel_head.register_forward_hook(lambda module, inputs, out: passes.append(out.shape))
    try:
        grid = GraftScorer(model, text).patch_grid(tile)
    finally:
        hook.remove()
    assert len(passes) == 1 and grid.shape == (16, 16, 512)  # one forward, 16 px patches
    x = torch.from_numpy(np.array(tile.rgb())).permute(2, 0, 1)[None].float() / 255.0
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    with torch.no_grad():
        direct = model.encode_patches((x - mean) / std)[0]
    torch.testing.assert_close(grid, direct, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_full_vitb16_random_weights(shared_data, tiny):
    _, text = tiny
    torch.manual_seed(0)
    model = build_graft("graft-vitb16").eval()
    full = load_tile(shared_data / "tiles" / "neon_osbs_029_10cm.tif")
    tile = full.crop_window(0, 0, 224, 224)  # one 224 px window keeps the CPU test short
    scorer = GraftScorer(model, text)
    maps = scorer.score_maps(tile, ["tree"])
    assert maps.shape == (1, 224, 224) and np.isfinite(maps).all()
    assert scorer.patch_grid(tile).shape == (14, 14, 512)
    assert scorer.score_image(tile, ["a", "b"]).shape == (2,)
