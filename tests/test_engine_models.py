"""The engine's default scorer: GRAFT checkpoint architecture, text tower weights, untrained warnings."""
from __future__ import annotations

import pytest
import torch

import graft_models
from graft_models import build_graft, save_graft
from graft_vqa import EngineConfig, weights
from graft_vqa.core.errors import CheckpointError, WeightsNotFoundError
from graft_vqa.models import build_default_scorer


@pytest.fixture
def tiny_ckpt(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFT_VQA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GRAFT_VQA_WEIGHTS", raising=False)
    torch.manual_seed(0)
    path = tmp_path / "tiny.ckpt"
    save_graft(build_graft("graft-tiny"), path)
    return path


def test_checkpoint_of_another_architecture_is_an_error(tiny_ckpt):
    config = EngineConfig(graft_model="graft-vitb16", graft_checkpoint=str(tiny_ckpt), text_model="clip-tiny",
                          allow_untrained=True)
    with pytest.raises(CheckpointError, match="graft-vitb16"):
        build_default_scorer(config)


def test_tiny_text_tower_never_looks_for_clip_vitb16_weights(tiny_ckpt):
    config = EngineConfig(graft_model="graft-tiny", graft_checkpoint=str(tiny_ckpt), text_model="clip-tiny")
    with pytest.raises(WeightsNotFoundError, match="clip-tiny") as info:
        build_default_scorer(config)
    assert "clip_vit_b16" not in str(info.value)
    scorer, warnings = build_default_scorer(EngineConfig(graft_model="graft-tiny", graft_checkpoint=str(tiny_ckpt),
                                                         text_model="clip-tiny", allow_untrained=True))
    assert len(warnings) == 1 and "clip-tiny" in warnings[0] and "random weights" in warnings[0]
    assert "clip_vit_b16" not in warnings[0]


def test_trust_checkpoint_reaches_the_text_encoder(tiny_ckpt, monkeypatch):
    seen = []
    real = graft_models.build_text_encoder

    def recording(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(kwargs.get("trust_checkpoint"))
        return real(*args, **kwargs)

    monkeypatch.setattr(graft_models, "build_text_encoder", recording)
    build_default_scorer(EngineConfig(graft_model="graft-tiny", graft_checkpoint=str(tiny_ckpt),
                                      text_model="clip-tiny", allow_untrained=True, trust_checkpoint=True))
    assert seen == [True]


def test_untrained_warning_carries_the_hint_but_not_the_allow_untrained_advice(tiny_ckpt):
    _, warnings = build_default_scorer(EngineConfig(graft_model="graft-tiny", text_model="clip-tiny",
                                                    allow_untrained=True))
    graft = [w for w in warnings if w.startswith("GRAFT")]
    assert len(graft) == 1 and weights.missing_hint("graft-naip-patch") in graft[0]
    assert "graft_naip_patch.ckpt" in graft[0] and "--allow-untrained" not in graft[0]
