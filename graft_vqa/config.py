"""Engine configuration: one dataclass, passed explicitly (nothing is read at import time)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Names of graft_models.GRAFT_MODELS, without importing torch (tests check that they agree).
GRAFT_MODEL_NAMES: tuple[str, ...] = ("graft-vitb16", "graft-tiny")


@dataclass
class FindConfig:
    threshold: float = 0.12  # absolute cosine threshold on GRAFT's scale (scores are typically 0.0-0.2)
    threshold_mode: Literal["absolute", "relative"] = "absolute"  # relative: fraction of the map's range
    relative_threshold: float = 0.5  # in relative mode: keep pixels above min + r * (max - min)
    min_area_m2: float = 0.0  # drop components smaller than this (needs georeferencing or gsd_m)
    min_pixels: int = 4  # drop components with fewer pixels (always applies)
    refine: Literal["sam", "none"] = "sam"  # SAM refinement of components
    sam_box_prompt: bool = False  # also pass the component's box to SAM
    merge_iou: float = 0.7  # merge refined instances that overlap more than this


@dataclass
class EngineConfig:
    graft_model: str = "graft-vitb16"  # architecture in graft_models' registry (graft-tiny for tests)
    graft_weights: str = "graft-naip-patch"  # entry of graft_vqa.weights for the GRAFT checkpoint
    graft_checkpoint: str | None = None  # explicit GRAFT checkpoint path (else resolved by weights)
    text_model: str = "clip-vitb16"  # text tower in graft_models.text (clip-tiny for tests)
    clip_checkpoint: str | None = None  # explicit CLIP ViT-B/16 weights (else resolved by weights)
    text_template: str = "raw"  # prompt template for queries: raw (official demo) or ensemble
    sam_model: str = "vit_b"  # SAM size: vit_b, vit_l, vit_h
    sam_checkpoint: str | None = None  # explicit SAM checkpoint path (else resolved by weights)
    allow_untrained: bool = False  # random weights when none are found; every answer then warns
    trust_checkpoint: bool = False  # allow unpickling non-tensor objects in checkpoints the user trusts
    device: str = "cpu"  # torch device for the models
    gsd_m: float | None = None  # ground sample distance for non-georeferenced images
    find: FindConfig = field(default_factory=FindConfig)
    sandbox_timeout_s: float = 30.0  # wall-clock limit per program
    sandbox_call_budget: int = 200  # ImagePatch calls per program
    planner_attempts: int = 3  # LLM planner: attempts with the error fed back
    cache_dir: str | None = None  # program cache folder; None: $GRAFT_VQA_HOME/programs (weights.home())
