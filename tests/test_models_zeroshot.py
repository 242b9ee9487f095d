"""Zero-shot helpers: chip padding, folder-per-class classification, retrieval metrics."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from graft_models import build_graft, build_text_encoder
from graft_models.preprocess import to_tensor
from graft_models.zeroshot import (
    class_prompt_name, classify_folder, pad_chip, read_rgb, retrieval_metrics,
)
from graft_vqa.core.errors import DatasetNotFoundError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COLOURS = {"red": 0, "green": 1, "blue": 2}


class DominantColourModel(nn.Module):
    """Image embedding = one-hot of the channel with the largest (normalised) maximum."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode_image(self, x):
        return F.one_hot(x.amax(dim=(2, 3)).argmax(dim=1), 512).float()


class ColourText:
    def encode(self, names, template="raw"):
        return F.one_hot(torch.tensor([COLOURS[n] for n in names]), 512).float()


def chip(colour: str, seed: int) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(0, 40, (64, 64, 3), dtype=np.uint8)
    rgb[..., COLOURS[colour]] = 220
    return rgb


def test_pad_chip_keeps_native_scale():
    rgb = chip("red", 0)
    padded = pad_chip(rgb)
    assert padded.shape == (224, 224, 3)
    np.testing.assert_array_equal(padded[80:144, 80:144], rgb)
    assert padded[:80].max() == 0 and padded[144:].max() == 0
    assert pad_chip(rgb, pad="resize").shape == (224, 224, 3)
    assert pad_chip(np.zeros((300, 260, 3), np.uint8)).shape == (224, 224, 3)


def test_class_prompt_names():
    assert class_prompt_name("HerbaceousVegetation") == "herbaceous vegetation"
    assert class_prompt_name("SeaLake") == "sea lake"
    assert class_prompt_name("parking_lot") == "parking lot"


def test_classify_folder_counts_correct_predictions(tmp_path):
    for colour in COLOURS:
        (tmp_path / colour.capitalize()).mkdir()
        for i in range(3):
            Image.fromarray(chip(colour, i)).save(tmp_path / colour.capitalize() / f"{i}.png")
    Image.fromarray(chip("green", 9)).save(tmp_path / "Red" / "9.png")  # a mislabelled chip
    result = classify_folder(DominantColourModel(), ColourText(), tmp_path, batch_size=4)
    assert result.class_names == ["blue", "green", "red"]
    assert result.accuracy == pytest.approx(9 / 10)
    assert result.per_class == {"Blue": 1.0, "Green": 1.0, "Red": pytest.approx(3 / 4)}
    with pytest.raises(DatasetNotFoundError, match="sub-folder"):
        classify_folder(DominantColourModel(), ColourText(), tmp_path / "Red")


def test_classify_real_rsvqa_images_matches_direct_computation(tmp_path):
    root = DATA / "rsvqa_lr_sample"
    questions = json.loads((root / "LR_split_test_questions.json").read_text())["questions"]
    answers = json.loads((root / "LR_split_test_answers.json").read_text())["answers"]
    labelled = [(q["img_id"], answers[q["answers_ids"][0]]["answer"])
                for q in questions if q["type"] == "rural_urban"][:8]
    for img_id, answer in labelled:
        (tmp_path / answer).mkdir(exist_ok=True)
        shutil.copy(root / "Images_LR" / f"{img_id}.tif", tmp_path / answer / f"{img_id}.tif")
    torch.manual_seed(0)
    model, text = build_graft("graft-tiny"), build_text_encoder("clip-tiny", allow_random=True)
    result = classify_folder(model, text, tmp_path, template="raw")
    classes = sorted({a for _, a in labelled})
    with torch.no_grad():
        text_emb = text.encode(classes)
        expected = []
        for cls in classes:
            for path in sorted((tmp_path / cls).iterdir()):
                emb = model.encode_image(to_tensor(read_rgb(path)))  # 256 px: resized down to 224
                expected.append(int((emb @ text_emb.T).argmax()))
    np.testing.assert_array_equal(result.predictions, expected)
    assert result.accuracy == pytest.approx(np.mean(np.asarray(expected) == result.labels))


def test_retrieval_metrics_by_hand():
    scores = np.array([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.1, 0.0], [0.5, 0.5, 0.5, 0.5]])
    relevant = np.array([[0, 1, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
    text_emb, image_emb = torch.eye(3), torch.tensor(scores.T, dtype=torch.float32)
    got = retrieval_metrics(text_emb, image_emb, relevant, ks=(1, 2, 4))
    # query 0: hits at ranks 2 and 4 -> AP (1/2 + 2/4) / 2 = 0.5; query 1: hit at rank 1 -> AP 1;
    # query 2 has no relevant image and is left out.
    assert got == pytest.approx({"recall@1": 0.5, "recall@2": 1.0, "recall@4": 1.0, "mAP": 0.75})
    with pytest.raises(ValueError, match="relevance shape"):
        retrieval_metrics(text_emb, image_emb, relevant[:, :3])


def test_read_rgb_is_the_tile_view_of_non_uint8_rasters(tmp_path):
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(3)
    data = np.stack([rng.integers(10, 90, (40, 40)), rng.integers(1000, 30000, (40, 40)),
                     rng.integers(0, 9, (40, 40))]).astype(np.uint16)
    data[:, :5, :5] = 65535  # nodata
    path = tmp_path / "chip.tif"
    with rasterio.open(path, "w", driver="GTiff", width=40, height=40, count=3, dtype="uint16",
                       nodata=65535, crs="EPSG:32618",
                       transform=Affine(10, 0, 500000, 0, -10, 4400000)) as dst:
        dst.write(data)
    valid = ~np.all(data == 65535, axis=0)
    want = np.zeros((40, 40, 3))
    for b in range(3):  # per-band 2-98 percentile stretch over the valid pixels
        lo, hi = np.percentile(data[b][valid].astype(np.float64), [2, 98])
        want[:, :, b] = np.clip((data[b] - lo) * 255.0 / (hi - lo), 0, 255)
    want[~valid] = 0
    got = read_rgb(path)
    assert got.shape == (40, 40, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(float) - want).max() <= 1
    assert (got[:5, :5] == 0).all()
