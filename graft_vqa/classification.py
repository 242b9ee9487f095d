"""Zero-shot classification of a tile, or of each chip of a large raster, by the image-level model.

Each chip's probabilities are CLIP's: a softmax over the labels of the embedder's logit scale times the
cosines between the chip's embedding and each label's text embedding
(:func:`graft_models.zeroshot.label_probabilities`). Chips follow :mod:`graft_vqa.core.chips`: the
whole tile when both sides are at most ``whole_max`` and no ``chip`` size is given, else a grid. Chips
without a valid pixel get no probabilities (NaN) and no label.
"""
from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from affine import Affine
from rasterio.windows import Window

from graft_models.zeroshot import label_probabilities
from graft_vqa.config import DEFAULT_CHIP, ChipConfig, EmbedConfig, apply_options
from graft_vqa.core.chips import chip_windows
from graft_vqa.core.errors import ConfigError
from graft_vqa.core.rasters import write_geotiff
from graft_vqa.core.tiles import load_tile
from graft_vqa.models import resolve_embedder

log = logging.getLogger(__name__)

CLIP_LOGIT_SCALE = 100.0  # the softmax scale for embedders that do not say theirs
NO_LABEL = 255  # the label GeoTIFF's nodata: chips without valid pixels
MAX_LABELS = 255  # labels a uint8 label GeoTIFF can hold besides NO_LABEL


def parse_labels(labels: str | os.PathLike | Sequence[str]) -> list[str]:
    """Labels from a list, a comma-separated string, or a file with one label a line (``#`` comments).

    Raises:
        ConfigError: fewer than two labels, an empty label, a label given twice, or too many labels.
    """
    if isinstance(labels, (str, os.PathLike)) and Path(labels).expanduser().is_file():
        lines = Path(labels).expanduser().read_text(encoding="utf-8").splitlines()
        items = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    elif isinstance(labels, str):
        items = [part.strip() for part in labels.split(",")]
    else:
        items = [str(label).strip() for label in labels]
    if any(not item for item in items):
        raise ConfigError(f"an empty label in {labels!r}: give labels separated by commas, e.g. 'forest,water,urban'")
    seen: set[str] = set()
    twice = [item for item in items if item.lower() in seen or seen.add(item.lower())]
    if twice:
        raise ConfigError(f"label {twice[0]!r} is given more than once: give each label once")
    if len(items) < 2:
        raise ConfigError(f"classification needs at least two labels to choose between, got {items}: e.g. "
                          "--labels 'forest,water,urban,farmland'")
    if len(items) > MAX_LABELS:
        raise ConfigError(f"{len(items)} labels: at most {MAX_LABELS} are supported")
    return items


@dataclass
class Classification:
    """Label probabilities for each chip of one raster."""

    labels: list[str]  # the labels, in the order given
    windows: list[tuple[int, int, int, int]]  # (row_off, col_off, height, width) of each chip
    probabilities: np.ndarray  # (chips, labels) float64; NaN rows for chips without valid pixels
    path: str | None = None  # the raster file, if any
    height: int = 0  # raster rows
    width: int = 0  # raster columns
    step: int = 0  # pixels between chip origins (the label GeoTIFF's cell size); 0 for one whole-tile chip
    crs: Any = None  # the raster's CRS (None without georeferencing)
    transform: Affine = field(default_factory=Affine.identity)  # the raster's pixel -> map transform
    warnings: list[str] = field(default_factory=list)  # untrained weights and similar

    def best(self) -> list[str | None]:
        """The winning label of each chip (None without valid pixels)."""
        return [None if np.isnan(p).any() else self.labels[int(np.argmax(p))] for p in self.probabilities]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per chip: window, winning label, and the probability of each label."""
        out = []
        for window, best, probs in zip(self.windows, self.best(), self.probabilities):
            row, col, height, width = window
            item: dict[str, Any] = {"row_off": row, "col_off": col, "height": height, "width": width, "label": best}
            item.update({label: (None if np.isnan(p) else float(p)) for label, p in zip(self.labels, probs)})
            out.append(item)
        return out

    def to_csv(self) -> str:
        """The rows as CSV text."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["row_off", "col_off", "height", "width", "label", *self.labels])
        writer.writeheader()
        writer.writerows(self.rows())
        return buffer.getvalue()

    def label_grid(self) -> np.ndarray:
        """(rows, cols) uint8 index of the winning label per chip cell; ``NO_LABEL`` without one."""
        step = self.step or max(self.height, self.width)
        rows = -(-self.height // step) if self.step else 1
        cols = -(-self.width // step) if self.step else 1
        grid = np.full((rows, cols), NO_LABEL, dtype=np.uint8)
        for (row, col, _, _), probs in zip(self.windows, self.probabilities):
            if not np.isnan(probs).any():
                grid[row // step if self.step else 0, col // step if self.step else 0] = int(np.argmax(probs))
        return grid

    def to_geotiff(self, path: str | os.PathLike) -> Path:
        """Write the winning label per chip as a one-band uint8 GeoTIFF: one cell per chip origin (``step``
        pixels of the raster; one cell for a whole-tile chip), the raster's CRS, nodata ``NO_LABEL``, the
        label names in the ``LABELS`` tag and as ``LABEL_<i>`` tags."""
        if self.step:
            transform = self.transform @ Affine.scale(self.step)
        else:
            transform = self.transform @ Affine.scale(self.width, self.height)
        tags = {"LABELS": ",".join(self.labels), **{f"LABEL_{i}": label for i, label in enumerate(self.labels)}}
        return write_geotiff(path, self.label_grid(), crs=self.crs, transform=transform, nodata=NO_LABEL,
                             tags=tags, descriptions=["label"])


def classify(image: Any, labels: str | os.PathLike | Sequence[str], embedder: Any = None, *,
             config: EmbedConfig | None = None, chips: ChipConfig | None = None, gsd_m: float | None = None,
             **options: Any) -> Classification:
    """Zero-shot probabilities of ``labels`` for ``image`` (a path, array, PIL image or Tile), per chip.

    Args:
        labels: a list, a comma-separated string, or a file of labels (see :func:`parse_labels`).
        embedder: an :class:`~graft_vqa.perception.protocols.Embedder`; ``None`` builds the image-level GRAFT
            model from ``config``.
        chips: :class:`~graft_vqa.config.ChipConfig` (``chip=224`` classifies each 224-px chip).
        **options: ``EmbedConfig`` or ``ChipConfig`` fields.
    """
    config, chips = apply_options(options, config or EmbedConfig(), chips or ChipConfig())
    names = parse_labels(labels)
    tile = load_tile(image, gsd_m=gsd_m)
    embedder, warnings = resolve_embedder(embedder, config)
    windows = chip_windows(tile.height, tile.width, chip=chips.chip, default_chip=DEFAULT_CHIP,
                           whole_max=chips.whole_max, overlap=chips.chip_overlap)
    whole = windows == [(0, 0, tile.height, tile.width)]
    text = np.asarray(embedder.embed_texts(names), dtype=np.float64)
    scale = float(getattr(embedder, "logit_scale", CLIP_LOGIT_SCALE))
    probs = np.full((len(windows), len(names)), np.nan)
    for start in range(0, len(windows), max(1, config.batch_size)):
        batch = windows[start:start + config.batch_size]
        tiles = [tile if whole else tile.read(Window(c, r, w, h)) for r, c, h, w in batch]
        keep = [i for i, t in enumerate(tiles) if np.asarray(t.valid_mask()).any()]
        if keep:
            emb = np.asarray(embedder.embed_images([tiles[i] for i in keep]), dtype=np.float64)
            probs[[start + i for i in keep]] = label_probabilities(emb, text, scale)
    step = 0 if whole else (chips.chip or DEFAULT_CHIP) - chips.chip_overlap
    return Classification(names, windows, probs, tile.path, tile.height, tile.width, step,
                          tile.crs, tile.transform, warnings)
