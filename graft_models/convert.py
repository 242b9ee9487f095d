"""Key conversion between the official GRAFT layout and ours, in small named steps.

Official (PyTorch Lightning ``state_dict``, Hugging Face ``CLIPVisionModelWithProjection`` layout)::

    satellite_image_backbone.vision_model.embeddings.{class_embedding, patch_embedding.weight,
        position_embedding.weight, position_ids}
    satellite_image_backbone.vision_model.{pre_layrnorm, post_layernorm}.{weight, bias}
    satellite_image_backbone.vision_model.encoder.layers.{i}.self_attn.{q,k,v,out}_proj.{weight,bias}
    satellite_image_backbone.vision_model.encoder.layers.{i}.{layer_norm1, layer_norm2, mlp.fc1, mlp.fc2}.*
    satellite_image_backbone.visual_projection.weight      (embed_dim x width, no bias)
    projector.0.{weight, bias}  (LayerNorm)   projector.1.weight  (Linear, no bias)   logit_scale

Ours (:class:`GraftModel`): ``visual.*`` (open_clip ``VisionTransformer``), ``pixel_head.{0,1}.*``,
``logit_scale``. q/k/v are fused into ``attn.in_proj_*``; ``proj`` is ``visual_projection.weight.T``.
"""
from __future__ import annotations

import re

import torch

BACKBONE = "satellite_image_backbone."
VISION = BACKBONE + "vision_model."
PROJECTION = BACKBONE + "visual_projection.weight"
POSITION_IDS = VISION + "embeddings.position_ids"

# Keys of the official file that are not weights of the satellite encoder and are dropped on
# purpose (non-strict part of the conversion, by name).
DROPPED_OFFICIAL_KEYS = (POSITION_IDS,)

# One-to-one renames, official -> ours (regex on the key with the ``VISION`` prefix removed).
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^embeddings\.class_embedding$", "visual.class_embedding"),
    (r"^embeddings\.patch_embedding\.weight$", "visual.conv1.weight"),
    (r"^embeddings\.position_embedding\.weight$", "visual.positional_embedding"),
    (r"^pre_layrnorm\.(weight|bias)$", r"visual.ln_pre.\1"),
    (r"^post_layernorm\.(weight|bias)$", r"visual.ln_post.\1"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)$",
     r"visual.transformer.resblocks.\1.attn.out_proj.\2"),
    (r"^encoder\.layers\.(\d+)\.layer_norm1\.(weight|bias)$", r"visual.transformer.resblocks.\1.ln_1.\2"),
    (r"^encoder\.layers\.(\d+)\.layer_norm2\.(weight|bias)$", r"visual.transformer.resblocks.\1.ln_2.\2"),
    (r"^encoder\.layers\.(\d+)\.mlp\.fc1\.(weight|bias)$", r"visual.transformer.resblocks.\1.mlp.c_fc.\2"),
    (r"^encoder\.layers\.(\d+)\.mlp\.fc2\.(weight|bias)$", r"visual.transformer.resblocks.\1.mlp.c_proj.\2"),
)
_QKV = re.compile(r"^encoder\.layers\.(\d+)\.self_attn\.(q|k|v)_proj\.(weight|bias)$")


class ConversionError(ValueError):
    """A key could not be mapped; the loader turns this into a user-facing CheckpointError."""


def strip_prefix(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key that has it (e.g. DDP's ``module.``)."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}


def drop_keys(sd: dict[str, torch.Tensor], keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Copy of ``sd`` without ``keys`` (missing ones are fine)."""
    return {k: v for k, v in sd.items() if k not in keys}


def fuse_qkv(vision: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fuse ``q/k/v_proj`` into open_clip's ``in_proj_{weight,bias}`` (order q, k, v)."""
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    out = {}
    for key, value in vision.items():
        m = _QKV.match(key)
        if m is None:
            out[key] = value
            continue
        parts.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
    for (layer, kind), qkv in parts.items():
        if set(qkv) != {"q", "k", "v"}:
            missing = sorted({"q", "k", "v"} - set(qkv))
            raise ConversionError(f"layer {layer}: {kind} of {missing} attention projection(s) missing")
        fused = torch.cat([qkv["q"], qkv["k"], qkv["v"]], dim=0)
        out[f"visual.transformer.resblocks.{layer}.attn.in_proj_{kind}"] = fused
    return out


def rename_vision(vision: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the one-to-one keys; keys already renamed (``visual.``) pass through."""
    out = {}
    for key, value in vision.items():
        if key.startswith("visual."):
            out[key] = value
            continue
        for pattern, repl in _RENAMES:
            if re.match(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            raise ConversionError(f"unexpected vision key {VISION + key!r}")
    return out


def official_to_graft(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert an official ``state_dict`` (unwrapped, DDP ``module.`` prefix already stripped) to
    :class:`GraftModel` keys.

    Keys outside the satellite encoder, the projector and ``logit_scale`` raise ConversionError.
    """
    sd = drop_keys(sd, DROPPED_OFFICIAL_KEYS)
    vision = {k[len(VISION):]: v for k, v in sd.items() if k.startswith(VISION)}
    out = rename_vision(fuse_qkv(vision))
    for key, value in sd.items():
        if key.startswith(VISION):
            continue
        if key == PROJECTION:
            out["visual.proj"] = value.t().contiguous()
        elif key.startswith("projector."):
            out["pixel_head." + key[len("projector."):]] = value
        elif key == "logit_scale":
            out["logit_scale"] = value.reshape(())
        else:
            raise ConversionError(f"unexpected key {key!r}")
    return out


def graft_to_official(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert :class:`GraftModel` keys back to the official layout (inverse of the above)."""
    out: dict[str, torch.Tensor] = {}
    block = re.compile(r"^visual\.transformer\.resblocks\.(\d+)\.(.+)$")
    simple = {
        "visual.class_embedding": "embeddings.class_embedding",
        "visual.conv1.weight": "embeddings.patch_embedding.weight",
        "visual.positional_embedding": "embeddings.position_embedding.weight",
        "visual.ln_pre.weight": "pre_layrnorm.weight", "visual.ln_pre.bias": "pre_layrnorm.bias",
        "visual.ln_post.weight": "post_layernorm.weight", "visual.ln_post.bias": "post_layernorm.bias",
    }
    in_block = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1",
                "mlp.c_proj": "mlp.fc2", "attn.out_proj": "self_attn.out_proj"}
    for key, value in sd.items():
        if key in simple:
            out[VISION + simple[key]] = value
        elif key == "visual.proj":
            out[PROJECTION] = value.t().contiguous()
        elif key.startswith("pixel_head."):
            out["projector." + key[len("pixel_head."):]] = value
        elif key == "logit_scale":
            out["logit_scale"] = value
        elif (m := block.match(key)) is not None:
            out.update(_block_to_official(m.group(1), m.group(2), value, in_block))
        else:
            raise ConversionError(f"cannot export key {key!r}")
    n_pos = sd["visual.positional_embedding"].shape[0]
    out[POSITION_IDS] = torch.arange(n_pos).unsqueeze(0)
    return out


def _block_to_official(layer: str, rest: str, value: torch.Tensor,
                       in_block: dict[str, str]) -> dict[str, torch.Tensor]:
    """Official keys for one transformer-block tensor (splits the fused q/k/v)."""
    base = f"{VISION}encoder.layers.{layer}."
    if rest.startswith("attn.in_proj_"):
        kind = rest[len("attn.in_proj_"):]
        q, k, v = value.chunk(3, dim=0)
        return {f"{base}self_attn.{n}_proj.{kind}": t.contiguous() for n, t in zip("qkv", (q, k, v))}
    module, _, param = rest.rpartition(".")
    if module not in in_block:
        raise ConversionError(f"cannot export block key {rest!r}")
    return {f"{base}{in_block[module]}.{param}": value}
