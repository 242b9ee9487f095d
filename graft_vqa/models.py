"""Building the engine's default scorer and SAM refiner from the weights registry.

Called lazily by :class:`~graft_vqa.engine.Engine` on first use, never at import. Each builder
returns the model and a list of warnings to attach to every answer (untrained weights, no SAM).
"""
from __future__ import annotations

import logging
from typing import Any

from graft_vqa import weights
from graft_vqa.config import EngineConfig
from graft_vqa.errors import WeightsNotFoundError

log = logging.getLogger(__name__)

UNTRAINED_WARNING = ("{what} weights were not found and random weights are used (allow_untrained): "
                     "answers are NOT meaningful. {hint}")


def _untrained(what: str, name: str) -> str:
    message = UNTRAINED_WARNING.format(what=what, hint=weights.missing_message(name).split(". To run")[0] + ".")
    log.warning(message)
    return message


def build_default_scorer(config: EngineConfig) -> tuple[Any, list[str]]:
    """The GRAFT pixel-level scorer: GRAFT checkpoint + CLIP ViT-B/16 text tower."""
    from graft_models import build_graft, build_text_encoder, load_graft
    from graft_vqa.perception.scorer import GraftScorer

    warnings: list[str] = []
    try:
        path = weights.resolve(config.graft_weights, config.graft_checkpoint)
        model = load_graft(path, trust_checkpoint=config.trust_checkpoint)
    except WeightsNotFoundError:
        if not config.allow_untrained:
            raise
        model = build_graft(config.graft_model)
        warnings.append(_untrained("GRAFT", config.graft_weights))
    try:
        clip_path = weights.resolve("clip-vitb16", config.clip_checkpoint)
        text = build_text_encoder(config.text_model, checkpoint=str(clip_path))
    except WeightsNotFoundError:
        if not config.allow_untrained:
            raise
        text = build_text_encoder(config.text_model, allow_random=True)
        warnings.append(_untrained("CLIP text", "clip-vitb16"))
    model = model.to(config.device).eval()
    return GraftScorer(model, text, template=config.text_template), warnings


def build_default_refiner(config: EngineConfig) -> tuple[Any, list[str]]:
    """SAM from the registry; without weights, no refinement and one warning (never random SAM)."""
    from graft_vqa.perception.sam import SamRefiner, build_sam

    name = f"sam-{config.sam_model}"
    try:
        path = weights.resolve(name, config.sam_checkpoint)
    except WeightsNotFoundError as exc:
        message = f"SAM refinement is off: {exc}"
        log.warning(message)
        return None, [message]
    # SAM's decoder repeats the image embedding for every prompt, so on a CPU one huge batch is
    # slower than small chunks (bench/find.py: 20 prompts in one call 1.95 s, chunks of 4 1.12 s);
    # on a GPU one call per tile is best.
    max_batch = 4 if str(config.device).startswith("cpu") else None
    sam = build_sam(config.sam_model, checkpoint=str(path)).to(config.device)
    return SamRefiner(sam, max_batch=max_batch), []
