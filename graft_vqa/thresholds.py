"""Calibrated thresholds per concept: the ``thresholds.json`` format, loading, validation and lookup.

``graft-vqa calibrate`` writes the file; ``--thresholds FILE`` (``FindConfig.thresholds``) makes
``find`` use it. The file is versioned and self-describing::

    {"format": "graft-vqa-thresholds", "version": 1, "created": "2026-11-30T12:00:00+00:00",
     "model": {"weights_id": "...", "graft_model": ..., "graft_weights": ..., "text_model": ..., "text_template": ...},
     "global": {"mode": "absolute", "value": 0.09, "min_area_m2": 0.0, ...},
     "concepts": {"building": {"mode": "contrast", "value": 0.4, "min_area_m2": 400.0, "questions": 212, ...}, ...},
     "uncalibrated": {"parking": {"source": "global: too few questions", "questions": 7, ...}, ...},
     "contrast": {"vocabulary": [...], "logit_scale": 100.0},
     "benchmark": {...}, "search": {...}, "heldout": {"before": {...}, "after": {...}}}

A threshold is a ``mode`` (absolute, relative, contrast), a ``value`` on that mode's scale (a cosine,
a fraction of the map's range, a probability) and a minimum instance area in m². ``find(name)``
uses the entry of ``name`` (case and spacing ignored, a plural "s" tolerated) when the file has one,
else the file's global entry; the other find settings (min_pixels, refine, ...) stay the engine's.
Only ``format``, ``version``, ``model.weights_id``, ``global`` and ``concepts`` are read; the other
sections are the calibration's record (benchmark, split, search space, the concepts that keep the
global entry and why, held-out accuracy) and are kept as they are.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graft_vqa.config import THRESHOLD_MODES, FindConfig
from graft_vqa.core.errors import ThresholdsError

FORMAT = "graft-vqa-thresholds"
VERSION = 1
MODE_FIELDS = {"absolute": "threshold", "relative": "relative_threshold", "contrast": "contrast_threshold"}
_MAKE_ONE = "make one with `graft-vqa calibrate`"


def normalise_concept(name: str) -> str:
    """The lookup form of a concept name: lower case, single spaces, trimmed."""
    return re.sub(r"\s+", " ", str(name).strip().lower())


@dataclass(frozen=True)
class Threshold:
    """One calibrated cut: a mode, a value on that mode's scale and a minimum instance area."""

    mode: str  # "absolute" (cosine), "relative" (fraction of the map's range) or "contrast" (probability)
    value: float  # the cut on the mode's scale
    min_area_m2: float = 0.0  # instances smaller than this are dropped

    def apply(self, base: FindConfig) -> FindConfig:
        """``base`` with this mode, value and minimum area (every other find setting kept)."""
        return dataclasses.replace(base, threshold_mode=self.mode, min_area_m2=float(self.min_area_m2),
                                   **{MODE_FIELDS[self.mode]: float(self.value)})

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "value": float(self.value), "min_area_m2": float(self.min_area_m2)}

    @classmethod
    def of(cls, config: FindConfig) -> "Threshold":
        """The threshold a :class:`FindConfig` applies."""
        return cls(config.threshold_mode, float(getattr(config, MODE_FIELDS[config.threshold_mode])),
                   float(config.min_area_m2))

    def describe(self) -> str:
        area = f", min area {self.min_area_m2:g} m2" if self.min_area_m2 else ""
        return f"{self.mode} {self.value:.4g}{area}"


def scorer_id(scorer: Any) -> str:
    """What identifies a scorer's scores: its ``weights_id`` (the default GRAFT scorer's names its weights),
    else its class name."""
    return getattr(scorer, "weights_id", None) or f"scorer:{type(scorer).__qualname__}"


def parse_threshold(entry: Any, where: str) -> Threshold:
    """A :class:`Threshold` from a JSON entry; :class:`ThresholdsError` naming ``where`` when it is invalid."""
    if not isinstance(entry, dict):
        raise ThresholdsError(f"{where} must be an object with mode, value and min_area_m2, got {entry!r}")
    mode, value, area = entry.get("mode"), entry.get("value"), entry.get("min_area_m2", 0.0)
    if mode not in THRESHOLD_MODES:
        raise ThresholdsError(f"{where}: unknown mode {mode!r}; use one of {', '.join(THRESHOLD_MODES)}")
    for name, number in (("value", value), ("min_area_m2", area)):
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise ThresholdsError(f"{where}: {name} must be a finite number, got {number!r}")
    if mode in ("relative", "contrast") and not 0.0 <= value <= 1.0:
        raise ThresholdsError(f"{where}: a {mode} value lies between 0 and 1, got {value}")
    if area < 0:
        raise ThresholdsError(f"{where}: min_area_m2 must be at least 0, got {area}")
    return Threshold(str(mode), float(value), float(area))


@dataclass
class ThresholdTable:
    """A loaded thresholds file: a global threshold and one per concept, with the file's record."""

    global_threshold: Threshold  # for concepts the file has no entry for
    concepts: dict[str, Threshold]  # normalised concept name -> threshold
    model: dict[str, Any]  # the weights the file was calibrated for (weights_id and names)
    record: dict[str, Any] = field(default_factory=dict)  # the whole file as written (saved back as is)
    path: str | None = None  # where it was read from
    _configs: dict[str, tuple[FindConfig, FindConfig]] = field(default_factory=dict, repr=False)

    def entry(self, name: str) -> Threshold | None:
        """The own entry of concept ``name`` (a trailing plural "s" tolerated), or None."""
        key = normalise_concept(name)
        found = self.concepts.get(key)
        if found is None and key.endswith("s"):
            found = self.concepts.get(key[:-1])
        return found

    def lookup(self, name: str) -> Threshold:
        """The threshold of concept ``name``: its own entry, else the global one."""
        found = self.entry(name)
        return found if found is not None else self.global_threshold

    def config_for(self, name: str, base: FindConfig) -> FindConfig:
        """``base`` with the threshold of ``name`` applied (memoised per name and base)."""
        cached = self._configs.get(name)
        if cached is not None and cached[0] is base:
            return cached[1]
        config = self.lookup(name).apply(base)
        self._configs[name] = (base, config)
        return config

    def uses_contrast(self) -> bool:
        """True when any entry (global included) is in contrast mode."""
        return any(t.mode == "contrast" for t in [self.global_threshold, *self.concepts.values()])

    @property
    def weights_id(self) -> str:
        return str(self.model.get("weights_id", ""))

    def weights_warning(self, weights_id: str) -> str | None:
        """The warning every answer carries when the file was calibrated for other weights, else None."""
        if weights_id == self.weights_id:
            return None
        names = ", ".join(f"{k}={v}" for k, v in self.model.items() if k != "weights_id" and v)
        return (f"the thresholds file {self.path or '(in memory)'} was calibrated for other weights "
                f"({self.weights_id}{'; ' + names if names else ''}) than this engine uses ({weights_id}): "
                "its thresholds may not fit; recalibrate with `graft-vqa calibrate` for these weights")

    def vocabulary_warning(self, vocabulary: tuple[str, ...]) -> str | None:
        """A warning when the file's contrast entries were calibrated against another background vocabulary."""
        recorded = (self.record.get("contrast") or {}).get("vocabulary")
        if not self.uses_contrast() or recorded is None or tuple(recorded) == tuple(vocabulary):
            return None
        return (f"the thresholds file {self.path or '(in memory)'} was calibrated in contrast mode against another "
                "background vocabulary than this engine's (--contrast-vocabulary): its contrast thresholds may not fit")

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON: the record, with the thresholds and model as they are now."""
        out = dict(self.record)
        out.update({"format": FORMAT, "version": VERSION, "model": dict(self.model),
                    "global": {**out.get("global", {}), **self.global_threshold.to_dict()}})
        concepts = out.get("concepts") if isinstance(out.get("concepts"), dict) else {}
        out["concepts"] = {name: {**concepts.get(name, {}), **t.to_dict()} for name, t in sorted(self.concepts.items())}
        return out

    def save(self, path: str | Path) -> Path:
        """Write the file (atomically) and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        self.path = str(path)
        return path


def table_from_dict(data: Any, where: str = "thresholds") -> ThresholdTable:
    """A validated :class:`ThresholdTable` from the file's JSON (``where`` names it in errors)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ThresholdsError(f"{where} is not a graft-vqa thresholds file (no \"format\": \"{FORMAT}\"); {_MAKE_ONE}")
    if data.get("version") != VERSION:
        raise ThresholdsError(f"{where} is format version {data.get('version')!r}; this graft-vqa reads version "
                              f"{VERSION}: recalibrate with `graft-vqa calibrate`")
    model = data.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("weights_id"), str):
        raise ThresholdsError(f"{where}: \"model\" must name the weights it was calibrated for (model.weights_id)")
    concepts = data.get("concepts", {})
    if not isinstance(concepts, dict):
        raise ThresholdsError(f"{where}: \"concepts\" must map concept names to thresholds")
    table = {normalise_concept(name): parse_threshold(entry, f"{where}: concept {name!r}")
             for name, entry in concepts.items()}
    glob = parse_threshold(data.get("global"), f"{where}: \"global\"")
    return ThresholdTable(glob, table, dict(model), record=dict(data))


def load_thresholds(path: str | Path) -> ThresholdTable:
    """Read and validate a thresholds file.

    Raises:
        ThresholdsError: missing, unreadable, not JSON, another format or version, or an invalid entry
            (one line that names the file and the entry).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ThresholdsError(f"thresholds file {path} does not exist; {_MAKE_ONE}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ThresholdsError(f"cannot read thresholds file {path} ({type(exc).__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ThresholdsError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                              f"{_MAKE_ONE}") from None
    table = table_from_dict(data, str(path))
    table.path = str(path)
    return table
