"""Real 2-process torchrun (gloo, CPU) training vs 1 process; loss decreases; --resume is bit-for-bit."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from graft_models.data import read_official
from graft_models.data.synthetic import make_pair_set
from graft_models.embed_ground import build_ground_encoder, embed_ground
from graft_models.train import train
from graft_models.train_config import load_config

REPO = Path(__file__).resolve().parents[1]
TILES = REPO.parent / "shared" / "data" / "tiles"
TORCHRUN = Path(sys.executable).parent / "torchrun"
STEPS = 16


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    make_pair_set([TILES / "neon_osbs_029_10cm.tif", TILES / "rgbn_5m_utm18n.tif"], root,
                  photos_per_tile=40, crop_px=64, max_per_crop=5, min_spacing_px=32, seed=1)
    keys = [g for s in ("train", "test") for r in read_official(root, s) for g in r.grounds]
    emb = embed_ground(keys, build_ground_encoder("graft-tiny"), root / "emb", root=root,
                       image_size=32, shard_size=64)
    return root, emb


def _config(tmp: Path, pairs, name: str, batch: int) -> Path:
    root, emb = pairs
    cfg = {"data": {"root": str(root), "embeddings": str(emb), "image_size": 32, "ground_size": 32,
                    "batch_size": batch},
           "model": {"name": "graft-tiny", "ground_encoder": "graft-tiny", "allow_untrained": True},
           "loss": {"level": "both", "direction": "both"},
           "optim": {"lr": 1e-3, "warmup_steps": 2, "steps": STEPS},
           "out_dir": str(tmp / name), "log_every": 1, "ckpt_every": 4, "progress": False,
           "dump_grads": True, "export": "", "tensorboard": False}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(nproc: int, config: Path, *extra: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node", str(nproc), "-m", "graft_models.train"]
    res = subprocess.run(cmd + ["--config", str(config), *extra], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr[-3000:]


def _losses(out: Path) -> list[float]:
    with open(out / "metrics.csv") as f:
        return [float(r["value"]) for r in csv.DictReader(f) if r["name"] == "loss"]


def _final(out: Path) -> dict:
    return torch.load(out / "checkpoints" / f"step_{STEPS:07d}.pt", map_location="cpu", weights_only=True)


def test_torchrun_two_ranks_equal_one_rank_and_resume_is_exact(tmp_path, pairs):
    one, two = _config(tmp_path, pairs, "one", 8), _config(tmp_path, pairs, "two", 4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(load_config(one))  # one process, in this process (no launcher)
    finally:
        torch.set_num_threads(threads)
    _run(2, two)
    l1, l2 = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(l1) == len(l2) == STEPS
    assert l2[0] == pytest.approx(l1[0], rel=1e-5)  # same global batch, same loss
    assert l2 == pytest.approx(l1, rel=1e-3)
    g1 = torch.load(tmp_path / "one" / "grads_step1.pt", weights_only=True)
    g2 = torch.load(tmp_path / "two" / "grads_step1.pt", weights_only=True)
    assert g1.keys() == g2.keys() and len(g1) > 10
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], rtol=1e-4, atol=1e-6)
    assert sum(l1[-4:]) / 4 < sum(l1[:4]) / 4 - 0.05  # loss decreases
    # resumed from the 2-rank run's step-STEPS/2 checkpoint into a fresh out_dir: identical end
    half = tmp_path / "two" / "checkpoints" / f"step_{STEPS // 2:07d}.pt"
    _run(2, two, "--resume", str(half), "--set", f"out_dir={tmp_path / 'res'}")
    assert sorted(p.name for p in (tmp_path / "res" / "checkpoints").glob("step_*.pt"))[0] == f"step_{STEPS // 2 + 4:07d}.pt"
    a, b = _final(tmp_path / "two"), _final(tmp_path / "res")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for pid, st in a["optimizer"]["state"].items():
        for name, t in st.items():
            assert torch.equal(t, b["optimizer"]["state"][pid][name]), (pid, name)
    assert _losses(tmp_path / "res")[-STEPS // 2:] == _losses(tmp_path / "two")[-STEPS // 2:]
