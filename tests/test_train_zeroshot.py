"""Zero-shot checks: classification logged during training, and the held-out evaluate command."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from rasterio.windows import Window

from graft_models.data import PairDataset, read_official
from graft_models.data.synthetic import make_pair_set
from graft_models.embed_ground import build_ground_encoder
from graft_models.evaluate import main as evaluate_main
from graft_models.factory import build_graft
from graft_models.preprocess import to_tensor
from graft_models.text import build_text_encoder
from graft_models.train import train
from graft_models.train_config import config_from_dict
from graft_models.zeroshot import retrieval_metrics

REPO = Path(__file__).resolve().parents[1]
TILES = REPO.parent / "shared" / "data" / "tiles"
# class folder -> (tile, top-left corners of 40 px chips)
CLASSES = {"forest": ("neon_osbs_029_10cm.tif", [(20, 30), (200, 150), (300, 300), (120, 260)]),
           "fields": ("rgbn_5m_utm18n.tif", [(10, 10), (250, 200), (400, 300), (100, 330)]),
           "mountains": ("rmnp_rgb_epsg4326.tif", [(150, 100), (200, 200), (260, 120), (300, 220)])}
STEPS = 2
MODEL = {"name": "graft-tiny", "ground_encoder": "graft-tiny", "allow_untrained": True}


def _make_classes(root: Path) -> Path:
    for name, (tile, corners) in CLASSES.items():
        (root / name).mkdir(parents=True)
        with rasterio.open(TILES / tile) as src:
            for k, (col, row) in enumerate(corners):
                rgb = src.read([1, 2, 3], window=Window(col, row, 40, 40)).transpose(1, 2, 0)
                Image.fromarray(rgb.astype(np.uint8)).save(root / name / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step training run with validation retrieval and the zero-shot check at every step."""
    tmp = tmp_path_factory.mktemp("zs")
    classes = _make_classes(tmp / "classes")
    torch.save(_aligned_text_tower(classes), tmp / "text.pt")
    pairs = make_pair_set([TILES / "neon_osbs_029_10cm.tif"], tmp / "pairs", photos_per_tile=30, seed=4)
    tree = {"data": {"root": str(pairs), "image_size": 32, "ground_size": 32, "batch_size": 4},
            "model": MODEL, "optim": {"steps": STEPS, "warmup_steps": 1, "lr": 1e-4},
            "zeroshot": {"folder": str(classes), "text_model": "clip-tiny", "template": "raw",
                         "text_checkpoint": str(tmp / "text.pt")},
            "out_dir": str(tmp / "run"), "val_every": 1, "log_every": 1, "progress": False, "tensorboard": False}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(config_from_dict(tree))
    finally:
        torch.set_num_threads(threads)
    return {"tmp": tmp, "classes": classes, "pairs": pairs, "out": tmp / "run",
            "ckpt": tmp / "run" / "checkpoints" / f"step_{STEPS:07d}.pt", "text": tmp / "text.pt"}


def _model(ckpt: Path):
    model = build_graft("graft-tiny")
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["model"])
    return model.eval()


@torch.no_grad()
def _chip_embeddings(model, folder: Path) -> dict[str, torch.Tensor]:
    """Per class (sorted), the image embeddings (n, 512) of its chips zero-padded (centred) to 224."""
    out = {}
    for name in sorted(CLASSES):
        rows = []
        for f in sorted((folder / name).iterdir()):
            canvas = np.zeros((224, 224, 3), np.uint8)
            canvas[92:132, 92:132] = np.asarray(Image.open(f).convert("RGB"))  # 40 px chip, centred
            rows.append(model.encode_image(to_tensor(canvas, size=None))[0])
        out[name] = torch.stack(rows)
    return out


@torch.no_grad()
def _aligned_text_tower(folder: Path) -> dict[str, torch.Tensor]:
    """clip-tiny text weights whose raw prompt for each class points at the class's centred mean image
    embedding under the initial training model, so a random model's zero-shot predictions differ."""
    from graft_models.train import build_model

    emb = _chip_embeddings(build_model(config_from_dict({"model": MODEL})).eval(), folder)
    means = torch.stack([e.mean(0) for e in emb.values()])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        text = build_text_encoder("clip-tiny", allow_random=True)
    proj = text.tower.text_projection
    proj.copy_(torch.eye(*proj.shape))  # features before the projection, in the first 64 columns
    hidden = text.tower(text.tokenizer(sorted(CLASSES)))[:, : proj.shape[0]]
    proj.copy_(torch.linalg.lstsq(hidden, means - means.mean(0)).solution)
    return text.tower.state_dict()


def _classify(model, text_path: Path, folder: Path) -> tuple[float, dict[str, float], set[int]]:
    """Independent zero-shot top-1 (overall, per class) and the set of predicted classes."""
    prompts = build_text_encoder("clip-tiny", text_path).encode(sorted(CLASSES), template="raw")
    preds = {name: (e @ prompts.T).argmax(1) for name, e in _chip_embeddings(model, folder).items()}
    per_class = {name: float((p == i).float().mean()) for i, (name, p) in enumerate(preds.items())}
    flat = torch.cat([p == i for i, p in enumerate(preds.values())])
    return float(flat.float().mean()), per_class, {int(c) for p in preds.values() for c in p}


def _metrics(out: Path) -> dict[tuple[int, str], float]:
    with open(out / "metrics.csv") as f:
        return {(int(r["step"]), r["name"]): float(r["value"]) for r in csv.DictReader(f)}


def test_training_logs_zero_shot_accuracy_of_the_model_being_trained(run):
    rows = _metrics(run["out"])
    for step in range(1, STEPS + 1):
        assert {(step, "zeroshot_top1"), (step, "sat2ground_recall@1")} <= set(rows)
        assert {(step, f"zeroshot_acc/{c}") for c in CLASSES} <= set(rows)
    top1, per_class, predicted = _classify(_model(run["ckpt"]), run["text"], run["classes"])
    assert len(predicted) > 1  # the check can tell models apart
    assert rows[(STEPS, "zeroshot_top1")] == pytest.approx(top1, abs=1e-9)
    for c, acc in per_class.items():
        assert rows[(STEPS, f"zeroshot_acc/{c}")] == pytest.approx(acc, abs=1e-9)


@torch.no_grad()
def _independent_retrieval(model, pairs: Path) -> dict[str, float]:
    """Per-item embeddings (no loader, no batching) and relevance from the split's records."""
    recs = read_official(pairs, "test")
    ds = PairDataset(pairs, recs, image_size=32, ground_size=32)
    genc = build_ground_encoder("graft-tiny")
    sats, grounds, owner = [], [], []
    for i in range(len(ds)):
        item = ds[i]
        sats.append(model.encode_image(item["sat"][None])[0])
        grounds += list(genc(item["ground"]))
        owner += [i] * len(item["ground"])
    s, g = torch.stack(sats), torch.stack(grounds)
    rel = np.array([[o == i for o in owner] for i in range(len(s))])
    out = {f"sat2ground_{k}": v for k, v in retrieval_metrics(s, g, rel).items()}
    out.update({f"ground2sat_{k}": v for k, v in retrieval_metrics(g, s, rel.T).items()})
    return out


def test_evaluate_command_matches_independent_recall_and_accuracy(run, tmp_path):
    out = tmp_path / "res" / "eval.json"
    cmd = [sys.executable, "-m", "graft_models.evaluate", "--checkpoint", str(run["ckpt"]),
           "--pairs", str(run["pairs"]), "--split", "test", "--classes", str(run["classes"]),
           "--batch-size", "3", "--out", str(out)]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "sat2ground_recall@1" in res.stdout and "zeroshot_top1" in res.stdout
    got = json.loads(out.read_text())
    model = _model(run["ckpt"])
    want = _independent_retrieval(model, run["pairs"])
    for key, value in want.items():
        assert got["retrieval"][key] == pytest.approx(value, abs=1e-6), key
    assert got["retrieval"]["images"] == len(read_official(run["pairs"], "test"))
    top1, per_class, _ = _classify(model, run["text"], run["classes"])
    assert got["zeroshot"]["zeroshot_top1"] == pytest.approx(top1, abs=1e-9)
    assert {c: got["zeroshot"][f"zeroshot_acc/{c}"] for c in CLASSES} == pytest.approx(per_class, abs=1e-9)


def test_evaluate_official_export_and_clear_errors(run, tmp_path, capsys):
    """The exported official file, with the settings as flags, gives the training checkpoint's figures."""
    export = run["out"] / "graft_official.ckpt"
    flags = ["--pairs", str(run["pairs"]), "--image-size", "32", "--ground-size", "32",
             "--ground-encoder", "graft-tiny", "--allow-untrained", "--recall-k", "1,5"]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert evaluate_main(["--checkpoint", str(export), *flags, "--out", str(a)]) == 0
    assert evaluate_main(["--checkpoint", str(run["ckpt"]), "--pairs", str(run["pairs"]),
                          "--recall-k", "1,5", "--out", str(b)]) == 0
    ra, rb = json.loads(a.read_text())["retrieval"], json.loads(b.read_text())["retrieval"]
    assert "sat2ground_recall@5" in ra and "sat2ground_recall@10" not in ra
    assert ra == pytest.approx(rb, abs=1e-6)
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    assert evaluate_main(["--checkpoint", str(export), "--classes", str(tmp_path / "empty"),
                          "--allow-untrained"]) == 2
    assert "one sub-folder of images per class" in capsys.readouterr().err
    assert evaluate_main(["--checkpoint", str(export), "--classes", str(run["classes"])]) == 2
    assert "text weights" in capsys.readouterr().err
