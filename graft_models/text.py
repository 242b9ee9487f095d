"""CLIP text tower (open_clip ``ViT-B-16-quickgelu``), L2-normalised, with prompt templates and an LRU cache.

GRAFT's satellite features live in CLIP's joint space, so the stock CLIP ViT-B/16 text tower
scores them. Weights come from an explicit checkpoint path (an open_clip CLIP state dict, e.g.
``open_clip_pytorch_model.bin`` / ``open_clip_model.safetensors`` of ``ViT-B-16-quickgelu`` openai,
or a bare text-tower state dict); random weights only with ``allow_random=True``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from graft_vqa.core.errors import CheckpointError, WeightsNotFoundError
from graft_vqa.core.lru import LRU

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextConfig:
    """Architecture of a CLIP text tower."""

    name: str = "clip-vitb16"  # registry name
    context_length: int = 77  # tokens per prompt (CLIP's)
    vocab_size: int = 49408  # CLIP BPE vocabulary size (open_clip's bundled tokenizer)
    width: int = 512  # transformer width
    heads: int = 8  # attention heads
    layers: int = 12  # transformer blocks
    embed_dim: int = 512  # output size, equal to GRAFT's embedding size
    quick_gelu: bool = True  # QuickGELU as in OpenAI's CLIP


TEXT_MODELS: dict[str, TextConfig] = {
    "clip-vitb16": TextConfig(),
    "clip-tiny": TextConfig(name="clip-tiny", width=64, heads=2, layers=2),
}

# Prompt templates by name; "{}" is replaced by the query. Ensembles average the normalised
# embeddings of every template and renormalise.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "raw": ("{}",),  # the text as is, as the official GRAFT demo does
    "satellite": ("a satellite image of {}.",),
    "ensemble": (
        "a satellite image of {}.",
        "a satellite photo of {}.",
        "an aerial image of {}.",
        "an aerial photo of {}.",
        "a remote sensing image of {}.",
        "a satellite image showing {}.",
        "a top-down view of {}.",
    ),
}

_TEXT_PREFIXES = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")


class TextEncoder:
    """Encodes texts to L2-normalised CLIP embeddings with a template and an LRU cache."""

    def __init__(self, tower: nn.Module, tokenizer, cache_size: int = 4096, name: str = "custom") -> None:
        self.tower = tower.eval()
        self.tokenizer = tokenizer
        self.cache_size = cache_size
        self.name = name
        self._cache: LRU[tuple[str, str], torch.Tensor] = LRU(max_items=cache_size)

    @property
    def device(self) -> torch.device:
        """Device of the text tower."""
        return next(self.tower.parameters()).device

    @torch.inference_mode()
    def _embed_prompts(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(prompts).to(self.device)  # (N, context_length)
        return F.normalize(encode_trimmed(self.tower, tokens).float(), dim=-1).cpu()

    def _embed(self, texts: list[str], template: str) -> torch.Tensor:
        """Fresh embeddings (N, D) for ``texts`` under ``template`` (no cache)."""
        forms = TEMPLATES[template]
        emb = self._embed_prompts([form.format(t) for t in texts for form in forms])
        emb = emb.reshape(len(texts), len(forms), -1).mean(dim=1)
        return F.normalize(emb, dim=-1)

    def encode(self, texts: list[str], template: str = "raw") -> torch.Tensor:
        """``(N, embed_dim)`` L2-normalised CPU float tensor; cached by ``(template, text)``."""
        if template not in TEMPLATES:
            raise ValueError(f"unknown template {template!r}; choose one of {sorted(TEMPLATES)}")
        if isinstance(texts, str):
            texts = [texts]
        todo = list(dict.fromkeys(t for t in texts if (template, t) not in self._cache))
        fresh = dict(zip(todo, self._embed(todo, template))) if todo else {}
        out = []
        for text in texts:  # this call's texts stay available even when the cache is smaller than the batch
            emb = fresh.get(text)
            if emb is None:
                emb = self._cache.get((template, text))
            self._cache.put((template, text), emb)
            out.append(emb)
        return torch.stack(out) if out else torch.zeros(0, self.tower.output_dim)

    def cache_info(self) -> dict[str, int]:
        """Current and maximum cache sizes."""
        return {"size": len(self._cache), "max": self.cache_size}


def encode_trimmed(tower: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``tower(tokens)`` computed on the tokens up to the batch's last end-of-text token.

    CLIP's text transformer is causal and pools at the end-of-text token (the largest id), so the
    padding after it cannot change the result; skipping it saves most of the 77-token cost. Towers
    that pool or mask otherwise run unchanged.
    """
    plain = (getattr(tower, "cls_emb", None) is None and getattr(tower, "pool_type", "argmax") == "argmax"
             and not getattr(tower, "use_pad_mask", False) and getattr(tower, "attn_mask", None) is not None)
    if not plain:
        return tower(tokens)
    eot = tokens.argmax(dim=-1)  # (N,) end-of-text positions
    length = int(eot.max()) + 1
    x = tower.token_embedding(tokens[:, :length]) + tower.positional_embedding[:length]  # (N, L, width)
    x = tower.transformer(x, attn_mask=tower.attn_mask[:length, :length])
    pooled = tower.ln_final(x)[torch.arange(x.shape[0], device=x.device), eot]  # (N, width)
    projection = tower.text_projection
    return projection(pooled) if isinstance(projection, nn.Linear) else pooled @ projection  # (N, embed_dim)


def build_text_tower(config: TextConfig) -> nn.Module:
    """An open_clip ``TextTransformer`` from ``config`` (random weights, no download)."""
    from open_clip.model import CLIPTextCfg, _build_text_tower

    cfg = CLIPTextCfg(context_length=config.context_length, vocab_size=config.vocab_size,
                      width=config.width, heads=config.heads, layers=config.layers)
    return _build_text_tower(config.embed_dim, cfg, quick_gelu=config.quick_gelu)


def text_state(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The text-tower part of an open_clip CLIP (or bare text-tower) state dict."""
    from graft_models.convert import strip_prefix

    raw = strip_prefix(strip_prefix(raw, "module."), "text.")
    sd = {k: v for k, v in raw.items() if k.startswith(_TEXT_PREFIXES)}
    if not sd:
        sample = ", ".join(sorted(raw)[:5]) or "none"
        raise CheckpointError(f"not an open_clip CLIP text checkpoint (keys like: {sample})")
    return sd


def load_text_weights(tower: nn.Module, path: str | Path, *, trust_checkpoint: bool = False) -> None:
    """Load CLIP text weights from ``path`` into ``tower`` (strict; shapes must match)."""
    from graft_models.checkpoint import read_file, unwrap

    raw, _ = unwrap(*read_file(Path(path), trust_checkpoint=trust_checkpoint, what="CLIP text checkpoint"))
    try:
        tower.load_state_dict(text_state(raw), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: CLIP text weights do not fit the text tower: {str(exc)[:400]}") from None


def build_text_encoder(name: str = "clip-vitb16", checkpoint: str | Path | None = None, *,
                       allow_random: bool = False, trust_checkpoint: bool = False,
                       cache_size: int = 4096) -> TextEncoder:
    """A :class:`TextEncoder` for a registered tower; weights from ``checkpoint``.

    Without a checkpoint, random weights only when ``allow_random=True``.
    """
    import open_clip

    if name not in TEXT_MODELS:
        raise KeyError(f"unknown text model {name!r}; known: {', '.join(sorted(TEXT_MODELS))}")
    config = TEXT_MODELS[name]
    tower = build_text_tower(config)
    if checkpoint is not None:
        load_text_weights(tower, checkpoint, trust_checkpoint=trust_checkpoint)
    elif not allow_random:
        raise WeightsNotFoundError(
            f"no weights for text model {name!r}: pass the CLIP ViT-B-16 (openai) checkpoint path "
            "(open_clip_pytorch_model.bin or open_clip_model.safetensors), or allow random weights"
        )
    else:
        logger.warning("text model %s has random weights (allow_random=True)", name)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=config.context_length)
    return TextEncoder(tower, tokenizer, cache_size=cache_size, name=name)
