"""CLIP text encoder: embeddings, templates, LRU cache, weights."""
from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F

from graft_models import TextEncoder, build_text_encoder
from graft_models.text import TEMPLATES
from graft_vqa.core.errors import CheckpointError, WeightsNotFoundError


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return build_text_encoder("clip-tiny", allow_random=True, cache_size=3)


def direct(encoder: TextEncoder, texts):
    tokens = open_clip.get_tokenizer("ViT-B-16-quickgelu")(texts)
    with torch.no_grad():
        return F.normalize(encoder.tower(tokens), dim=-1)


def test_raw_template_is_the_text_as_is(encoder):
    got = encoder.encode(["parking lot", "water"])
    assert got.shape == (2, 512)
    torch.testing.assert_close(got, direct(encoder, ["parking lot", "water"]), atol=1e-5, rtol=0)
    assert not torch.allclose(got[0], got[1])


def test_ensemble_is_renormalised_mean_of_templates(encoder):
    forms = TEMPLATES["ensemble"]
    assert len(forms) > 1 and "a satellite image of {}." in forms
    expected = F.normalize(direct(encoder, [f.format("road") for f in forms]).mean(0), dim=-1)
    torch.testing.assert_close(encoder.encode(["road"], template="ensemble")[0], expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="unknown template"):
        encoder.encode(["road"], template="nope")


def test_lru_cache_skips_the_tower_and_evicts(encoder):
    calls = []
    encoder.tower.transformer.register_forward_hook(lambda *a: calls.append(1))
    first = encoder.encode(["a", "b"])
    assert len(calls) == 1
    torch.testing.assert_close(encoder.encode(["b", "a"]), first.flip(0))
    assert len(calls) == 1  # served from the cache
    encoder.encode(["a", "c", "d"])  # cache_size=3: "b" is least recently used
    assert len(calls) == 2 and encoder.cache_info() == {"size": 3, "max": 3}
    encoder.encode(["b"])
    assert len(calls) == 3


def test_weights_from_open_clip_checkpoint(tmp_path, encoder):
    sd = {f"module.{k}": v for k, v in encoder.tower.state_dict().items()}
    sd.update({"module.visual.proj": torch.zeros(4, 4), "module.logit_scale": torch.tensor(4.6)})
    torch.save({"state_dict": sd}, tmp_path / "clip.pt")
    loaded = build_text_encoder("clip-tiny", checkpoint=str(tmp_path / "clip.pt"))
    torch.testing.assert_close(loaded.encode(["forest"]), encoder.encode(["forest"]), atol=1e-6, rtol=0)


def test_no_silent_random_weights_and_wrong_files(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="allow random"):
        build_text_encoder("clip-tiny")
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not an open_clip CLIP text checkpoint"):
        build_text_encoder("clip-tiny", checkpoint=tmp_path / "x.pt")
    big = build_text_encoder("clip-tiny", allow_random=True).tower.state_dict()
    big["ln_final.weight"] = torch.ones(7)
    torch.save(big, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        build_text_encoder("clip-tiny", checkpoint=tmp_path / "bad.pt")


def test_trimmed_encoding_equals_the_full_77_token_forward(encoder):
    from graft_models.text import encode_trimmed

    tokens = encoder.tokenizer(["a", "a satellite image of a large parking lot next to a road"])
    with torch.no_grad():
        full = encoder.tower(tokens)
        trimmed = encode_trimmed(encoder.tower, tokens)
    assert tokens.argmax(dim=-1).max() < tokens.shape[1] - 10  # the trim really cuts something
    torch.testing.assert_close(trimmed, full, atol=1e-5, rtol=1e-5)
