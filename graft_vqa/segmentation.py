"""Zero-shot segmentation with GRAFT scores, and an mIoU evaluator over image/mask folders.

Two recipes:

- ``method="sam-point"`` (the GRAFT paper's): the centre of the highest-scoring ``patch_size`` px
  patch is a foreground point prompt for SAM; of SAM's three masks the one with the highest
  predicted IoU is kept.
- ``method="threshold"``: the score map thresholded as ``find`` does (absolute, relative, or contrast
  probabilities against the background vocabulary), no SAM.

The scorer and refiner are arguments; building default models is the Engine's job.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from graft_vqa.config import FindConfig
from graft_vqa.core.errors import DatasetNotFoundError, GraftVQAError
from graft_vqa.perception.components import threshold_value
from graft_vqa.perception.contrast import contrast_scorer
from graft_vqa.perception.geometry import mask_polygon
from graft_vqa.perception.scorer import resize_maps

log = logging.getLogger(__name__)

Method = Literal["sam-point", "threshold"]
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


@dataclass
class SegmentResult:
    """One text query segmented on one image."""

    mask: np.ndarray  # bool (H, W)
    polygons: list[Any]  # shapely Polygons in the tile's CRS (pixel coordinates when not georeferenced)
    score_map: np.ndarray  # float32 (H, W) scores of the query
    method: str  # "sam-point" or "threshold"
    point: tuple[int, int] | None = None  # (col, row) of the SAM point prompt
    area_m2: float | None = None  # mask area when the tile has georeferencing or gsd_m


def _point_prompt(score: np.ndarray, valid: np.ndarray, patch_size: int) -> tuple[int, int]:
    """(col, row) centre of the ``patch_size`` cell holding the best valid score."""
    row, col = np.unravel_index(int(np.argmax(np.where(valid, score, -np.inf))), score.shape)
    h, w = score.shape
    half = patch_size // 2
    return (min((col // patch_size) * patch_size + half, w - 1),
            min((row // patch_size) * patch_size + half, h - 1))


def segment_tile(tile: Any, score: np.ndarray, *, refiner: Any = None, method: Method = "sam-point",
                 config: FindConfig | None = None, patch_size: int = 16) -> SegmentResult:
    """Segment one (H, W) score map already computed on ``tile`` (see :func:`segment`)."""
    config = config or FindConfig()
    valid = np.asarray(tile.valid_mask(), dtype=bool)
    point = None
    if method == "threshold":
        mask = (score >= threshold_value(score, valid, config)) & valid
    elif method == "sam-point":
        if refiner is None:
            raise GraftVQAError("method='sam-point' needs a SAM refiner: pass "
                                "refiner=SamRefiner(build_sam(...)), or use method='threshold'")
        point = _point_prompt(score, valid, patch_size)
        out = refiner.predict(tile, np.array([point]))
        mask = out.masks[0, int(np.argmax(out.iou_predictions[0]))] & valid
    else:
        raise GraftVQAError(f"unknown segmentation method {method!r}: use 'sam-point' or 'threshold'")
    geom = mask_polygon(mask, tile.transform)
    polygons = [g for g in getattr(geom, "geoms", [geom]) if not g.is_empty]
    area = float(tile.area_m2(mask)) if tile.has_area else None
    return SegmentResult(mask, polygons, score, method, point, area)


def segment(image: Any, text: str, *, scorer: Any, refiner: Any = None, method: Method = "sam-point",
            config: FindConfig | None = None, patch_size: int = 16, gsd_m: float | None = None) -> SegmentResult:
    """Zero-shot segmentation of ``text`` in ``image`` (path, array, PIL image or Tile).

    ``scorer`` gives the pixel-level scores (e.g. ``GraftScorer``); ``refiner`` (a ``SamRefiner``)
    is needed for ``method="sam-point"``; ``config`` sets the threshold for ``method="threshold"``.
    """
    from graft_vqa.core.tiles import load_tile

    if scorer is None:
        raise GraftVQAError("segment needs a scorer: pass scorer=GraftScorer(model, text_encoder) "
                            "(or use graft_vqa.Engine, which builds the default one)")
    tile = load_tile(image, gsd_m=gsd_m)
    score = resize_maps(_scorer_for(scorer, method, config).score_maps(tile, [text]), (tile.height, tile.width))[0]
    return segment_tile(tile, score, refiner=refiner, method=method, config=config, patch_size=patch_size)


def _scorer_for(scorer: Any, method: str, config: FindConfig | None) -> Any:
    """``scorer``, or its contrast probabilities when thresholding in contrast mode."""
    if method == "threshold" and config is not None and config.threshold_mode == "contrast":
        return contrast_scorer(scorer, config)
    return scorer


@dataclass
class MiouResult:
    """Per-class IoU accumulated over a data set (intersections and unions summed over images)."""

    per_class: dict[str, float]  # IoU per class with a non-empty union
    miou: float  # mean of ``per_class``
    images: int  # image/mask pairs evaluated
    intersections: dict[str, int] = field(default_factory=dict)  # summed pixels per class
    unions: dict[str, int] = field(default_factory=dict)  # summed pixels per class


def _pairs(folder: Path) -> list[tuple[Path, Path]]:
    images, masks = folder / "images", folder / "masks"
    if not images.is_dir() or not masks.is_dir():
        raise DatasetNotFoundError(f"{folder} must hold images/ and masks/ (masks/<image stem>.png or .tif "
                                   "with one class index per pixel)")
    pairs = []
    for img in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        mask = next((masks / f"{img.stem}{s}" for s in (".png", ".tif", ".tiff")
                     if (masks / f"{img.stem}{s}").is_file()), None)
        if mask is None:
            raise DatasetNotFoundError(f"no mask for {img.name}: expected {masks / (img.stem + '.png')}")
        pairs.append((img, mask))
    if not pairs:
        raise DatasetNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images}")
    return pairs


def _read_labels(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".png":
        from PIL import Image

        return np.asarray(Image.open(path))
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


def evaluate_miou(folder: str | Path, classes: list[str], *, scorer: Any, refiner: Any = None,
                  method: Method = "threshold", config: FindConfig | None = None,
                  ignore_index: int = 255, patch_size: int = 16) -> MiouResult:
    """mIoU of zero-shot segmentation over ``folder/images/*`` and ``folder/masks/<stem>.png|tif``.

    Mask pixel value ``i`` is ``classes[i]``; ``ignore_index`` pixels are left out. Every class is
    segmented on every image (a false positive on an image without that class counts against it).
    """
    from graft_vqa.core.tiles import load_tile

    inter = dict.fromkeys(classes, 0)
    union = dict.fromkeys(classes, 0)
    pairs = _pairs(Path(folder))
    scorer = _scorer_for(scorer, method, config)
    for img_path, mask_path in tqdm(pairs, desc="mIoU", unit="image", disable=len(pairs) < 10):
        tile = load_tile(img_path)
        labels = _read_labels(mask_path)
        if labels.shape != (tile.height, tile.width):
            raise DatasetNotFoundError(f"{mask_path.name} is {labels.shape}, its image is "
                                       f"{(tile.height, tile.width)}: masks must match their images")
        keep = labels != ignore_index
        maps = resize_maps(scorer.score_maps(tile, list(classes)), (tile.height, tile.width))
        for i, name in enumerate(classes):
            pred = segment_tile(tile, maps[i], refiner=refiner, method=method, config=config,
                                patch_size=patch_size).mask
            gt = labels == i
            inter[name] += int((pred & gt & keep).sum())
            union[name] += int(((pred | gt) & keep).sum())
    per_class = {c: inter[c] / union[c] for c in classes if union[c] > 0}
    miou = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return MiouResult(per_class, miou, len(pairs), inter, union)
