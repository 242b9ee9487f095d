"""The search space: candidate thresholds per mode (globally and per concept) and candidate minimum areas.

Absolute (cosine) and contrast (probability) candidates follow the weights' own scale (random
weights score far from GRAFT's 0.0-0.2, and each concept has its own): each search tile's map of
each concept asked about is summarised by where its bulk ends and its peaks lie (its
``ORDER_STATS`` quantiles). The global candidates are the ``LEVELS`` quantiles of all concepts'
summaries together; a concept's candidates add the ``LEVELS`` quantiles of its own summaries, so a
concept that scores low everywhere still gets cuts on its own scale. Relative candidates are fixed
fractions of a map's range. The engine's own setting is always a candidate, so the search can only
keep or beat it. Minimum areas are multiples of the tiles' pixel area, tried around the best
thresholds only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from graft_vqa.config import THRESHOLD_MODES, FindConfig
from graft_vqa.thresholds import Threshold

ORDER_STATS = (0.5, 0.9, 0.99, 1.0)  # each map's summary: its median, upper tail and peak
LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # quantiles of the pooled summaries: the candidates
RELATIVE = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)  # fractions of a map's range
MIN_AREA_PIXELS = (0, 16, 64)  # minimum instance areas, in pixels of the median pixel area
DATA_MODES = ("absolute", "contrast")  # modes whose candidates come from the maps

Summaries = dict[str, dict[str, list[np.ndarray]]]  # mode -> concept -> one summary per search tile


@dataclass
class SearchSpace:
    """Candidate values per mode, globally and per concept, and candidate minimum areas (m²)."""

    values: dict[str, list[float]]  # mode -> global candidate values, ascending
    min_areas: list[float]  # candidate minimum areas in m², ascending (the engine's among them)
    base: Threshold  # the engine's own setting (always among the candidates)
    concept_values: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # concept -> mode -> values
    notes: dict[str, Any] = field(default_factory=dict)  # how the grid was made (for the report)

    def thresholds(self, concept: str | None = None) -> list[Threshold]:
        """Every (mode, value) candidate at the engine's minimum area: the global ones, plus ``concept``'s own."""
        own = self.concept_values.get(concept, {}) if concept is not None else {}
        return [Threshold(mode, v, self.base.min_area_m2) for mode, vs in self.values.items()
                for v in sorted(set(vs) | set(own.get(mode, [])))]

    def with_areas(self, threshold: Threshold) -> list[Threshold]:
        """``threshold`` at every candidate minimum area."""
        return [Threshold(threshold.mode, threshold.value, a) for a in self.min_areas]

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values, "concept_values": self.concept_values, "min_area_m2": self.min_areas,
                "engine_setting": self.base.to_dict(), "order_stats": list(ORDER_STATS), "levels": list(LEVELS),
                "relative": list(RELATIVE), "min_area_pixels": list(MIN_AREA_PIXELS), **self.notes}


def _rounded(values: Iterable[float]) -> list[float]:
    return sorted({float(f"{v:.4g}") for v in values})


def _levels(summaries: list[np.ndarray]) -> list[float]:
    pooled = np.concatenate(summaries) if summaries else np.zeros(0)
    return list(np.quantile(pooled, LEVELS)) if pooled.size else []


def build_space(modes: Iterable[str], base: FindConfig, summaries: Summaries, pixel_area_m2: float | None) -> SearchSpace:
    """The space for ``modes`` from the :func:`summary` of each map of the search tiles, per mode and concept."""
    modes = [m for m in THRESHOLD_MODES if m in set(modes)]
    engine = Threshold.of(base)
    values: dict[str, list[float]] = {}
    per_concept: dict[str, dict[str, list[float]]] = {}
    for mode in modes:
        if mode in DATA_MODES:
            by_concept = summaries.get(mode, {})
            grid = _levels([s for ss in by_concept.values() for s in ss])
            for concept, ss in by_concept.items():
                per_concept.setdefault(concept, {})[mode] = _rounded(_levels(ss))
        else:
            grid = list(RELATIVE)
        if mode == engine.mode:
            grid.append(engine.value)
        values[mode] = _rounded(grid)
    areas = [engine.min_area_m2]
    if pixel_area_m2:
        areas += [k * pixel_area_m2 for k in MIN_AREA_PIXELS]
    return SearchSpace(values, sorted(set(_rounded(areas))), engine, per_concept,
                       notes={"pixel_area_m2": pixel_area_m2})


def summary(score_map: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """A map's ``ORDER_STATS`` quantiles over its valid pixels (what enters the pooled candidates)."""
    values = np.asarray(score_map, dtype=np.float32)
    values = values[valid] if valid is not None else values.ravel()
    values = values[np.isfinite(values)]
    return np.quantile(values, ORDER_STATS) if values.size else np.zeros(0)
