"""The text tower reads a full open_clip CLIP ViT-B/16 file (the layout the weights registry fetches)."""
from __future__ import annotations

import open_clip
import torch
from safetensors.torch import save_file

from graft_models import build_text_encoder


def test_full_clip_vitb16_safetensors_gives_open_clip_text_features(tmp_path):
    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-16-quickgelu", pretrained=None).eval()
    path = tmp_path / "clip_vit_b16_openai.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(path))

    encoder = build_text_encoder("clip-vitb16", checkpoint=str(path))
    texts = ["building", "a satellite image of a parking lot"]
    tokens = open_clip.get_tokenizer("ViT-B-16-quickgelu")(texts)
    with torch.no_grad():
        reference = clip.encode_text(tokens, normalize=True)
    torch.testing.assert_close(encoder.encode(texts), reference, atol=1e-5, rtol=1e-5)
