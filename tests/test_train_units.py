"""Training pieces: config overrides, resumable ground embedding, raw-image mode, clear errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from graft_models.embed_ground import GroundEmbeddings, build_ground_encoder, embed_ground
from graft_models import distributed as D
from graft_models import evaluate, retrieval
from graft_models.train import StepBatches, build_model, compute_loss, lr_lambda, read_checkpoint, train
from graft_models.train_config import ConfigError, config_from_dict
from graft_vqa.core.errors import CheckpointError, DatasetNotFoundError, GraftVQAError, WeightsNotFoundError

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


def test_raw_image_mode_trains_exports_and_needs_weights(tmp_path, monkeypatch):
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
    built = []

    class CountingPairs(retrieval.PairDataset):
        def __init__(self, *a, **k):
            built.append(1)
            super().__init__(*a, **k)

    monkeypatch.setattr(retrieval, "PairDataset", CountingPairs)
    train(config_from_dict(tree, ["model.allow_untrained=true", "val_every=1"]))
    assert len(built) == 1  # the validation set is built once, not at each of the 2 validations
    rows = (tmp_path / "run" / "metrics.csv").read_text()
    assert "sat2ground_recall@1" in rows and "loss" in rows
    names = {line.split(",")[1] for line in rows.splitlines()[1:]}
    assert {"sat2ground_recall@1", "ground2sat_recall@10", "sat2ground_mAP"} <= names  # evaluate's names
    assert not any("_r@" in n for n in names)
    state = torch.load(tmp_path / "run" / "checkpoints" / "step_0000002.pt", weights_only=True)
    assert set(state["rng"]) == {"torch"}  # nothing saved that resume would not restore
    model = load_graft(tmp_path / "run" / "graft_official.ckpt")
    assert model.encode_image(torch.zeros(1, 3, 32, 32)).shape == (1, 512)
    assert isinstance(build_ground_encoder("graft-tiny")(torch.zeros(1, 3, 32, 32)), torch.Tensor)


@pytest.mark.parametrize("override, key, allowed", [
    ("loss.level=pixels", "loss.level", "image | pixel | both"),
    ("precision=fp16", "precision", "bf16 | fp32"),
    ("data.batch_size=abc", "data.batch_size", "an integer"),
    ("optim.steps=2.5", "optim.steps", "an integer"),
    ("progress=1", "progress", "true or false"),
    ("recall_k=5", "recall_k", "list"),
    ("loss.tau=-1", "loss.tau", "> 0"),
    ("loss", "loss", "section.key=value"),
])
def test_config_values_are_checked(override, key, allowed):
    with pytest.raises(ConfigError) as info:
        config_from_dict({}, [override])
    assert isinstance(info.value, GraftVQAError)
    assert key in str(info.value) and allowed in str(info.value)
    assert override.split("=")[-1] in str(info.value)  # the bad value is named


def test_config_values_are_converted_by_the_default_type():
    cfg = config_from_dict({"data": {"batch_size": "3"}, "optim": {"lr": "1e-4", "betas": [0, 0.5]}},
                           ["data.val_split=2020", "loss.level=both"])
    assert cfg.data.batch_size == 3 and isinstance(cfg.data.batch_size, int)
    assert cfg.optim.lr == 1e-4 and cfg.optim.betas == (0.0, 0.5) and isinstance(cfg.optim.betas[0], float)
    assert cfg.data.val_split == "2020" and cfg.loss.level == "both"


def test_train_cli_prints_one_line_and_exits_2():
    res = subprocess.run([sys.executable, "-m", "graft_models.train", "--set", "loss.level=pixels"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert "loss.level" in lines[0] and "'pixels'" in lines[0] and "image | pixel | both" in lines[0]


def test_checkpoint_reads_give_clear_errors(tmp_path):
    from graft_models.embed_ground import load_clip_state

    text = tmp_path / "notes.pt"
    text.write_text("this is not a checkpoint\n")
    for read in (lambda: read_checkpoint(str(text), str(tmp_path)), lambda: load_clip_state(text)):
        with pytest.raises(CheckpointError) as info:
            read()
        assert "not a PyTorch checkpoint" in str(info.value) and "weights_only=False" not in str(info.value)
    wrong = tmp_path / "clip.pt"
    torch.save({"state_dict": {"visual.not_a_weight": torch.zeros(2)}}, wrong)
    assert set(load_clip_state(wrong)) == {"visual.not_a_weight"}  # the wrapper is unwrapped
    with pytest.raises(CheckpointError, match="does not fit"):
        build_model(config_from_dict({"model": {"name": "graft-tiny", "clip_checkpoint": str(wrong)}}))
    with pytest.raises(CheckpointError, match="does not fit"):
        build_ground_encoder("clip-vitb16", wrong)


def test_evaluate_reports_a_wrong_state_dict_in_one_line(tmp_path, capsys):
    from graft_models.factory import build_graft
    from graft_models.train_checkpoint import CKPT_FORMAT

    ckpt = tmp_path / "step.pt"
    torch.save({"format": CKPT_FORMAT, "step": 1, "config": {}, "model": {"visual.bogus": torch.zeros(1)},
                "model_config": build_graft("graft-tiny").config.to_dict()}, ckpt)
    assert evaluate.main(["--checkpoint", str(ckpt), "--pairs", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit" in err[0] and str(ckpt) in err[0]


def test_step_batches_draw_one_permutation_per_epoch(monkeypatch):
    want = []
    for t in range(7):  # 20 images, global batch 6: 3 micro-steps per epoch
        epoch, within = divmod(t, 3)
        perm = torch.randperm(20, generator=torch.Generator().manual_seed(3 * 100003 + epoch))
        want.append(perm[within * 6 + 3:within * 6 + 6].tolist())  # rank 1 of 2, batch 3
    calls = []
    real = torch.randperm
    monkeypatch.setattr(torch, "randperm", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert list(StepBatches(20, 3, 2, 1, seed=3, start=0, stop=7)) == want  # order unchanged
    assert len(calls) == 3


def test_both_levels_gather_the_ground_side_once(monkeypatch):
    from graft_models.data import PairBatch
    from graft_models.losses import ImageLevelLoss, PixelLevelLoss

    gathered = []
    monkeypatch.setattr(D, "is_distributed", lambda: True)
    monkeypatch.setattr(D, "all_reduce_sum", lambda value, device: float(value))
    monkeypatch.setattr(D, "gather_with_grad", lambda t: (gathered.append(tuple(t.shape)) or t, 0))
    cfg = config_from_dict({"model": {"name": "graft-tiny", "allow_untrained": True},
                            "loss": {"level": "both", "direction": "both"}})
    torch.manual_seed(0)
    model = build_model(cfg)
    batch = PairBatch(sat=torch.randn(2, 3, 32, 32), ground=torch.nn.functional.normalize(torch.randn(5, 512), dim=-1),
                      owner=torch.tensor([0, 0, 0, 1, 1]), patch=torch.tensor([0, 1, 2, 3, 0]), index=torch.arange(2))
    losses = {"image": ImageLevelLoss(0.07, "both"), "pixel": PixelLevelLoss(0.07, "both")}
    got = compute_loss(cfg, model, None, batch, losses, amp=False)
    assert gathered.count((5, 512)) == 1  # ground side once; satellite side once per level
    assert len(gathered) == 3
    image, patches = model(batch.sat)
    want = losses["image"](image, batch.ground, batch.owner) + losses["pixel"](patches, batch.ground, batch.owner, batch.patch)
    torch.testing.assert_close(got, want)
