"""Parity of GraftModel with the reference (Hugging Face CLIP vision + projector) and with open_clip."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from graft_models import GraftConfig, GraftModel, build_graft, load_graft

TINY_HF = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2)
VITB16_HF = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)


def randomize_(module: nn.Module, seed: int) -> nn.Module:
    """Perturb every parameter (LayerNorms included) so a mis-mapped key cannot go unnoticed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif p.ndim <= 1 or "embedding" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    return module


def make_reference(width_cfg: dict, seed: int = 0, patch: int = 16) -> tuple[nn.Module, nn.Module]:
    """A random-weight HF CLIPVisionModelWithProjection and GRAFT's projector."""
    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(image_size=224, patch_size=patch, projection_dim=512, hidden_act="quick_gelu",
                           **width_cfg)
    hf = randomize_(CLIPVisionModelWithProjection(cfg), seed).eval()
    width = width_cfg["hidden_size"]
    projector = randomize_(nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 512, bias=False)), seed + 1)
    return hf, projector.eval()


def official_state_dict(hf: nn.Module, projector: nn.Module | None) -> dict[str, torch.Tensor]:
    """The official GRAFT Lightning ``state_dict`` layout (with position_ids, as older HF saved it)."""
    sd = {f"satellite_image_backbone.{k}": v.clone() for k, v in hf.state_dict().items()}
    n_pos = hf.vision_model.embeddings.position_embedding.weight.shape[0]
    sd["satellite_image_backbone.vision_model.embeddings.position_ids"] = torch.arange(n_pos).unsqueeze(0)
    if projector is not None:
        sd.update({f"projector.{k}": v.clone() for k, v in projector.state_dict().items()})
    sd["logit_scale"] = torch.tensor(2.6592)
    return sd


def save_official(path: Path, hf: nn.Module, projector: nn.Module | None, **extra) -> Path:
    """Write an official-layout Lightning checkpoint dict."""
    torch.save({"state_dict": official_state_dict(hf, projector), "epoch": 3, "global_step": 1200,
                "pytorch-lightning_version": "2.1.0", **extra}, path)
    return path


@torch.no_grad()
def reference_outputs(hf: nn.Module, projector: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The GRAFT reference computation, written from the official description."""
    out = hf(pixel_values=x)  # .last_hidden_state is hf.vision_model(x)'s, before post_layernorm
    image = F.normalize(out.image_embeds, dim=-1)
    hidden = out.last_hidden_state
    g = x.shape[-1] // hf.config.patch_size
    patches = F.normalize(projector(hidden[:, 1:]), dim=-1).reshape(x.shape[0], g, g, -1)
    return image, patches


def check_parity(tmp_path: Path, hf: nn.Module, projector: nn.Module, batch: int = 2) -> GraftModel:
    path = save_official(tmp_path / "graft_patch.ckpt", hf, projector)
    model = load_graft(path)
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(7))
    image_ref, patches_ref = reference_outputs(hf, projector, x)
    with torch.no_grad():
        image, patches = model.encode_image(x), model.encode_patches(x)
    assert image.shape == (batch, 512) and patches.shape == (batch, 14, 14, 512)
    torch.testing.assert_close(image, image_ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(patches, patches_ref, atol=1e-4, rtol=0)
    return model


@pytest.fixture(scope="module")
def vitb16_reference():
    return make_reference(VITB16_HF, seed=1)


def test_parity_tiny_official_checkpoint(tmp_path):
    hf, projector = make_reference(TINY_HF)
    model = check_parity(tmp_path, hf, projector)
    assert model.config.width == 128 and model.config.layers == 2


@pytest.mark.slow
def test_parity_vitb16_official_checkpoint(tmp_path, vitb16_reference):
    model = check_parity(tmp_path, *vitb16_reference, batch=1)
    assert model.config == GraftConfig()  # recognised as the registered graft-vitb16 config


def test_explicit_forward_equals_open_clip_forward():
    model = randomize_(build_graft("graft-tiny"), seed=3).eval()
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        expected = F.normalize(model.visual(x), dim=-1)  # open_clip's own VisionTransformer.forward
        torch.testing.assert_close(model.encode_image(x), expected, atol=1e-5, rtol=0)


def test_position_interpolation_matches_open_clip_resize():
    from open_clip.model import resize_pos_embed

    model = randomize_(build_graft("graft-tiny"), seed=4).eval()
    big = GraftModel(GraftConfig(name="graft-tiny-512", width=128, layers=2, image_size=512)).eval()
    sd = copy.deepcopy(model.state_dict())
    resize_pos_embed(sd, big)  # open_clip's loader-time bicubic resize of the position grid
    big.load_state_dict(sd)
    x = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        patches = model.encode_patches(x)
        assert patches.shape == (1, 32, 32, 512)
        torch.testing.assert_close(patches, big.encode_patches(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_image(x), big.encode_image(x), atol=1e-5, rtol=0)


def test_outputs_are_unit_norm_and_forward_gives_both_heads():
    model = build_graft("graft-tiny")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        image, patches = model(x)
    torch.testing.assert_close(image.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(patches.norm(dim=-1), torch.ones(2, 14, 14))
    with pytest.raises(ValueError, match="3, H, W"):
        model.encode_image(torch.randn(2, 1, 224, 224))
