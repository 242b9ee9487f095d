"""The search space: candidate thresholds per mode and candidate minimum areas.

Absolute (cosine) and contrast (probability) candidates are quantiles of the scores seen on the
search tiles for the concepts asked about, so the grid follows the weights' own scale (random
weights score far from GRAFT's 0.0-0.2); relative candidates are fixed fractions of a map's range.
The engine's own setting is always a candidate, so the search can only keep or beat it. Minimum
areas are multiples of the tiles' pixel area, tried around the best thresholds only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from graft_vqa.config import THRESHOLD_MODES, FindConfig
from graft_vqa.thresholds import Threshold

QUANTILES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995)  # of the pooled scores
RELATIVE = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)  # fractions of a map's range
MIN_AREA_PIXELS = (0, 16, 64)  # minimum instance areas, in pixels of the median pixel area
SAMPLE_STEP = 37  # every 37th pixel of each map enters the pooled quantiles


@dataclass
class SearchSpace:
    """Candidate values per mode and candidate minimum areas (m²)."""

    values: dict[str, list[float]]  # mode -> candidate values, ascending
    min_areas: list[float]  # candidate minimum areas in m², ascending (the engine's among them)
    base: Threshold  # the engine's own setting (always among the candidates)
    quantiles: tuple[float, ...] = QUANTILES  # the levels the absolute/contrast values come from
    notes: dict[str, Any] = field(default_factory=dict)  # how the grid was made (for the report)

    def thresholds(self) -> list[Threshold]:
        """Every (mode, value) candidate at the engine's minimum area, modes in order."""
        return [Threshold(mode, v, self.base.min_area_m2) for mode, vs in self.values.items() for v in vs]

    def with_areas(self, threshold: Threshold) -> list[Threshold]:
        """``threshold`` at every candidate minimum area."""
        return [Threshold(threshold.mode, threshold.value, a) for a in self.min_areas]

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values, "min_area_m2": self.min_areas, "engine_setting": self.base.to_dict(),
                "quantiles": list(self.quantiles), "relative": list(RELATIVE),
                "min_area_pixels": list(MIN_AREA_PIXELS), **self.notes}


def _rounded(values: Iterable[float]) -> list[float]:
    return sorted({float(f"{v:.4g}") for v in values})


def build_space(modes: Iterable[str], base: FindConfig, raw: list[np.ndarray], contrast: list[np.ndarray],
                pixel_area_m2: float | None) -> SearchSpace:
    """The space for ``modes`` from sampled raw scores and contrast probabilities of the search tiles."""
    modes = [m for m in THRESHOLD_MODES if m in set(modes)]
    engine = Threshold.of(base)
    values: dict[str, list[float]] = {}
    for mode in modes:
        if mode == "relative":
            grid = list(RELATIVE)
        else:
            pooled = np.concatenate([m.ravel() for m in (raw if mode == "absolute" else contrast)] or [np.zeros(1)])
            pooled = pooled[np.isfinite(pooled)]
            grid = list(np.quantile(pooled, QUANTILES)) if pooled.size else []
        if mode == engine.mode:
            grid.append(engine.value)
        values[mode] = _rounded(grid)
    areas = [engine.min_area_m2]
    if pixel_area_m2:
        areas += [k * pixel_area_m2 for k in MIN_AREA_PIXELS]
    notes = {"pixel_area_m2": pixel_area_m2}
    return SearchSpace(values, sorted(set(_rounded(areas))), engine, notes=notes)


def sample(score_map: np.ndarray) -> np.ndarray:
    """The pixels of a map that enter the pooled quantiles."""
    return np.asarray(score_map, dtype=np.float32).ravel()[::SAMPLE_STEP]
