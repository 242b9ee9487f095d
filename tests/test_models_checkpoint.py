"""Checkpoint round trips and wrong-file errors for load_graft / save_graft / export_official."""
from __future__ import annotations

import argparse

import pytest
import torch
from safetensors.torch import save_file

from graft_models import build_graft, export_official, load_graft, save_graft
from graft_vqa.core.errors import CheckpointError, WeightsError, WeightsNotFoundError
from tests.test_models_parity import (
    TINY_HF, make_reference, official_state_dict, randomize_, reference_outputs, save_official,
)


@pytest.fixture(scope="module")
def tiny_reference():
    return make_reference(TINY_HF, seed=11)


@pytest.fixture
def tiny_model():
    return randomize_(build_graft("graft-tiny"), seed=5).eval()


def outputs(model, x):
    with torch.no_grad():
        return model.encode_image(x), model.encode_patches(x)


def assert_same_outputs(a, b):
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    for got, want in zip(outputs(a, x), outputs(b, x)):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_own_format_round_trip(tmp_path, tiny_model, suffix):
    path = save_graft(tiny_model, tmp_path / f"graft{suffix}", step=42)
    loaded = load_graft(path)
    assert loaded.config == tiny_model.config
    assert_same_outputs(loaded, tiny_model)
    if suffix == ".pt":
        raw = torch.load(path, weights_only=True)
        assert raw["format"] == "graft-vqa/1" and raw["step"] == 42 and raw["config"]["width"] == 128


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_export_official_round_trip(tmp_path, tiny_model, suffix):
    path = export_official(tiny_model, tmp_path / f"official{suffix}")
    assert_same_outputs(load_graft(path), tiny_model)


def test_export_official_has_exact_reference_layout(tmp_path, tiny_reference):
    hf, projector = tiny_reference
    model = load_graft(save_official(tmp_path / "in.ckpt", hf, projector))
    exported = torch.load(export_official(model, tmp_path / "out.ckpt"), weights_only=True)["state_dict"]
    expected = official_state_dict(hf, projector)
    assert set(exported) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(exported[key].to(value.dtype), value, atol=0, rtol=0, msg=key)


def test_ddp_module_prefix_and_safetensors_official(tmp_path, tiny_reference):
    hf, projector = tiny_reference
    sd = {f"module.{k}": v for k, v in official_state_dict(hf, projector).items()}
    path = tmp_path / "official.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    x = torch.randn(1, 3, 224, 224)
    image_ref, patches_ref = reference_outputs(hf, projector, x)
    image, patches = outputs(load_graft(path), x)
    torch.testing.assert_close(image, image_ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(patches, patches_ref, atol=1e-4, rtol=0)


def test_pickled_hyper_parameters_need_explicit_trust(tmp_path, tiny_reference):
    path = save_official(tmp_path / "lightning.ckpt", *tiny_reference,
                         hyper_parameters=argparse.Namespace(lr=1e-5, batch_size=64))
    with pytest.raises(CheckpointError, match=r"argparse\.Namespace.*trust_checkpoint=True"):
        load_graft(path)
    assert load_graft(path, trust_checkpoint=True).config.width == 128


def test_image_level_checkpoint_without_projector(tmp_path, tiny_reference):
    hf, _ = tiny_reference
    model = load_graft(save_official(tmp_path / "graft_naip.ckpt", hf, None))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert model.encode_image(x).shape == (1, 512)
        with pytest.raises(WeightsError, match="pixel-level head"):
            model.encode_patches(x)


def test_sam_checkpoint_is_named(tmp_path):
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    sam = Sam(
        ImageEncoderViT(img_size=64, patch_size=16, embed_dim=32, depth=1, num_heads=2, out_chans=16),
        PromptEncoder(embed_dim=16, image_embedding_size=(4, 4), input_image_size=(64, 64), mask_in_chans=4),
        MaskDecoder(transformer_dim=16, transformer=TwoWayTransformer(depth=1, embedding_dim=16, mlp_dim=32,
                                                                      num_heads=2),
                    iou_head_depth=1, iou_head_hidden_dim=16),
    )
    torch.save(sam.state_dict(), tmp_path / "sam_vit_b_01ec64.pth")
    with pytest.raises(CheckpointError, match="SAM"):
        load_graft(tmp_path / "sam_vit_b_01ec64.pth")


def test_truncated_file(tmp_path, tiny_model):
    path = export_official(tiny_model, tmp_path / "graft.ckpt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        load_graft(path)
    (tmp_path / "notes.ckpt").write_text("this is not a checkpoint")
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        load_graft(tmp_path / "notes.ckpt")


def test_vit_large_is_refused(tmp_path):
    hf, projector = make_reference(dict(hidden_size=1024, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=16), patch=14)
    with pytest.raises(CheckpointError, match="width 1024.*ViT-L.*ViT-B/16"):
        load_graft(save_official(tmp_path / "vitl.ckpt", hf, projector))


def test_unexpected_and_missing_keys_are_named(tmp_path, tiny_reference):
    sd = official_state_dict(*tiny_reference)
    sd["satellite_image_backbone.vision_model.extra_head.weight"] = torch.zeros(3)
    torch.save({"state_dict": sd}, tmp_path / "extra.ckpt")
    with pytest.raises(CheckpointError, match="extra_head"):
        load_graft(tmp_path / "extra.ckpt")
    sd = official_state_dict(*tiny_reference)
    del sd["satellite_image_backbone.vision_model.post_layernorm.bias"]
    torch.save({"state_dict": sd}, tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointError, match="ln_post.bias"):
        load_graft(tmp_path / "missing.ckpt")


def test_architecture_mismatch_and_missing_file(tmp_path, tiny_model):
    path = save_graft(tiny_model, tmp_path / "tiny.pt")
    with pytest.raises(CheckpointError, match="graft-vitb16"):
        build_graft("graft-vitb16", checkpoint=str(path))
    assert build_graft("graft-tiny", checkpoint=str(path)).config.width == 128
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_graft(tmp_path / "nowhere.ckpt")
