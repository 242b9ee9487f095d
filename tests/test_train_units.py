"""Training pieces: config overrides, resumable ground embedding, raw-image mode, clear errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from graft_models.embed_ground import GroundEmbeddings, build_ground_encoder, embed_ground
from graft_models.train import StepBatches, lr_lambda, train
from graft_models.train_config import ConfigError, config_from_dict
from graft_vqa.errors import DatasetNotFoundError, WeightsNotFoundError

REPO = Path(__file__).resolve().parents[1]
TILES = REPO.parent / "shared" / "data" / "tiles"


def test_config_overrides_and_unknown_keys():
    cfg = config_from_dict({"optim": {"lr": 0.5}}, ["optim.lr=1e-4", "data.batch_size=3", "recall_k=[1, 2]"])
    assert cfg.optim.lr == 1e-4 and cfg.data.batch_size == 3 and cfg.recall_k == (1, 2)
    with pytest.raises(ConfigError, match="optim.lrr"):
        config_from_dict({}, ["optim.lrr=1"])
    f = lr_lambda(config_from_dict({"optim": {"warmup_steps": 4, "steps": 12}}))
    assert [f(s) for s in (0, 3)] == [0.25, 1.0] and f(12) == pytest.approx(0.0) and 0 < f(8) < 1


def test_step_batches_split_one_global_batch_between_ranks():
    one = list(StepBatches(20, 6, 1, 0, seed=3, start=0, stop=7))
    r0 = list(StepBatches(20, 3, 2, 0, seed=3, start=0, stop=7))
    r1 = list(StepBatches(20, 3, 2, 1, seed=3, start=0, stop=7))
    assert [a + b for a, b in zip(r0, r1)] == one
    assert sorted(sum(one[:3], [])) == sorted(set(sum(one[:3], [])))  # no repeats within an epoch
    assert list(StepBatches(20, 6, 1, 0, seed=3, start=4, stop=7)) == one[4:]


class CountingEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = 0

    def forward(self, x):
        self.seen += x.shape[0]
        return torch.nn.functional.normalize(x.mean(dim=(2, 3)).repeat(1, 4), dim=-1)


def test_embed_ground_shards_resume_and_lookup(tmp_path):
    keys = []
    for k in range(7):
        Image.new("RGB", (20, 30), (30 * k, 10, 200 - 20 * k)).save(tmp_path / f"g{k}.png")
        keys.append(f"g{k}.png")
    enc = CountingEncoder()
    out = embed_ground(keys, enc, tmp_path / "emb", root=tmp_path, batch_size=2, shard_size=3, image_size=16)
    assert enc.seen == 7 and len(list(out.glob("shard_*.safetensors"))) == 3
    (out / "shard_00001.safetensors").unlink()
    with pytest.raises(DatasetNotFoundError, match="resume"):
        GroundEmbeddings(out)
    embed_ground(keys, enc, out, root=tmp_path, batch_size=2, shard_size=3, image_size=16)
    assert enc.seen == 7 + 3  # only the missing shard was recomputed
    emb = GroundEmbeddings(out)
    assert emb.table.dtype == torch.float16 and emb.dim == 12
    from graft_models.data.dataset import ground_tensor
    want = enc(torch.stack([ground_tensor(tmp_path / "g4.png", 16), ground_tensor(tmp_path / "g0.png", 16)]))
    torch.testing.assert_close(emb.get(["g4.png", "g0.png"]).float(), want, atol=2e-3, rtol=0)
    with pytest.raises(DatasetNotFoundError, match="another photo list"):
        embed_ground(keys[:3], enc, out, root=tmp_path)


def test_raw_image_mode_trains_exports_and_needs_weights(tmp_path):
    from graft_models.data.synthetic import make_pair_set
    from graft_models.checkpoint import load_graft

    root = make_pair_set([TILES / "rmnp_rgb_epsg4326.tif"], tmp_path / "pairs", photos_per_tile=30, seed=2)
    tree = {"data": {"root": str(root), "image_size": 32, "ground_size": 32, "batch_size": 4},
            "model": {"name": "graft-tiny", "ground_encoder": "graft-tiny"},
            "loss": {"level": "pixel"}, "optim": {"steps": 2, "warmup_steps": 1},
            "out_dir": str(tmp_path / "run"), "progress": False, "tensorboard": False}
    with pytest.raises(WeightsNotFoundError, match="clip_checkpoint"):
        train(config_from_dict(tree))
    torch.set_num_threads(1)
    train(config_from_dict(tree, ["model.allow_untrained=true"]))
    rows = (tmp_path / "run" / "metrics.csv").read_text()
    assert "sat2ground_r@1" in rows and "loss" in rows
    model = load_graft(tmp_path / "run" / "graft_official.ckpt")
    assert model.encode_image(torch.zeros(1, 3, 32, 32)).shape == (1, 512)
    assert isinstance(build_ground_encoder("graft-tiny")(torch.zeros(1, 3, 32, 32)), torch.Tensor)
