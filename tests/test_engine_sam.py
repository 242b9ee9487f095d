"""The engine finds SAM weights through the registry and builds the refiner from them."""
from __future__ import annotations

import torch

from tests.synthetic import RectScorer
from graft_vqa import Engine, EngineConfig
from graft_vqa.perception.sam import SamRefiner, build_sam


def test_sam_weights_in_the_weights_folder_are_used(tmp_path, monkeypatch):
    torch.manual_seed(0)
    sam = build_sam("vit_b")
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(sam.state_dict(), folder / "sam_vit_b_01ec64.pth")
    monkeypatch.setenv("GRAFT_VQA_WEIGHTS", str(folder))

    engine = Engine(scorer=RectScorer({}), config=EngineConfig(sam_model="vit_b"))
    refiner = engine.refiner
    assert isinstance(refiner, SamRefiner)
    assert refiner.max_batch == 4  # CPU: chunks of prompts (see graft_vqa/models.py)
    loaded = refiner.sam.state_dict()
    for key in ("image_encoder.patch_embed.proj.weight", "mask_decoder.iou_prediction_head.layers.0.weight"):
        torch.testing.assert_close(loaded[key], sam.state_dict()[key])
    assert not any("SAM" in w for w in engine.warnings)
