"""Zero-shot evaluation helpers: folder-per-class classification and text-to-image retrieval.

Small chips: EuroSAT's 64 px chips are *padded* to 224 (centred on a black canvas) by default,
as the third-party GRAFT evaluations do, so the model sees them at their native ground sample
distance instead of upsampled 3.5x; ``pad="resize"`` upsamples bicubically instead. Chips larger
than the model input are always resized down.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from graft_models.preprocess import to_tensor
from graft_vqa.core.errors import DatasetNotFoundError
from graft_vqa.core.tiles import load_tile

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


def pad_chip(rgb: np.ndarray, size: int = 224, pad: Literal["zeros", "resize"] = "zeros") -> np.ndarray:
    """An ``size x size`` uint8 image from a chip: zero-padded (centred) when smaller, else resized."""
    h, w = rgb.shape[:2]
    if pad == "resize" or h > size or w > size:
        return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC))
    out = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    out[top:top + h, left:left + w] = rgb
    return out


def read_rgb(path: Path) -> np.ndarray:
    """``H x W x 3`` uint8 RGB view of an image file: :meth:`graft_vqa.core.tiles.Tile.rgb` (band choice,
    tile-wide per-band percentile stretch for non-uint8 data, nodata -> 0), as ``find()`` sees tiles."""
    return load_tile(path).rgb()


def class_prompt_name(folder: str) -> str:
    """Prompt text for a class folder: ``HerbaceousVegetation`` -> ``herbaceous vegetation``."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", folder.replace("_", " ").replace("-", " "))
    return " ".join(spaced.lower().split())


def list_folder_dataset(root: str | Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """Image paths, integer labels and class folder names (sorted) of a folder-per-class data set."""
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    paths, labels = [], []
    for idx, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        paths += files
        labels += [idx] * len(files)
    if not paths:
        raise DatasetNotFoundError(f"{root}: expected one sub-folder of images per class (e.g. EuroSAT's)")
    return paths, np.asarray(labels), classes


@torch.inference_mode()
def encode_images(model: torch.nn.Module, images: Iterable[np.ndarray], *, size: int = 224,
                  pad: Literal["zeros", "resize"] = "zeros", batch_size: int = 32,
                  total: int | None = None) -> torch.Tensor:
    """Image-level embeddings ``(N, D)`` (CPU) of uint8 RGB images after :func:`pad_chip`."""
    param = next(model.parameters())
    out, batch = [], []
    for rgb in tqdm(images, total=total, desc="zero-shot images", disable=total is not None and total < 64):
        batch.append(to_tensor(pad_chip(rgb, size, pad), size=size))
        if len(batch) == batch_size:
            out.append(model.encode_image(torch.cat(batch).to(param.device, param.dtype)).float().cpu())
            batch = []
    if batch:
        out.append(model.encode_image(torch.cat(batch).to(param.device, param.dtype)).float().cpu())
    return torch.cat(out)


def label_probabilities(image_emb: np.ndarray | torch.Tensor, text_emb: np.ndarray | torch.Tensor,
                        logit_scale: float) -> np.ndarray:
    """CLIP-style zero-shot probabilities ``(N, L)``: softmax over labels of ``logit_scale`` times the
    cosines of ``N`` L2-normalised image embeddings with ``L`` L2-normalised label embeddings."""
    logits = logit_scale * (torch.as_tensor(image_emb).double() @ torch.as_tensor(text_emb).double().T)
    return torch.softmax(logits, dim=1).numpy()


@dataclass
class ZeroShotResult:
    """Outcome of a zero-shot classification."""

    accuracy: float  # top-1 accuracy over all images
    per_class: dict[str, float]  # top-1 accuracy per class folder
    predictions: np.ndarray  # predicted class index per image
    labels: np.ndarray  # true class index per image
    class_names: list[str] = field(default_factory=list)  # prompt text per class


def classify_folder(model: torch.nn.Module, text_encoder, root: str | Path, *, template: str = "ensemble",
                    class_names: dict[str, str] | None = None, pad: Literal["zeros", "resize"] = "zeros",
                    batch_size: int = 32) -> ZeroShotResult:
    """Zero-shot top-1 classification of a folder-per-class data set.

    ``class_names`` maps folder names to prompt texts (default: :func:`class_prompt_name`).
    """
    paths, labels, folders = list_folder_dataset(root)
    names = [(class_names or {}).get(f, class_prompt_name(f)) for f in folders]
    text = text_encoder.encode(names, template=template)
    images = encode_images(model, (read_rgb(p) for p in paths), pad=pad, batch_size=batch_size,
                           total=len(paths))
    predictions = (images @ text.T).argmax(dim=1).numpy()
    per_class = {f: float((predictions[labels == i] == i).mean()) for i, f in enumerate(folders)}
    accuracy = float((predictions == labels).mean())
    logger.info("zero-shot accuracy %.4f on %d images, %d classes", accuracy, len(paths), len(folders))
    return ZeroShotResult(accuracy, per_class, predictions, labels, names)


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """AP of one ranking: mean over relevant items of precision at their rank (0 if none relevant)."""
    order = np.argsort(-scores, kind="stable")
    hits = relevant[order].astype(bool)
    if not hits.any():
        return 0.0
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at[hits].mean())


def retrieval_metrics(text_emb: torch.Tensor, image_emb: torch.Tensor, relevant: np.ndarray,
                      ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Text-to-image retrieval: ``recall@k`` (share of queries with a relevant image in the top k)
    and ``mAP`` over queries with at least one relevant image. ``relevant``: bool ``(T, I)``."""
    scores = (text_emb.float() @ image_emb.float().T).numpy()
    relevant = np.asarray(relevant, dtype=bool)
    if relevant.shape != scores.shape:
        raise ValueError(f"relevance shape {relevant.shape} != (texts, images) {scores.shape}")
    queries = np.flatnonzero(relevant.any(axis=1))
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(relevant, order, axis=1)[queries]
    out = {f"recall@{k}": float(ranked[:, :k].any(axis=1).mean()) for k in ks}
    out["mAP"] = float(np.mean([average_precision(scores[q], relevant[q]) for q in queries]))
    return out
