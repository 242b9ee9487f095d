"""Building the default scorer, SAM refiner and embedder from the weights registry.

Called lazily (by :class:`~graft_vqa.engine.Engine`, search and classification) on first use, never at
import. Each builder returns the model and a list of warnings to attach to every result (untrained
weights, no SAM).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from graft_vqa import weights
from graft_vqa.answer import UNTRAINED_MARK
from graft_vqa.config import UNTRAINED_SEED, EmbedConfig, EngineConfig
from graft_vqa.core.errors import ConfigError, WeightsNotFoundError

log = logging.getLogger(__name__)

CLIP_WEIGHTS = "clip-vitb16"  # the weights entry (and text model name) of GRAFT's text tower
UNTRAINED_WARNING = ("{what} weights were not found and " + UNTRAINED_MARK + " are used (allow_untrained, seed "
                     + str(UNTRAINED_SEED) + "): answers are NOT meaningful. {hint}")


def _untrained(what: str, hint: str) -> str:
    message = UNTRAINED_WARNING.format(what=what, hint=hint)
    log.warning(message)
    return message


@contextmanager
def _seeded() -> Iterator[None]:
    """Random weights from :data:`~graft_vqa.config.UNTRAINED_SEED`, without touching the caller's RNG,
    so untrained runs (tests, demos, distributed workers) give the same answers every time."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        yield


def _graft_model(config: EngineConfig | EmbedConfig) -> tuple[Any, str, list[str]]:
    """The configured GRAFT architecture with the found checkpoint (a mismatch is a CheckpointError),
    the id of its weights (for caches of its features) and the warnings."""
    from graft_models import build_graft

    try:
        path = weights.resolve(config.graft_weights, config.graft_checkpoint)
    except WeightsNotFoundError:
        if not config.allow_untrained:
            raise
        with _seeded():
            model = build_graft(config.graft_model)
        warning = _untrained("GRAFT", weights.missing_hint(config.graft_weights))
        return model, f"{config.graft_model}:untrained-seed{UNTRAINED_SEED}", [warning]
    model = build_graft(config.graft_model, checkpoint=str(path), trust_checkpoint=config.trust_checkpoint)
    return model, f"{config.graft_model}:{weights.file_id(path)}", []


def _text_encoder(config: EngineConfig | EmbedConfig) -> tuple[Any, list[str]]:
    """The text tower: CLIP ViT-B/16 weights from the registry; other towers (clip-tiny) have no
    published weights, so they need ``clip_checkpoint`` or run untrained with ``allow_untrained``."""
    from graft_models import build_text_encoder

    trust = config.trust_checkpoint
    text_model = config.resolved_text_model()
    if text_model == CLIP_WEIGHTS:
        try:
            path = weights.resolve(CLIP_WEIGHTS, config.clip_checkpoint)
        except WeightsNotFoundError:
            if not config.allow_untrained:
                raise
            hint = weights.missing_hint(CLIP_WEIGHTS)
        else:
            return build_text_encoder(text_model, checkpoint=str(path), trust_checkpoint=trust), []
    elif config.clip_checkpoint is not None:
        return build_text_encoder(text_model, checkpoint=config.clip_checkpoint, trust_checkpoint=trust), []
    else:
        hint = (f"text model {text_model!r} has no published weights: pass clip_checkpoint=PATH "
                f"or use text_model={CLIP_WEIGHTS!r}.")
        if not config.allow_untrained:
            raise WeightsNotFoundError(f"{hint} To run without trained weights, pass allow_untrained=True.")
    with _seeded():
        text = build_text_encoder(text_model, allow_random=True, trust_checkpoint=trust)
    return text, [_untrained("CLIP text", hint)]


def _file_id(name: str, path: str | None) -> str:
    """The fingerprint of the weights file ``name`` resolves to, or the seeded random weights' id."""
    found = weights.find(name, path) if name in weights.WEIGHTS else (Path(path) if path else None)
    return weights.fingerprint(found) if found is not None else f"untrained(seed={UNTRAINED_SEED})"


def scorer_weights_id(config: EngineConfig) -> str:
    """What identifies the default scorer's scores: GRAFT architecture and weights, text tower and weights,
    prompt template. A thresholds file records it; another id means other scores."""
    text_model = config.resolved_text_model()
    text_name = CLIP_WEIGHTS if text_model == CLIP_WEIGHTS else ""
    graft_id = _file_id(config.graft_weights, config.graft_checkpoint)
    text_id = _file_id(text_name, config.clip_checkpoint)
    return f"{config.graft_model}[{graft_id}]+{text_model}[{text_id}]+template={config.text_template}"


def build_default_scorer(config: EngineConfig) -> tuple[Any, list[str]]:
    """The GRAFT pixel-level scorer: GRAFT checkpoint + CLIP ViT-B/16 text tower; its ``weights_id``
    is :func:`scorer_weights_id`."""
    from graft_vqa.perception.scorer import GraftScorer

    model, model_id, warnings = _graft_model(config)
    text, text_warnings = _text_encoder(config)
    model = model.to(config.device).eval()
    scorer = GraftScorer(model, text, template=config.text_template, model_id=model_id)
    scorer.weights_id = scorer_weights_id(config)
    return scorer, warnings + text_warnings


def build_default_refiner(config: EngineConfig) -> tuple[Any, list[str]]:
    """SAM from the registry; without weights, no refinement and one warning (never random SAM)."""
    from graft_vqa.perception.sam import SamRefiner, build_sam

    name = f"sam-{config.sam_model}"
    try:
        path = weights.resolve(name, config.sam_checkpoint)
    except WeightsNotFoundError as exc:
        message = f"SAM refinement is off: {exc}"
        log.warning(message)  # once per engine; answers carry it as a warning
        return None, [message]
    # SAM's decoder repeats the image embedding for every prompt, so on a CPU one huge batch is
    # slower than small chunks (bench/find.py, 20 prompts: one call 2.0 s, chunks of 4 1.1-1.5 s);
    # on a GPU one call per tile is best.
    max_batch = 4 if str(config.device).startswith("cpu") else None
    sam = build_sam(config.sam_model, checkpoint=str(path)).to(config.device)
    return SamRefiner(sam, max_batch=max_batch), []


def required_weights(config: EngineConfig) -> dict[str, tuple[str, str | None]]:
    """The weight files an engine with ``config`` looks for: role ("GRAFT", "CLIP", "SAM") -> (registry
    name, explicit path or None). Cheap: nothing is loaded."""
    needed: dict[str, tuple[str, str | None]] = {"GRAFT": (config.graft_weights, config.graft_checkpoint)}
    if config.resolved_text_model() == CLIP_WEIGHTS:
        needed["CLIP"] = (CLIP_WEIGHTS, config.clip_checkpoint)
    if config.find.refine == "sam":
        needed["SAM"] = (f"sam-{config.sam_model}", config.sam_checkpoint)
    return needed


def missing_weights(config: EngineConfig) -> dict[str, str]:
    """Role -> registry name of each file :func:`required_weights` names that is not found (an explicit
    path that does not exist counts as missing). Cheap: nothing is loaded or downloaded."""
    missing = {}
    for role, (name, path) in required_weights(config).items():
        try:
            found = weights.find(name, path)
        except WeightsNotFoundError:
            found = None
        if found is None:
            missing[role] = name
    return missing


def embedder_id(config: EmbedConfig) -> str:
    """What identifies the default embedder's image embeddings: the GRAFT architecture, the weights name and
    a fingerprint of the file (``untrained-seed0`` for seeded random weights). An index records it."""
    try:
        path = weights.resolve(config.graft_weights, config.graft_checkpoint)
    except WeightsNotFoundError:
        if not config.allow_untrained:
            raise
        return f"{config.graft_model}:untrained-seed{UNTRAINED_SEED}"
    return f"{config.graft_model}:{config.graft_weights}:{weights.fingerprint(path)}"


def build_default_embedder(config: EmbedConfig, *, images: bool = True) -> tuple[Any, list[str]]:
    """The image-level GRAFT model + CLIP text tower as an :class:`~graft_vqa.perception.embedder.GraftEmbedder`;
    ``images=False`` leaves the image model out (a search embeds only its text)."""
    from graft_vqa.perception.embedder import GraftEmbedder

    model, _, warnings = _graft_model(config) if images else (None, None, [])
    text, text_warnings = _text_encoder(config)
    model = model.to(config.device).eval() if model is not None else None
    embedder = GraftEmbedder(model, text, template=config.text_template, batch_size=config.batch_size,
                             model_id=embedder_id(config))
    return embedder, warnings + text_warnings


def resolve_embedder(embedder: Any, config: EmbedConfig, *, images: bool = True) -> tuple[Any, list[str]]:
    """``embedder`` checked against the Embedder protocol, or the default one built from ``config`` (without
    its image model when ``images`` is False)."""
    if embedder is None:
        return build_default_embedder(config, images=images)
    for method in ("embed_images", "embed_texts"):
        if not callable(getattr(embedder, method, None)):
            raise ConfigError(f"the embedder {type(embedder).__name__} has no {method}() method; an embedder needs "
                              "embed_images(tiles) -> (N, D) and embed_texts(texts) -> (M, D), L2-normalised")
    return embedder, []


def embedder_model_id(embedder: Any) -> str:
    """What an index records about ``embedder``: its ``model_id``, else its class's qualified name."""
    model_id = getattr(embedder, "model_id", None)
    return str(model_id) if model_id else f"custom:{type(embedder).__module__}.{type(embedder).__qualname__}"
