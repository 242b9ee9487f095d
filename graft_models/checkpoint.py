"""Reading and writing GRAFT checkpoints: the official Lightning ``.ckpt``, ``.safetensors``, ours.

Our own format is self-describing: ``{"model": state_dict, "config": GraftConfig dict,
"step": int, "format": "graft-vqa/1"}`` (safetensors: the config goes in the metadata).
Every load uses ``torch.load(..., weights_only=True)`` unless the caller trusts the file.
"""
from __future__ import annotations

import json
import logging
import math
import pickle
import re
from dataclasses import fields, replace
from pathlib import Path

import torch

from graft_models import convert
from graft_models.model import GRAFT_MODELS, GraftConfig, GraftModel
from graft_vqa.core.errors import CheckpointError, WeightsNotFoundError

logger = logging.getLogger(__name__)

FORMAT = "graft-vqa/1"
# Keys a checkpoint may lack: image-level GRAFT files carry no pixel head; logit_scale is unused.
OPTIONAL_KEYS = frozenset({"pixel_head.0.weight", "pixel_head.0.bias", "pixel_head.1.weight", "logit_scale"})
_KNOWN_WIDTHS = {1024: "ViT-L", 1280: "ViT-H", 1664: "ViT-bigG", 512: "ViT-S/ViT-M"}
_TRUNCATED = "the file is truncated or not a PyTorch checkpoint"


def read_file(path: Path, *, trust_checkpoint: bool = False,
              what: str = "GRAFT checkpoint") -> tuple[object, dict[str, str]]:
    """Raw checkpoint object and safetensors metadata (empty for pickles); errors in user terms."""
    if not path.is_file():
        raise WeightsNotFoundError(f"{what} {str(path)!r} does not exist; check the path")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_checkpoint), {}
    except pickle.UnpicklingError as exc:
        refused = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if refused is None:
            raise CheckpointError(f"{path}: {_TRUNCATED} ({str(exc).splitlines()[0][:120]})") from None
        raise CheckpointError(
            f"{path}: the checkpoint pickles a non-tensor object ({refused.group(1)}) that safe "
            "loading refuses. If you trust this file, pass trust_checkpoint=True "
            "(CLI: --trust-checkpoint) to unpickle it."
        ) from None
    except Exception as exc:  # noqa: BLE001 - any parse failure of a damaged file means the same to a user
        raise CheckpointError(f"{path}: {_TRUNCATED} ({type(exc).__name__})") from None


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: the file is truncated or not a safetensors file ({exc})") from None


def unwrap(obj: object, meta: dict[str, str]) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The tensor dict inside a checkpoint and our config when the file carries one."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"not a GRAFT checkpoint: it holds a {type(obj).__name__}, not a dict of weights")
    if obj.get("format") == FORMAT or meta.get("format") == FORMAT:
        config = obj.get("config") if "model" in obj else json.loads(meta.get("config", "null"))
        return (obj["model"] if "model" in obj else obj), config
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        return obj["state_dict"], None
    if "model" in obj and isinstance(obj["model"], dict):
        return obj["model"], None
    return obj, None


def diagnose_foreign(keys: set[str]) -> None:
    """Raise a CheckpointError in user terms when the keys belong to some other model."""
    if any(k.startswith(("image_encoder.", "mask_decoder.", "prompt_encoder.")) for k in keys):
        raise CheckpointError(
            "this looks like a SAM (segment-anything) checkpoint, not a GRAFT one; give it as the "
            "SAM checkpoint and pass a GRAFT file (e.g. graft_naip_patch.ckpt) to load_graft"
        )
    if "token_embedding.weight" in keys or any(k.startswith("text_model.") for k in keys):
        raise CheckpointError("this looks like a full CLIP checkpoint (with a text tower), not GRAFT")
    ours = any(k.startswith(("visual.", "pixel_head.")) for k in keys)
    official = any(k.startswith((convert.BACKBONE, "projector.")) for k in keys)  # "module." already stripped
    if not (ours or official):
        sample = ", ".join(sorted(keys)[:5]) or "none"
        raise CheckpointError(f"not a GRAFT checkpoint: no satellite encoder weights (keys like: {sample})")


def to_graft_state(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our :class:`GraftModel` state dict from an unwrapped raw dict of either layout."""
    raw = convert.strip_prefix(raw, "module.")
    diagnose_foreign(set(raw))
    if any(k.startswith(("visual.", "pixel_head.")) for k in raw):
        return raw
    try:
        return convert.official_to_graft(raw)
    except convert.ConversionError as exc:
        raise CheckpointError(f"official GRAFT checkpoint has an unexpected layout: {exc}") from None


def infer_config(sd: dict[str, torch.Tensor]) -> GraftConfig:
    """Architecture from the weights' shapes; a registered config when one matches."""
    try:
        width = sd["visual.class_embedding"].shape[0]
        patch = sd["visual.conv1.weight"].shape[-1]
        n_pos = sd["visual.positional_embedding"].shape[0]
        embed_dim = sd["visual.proj"].shape[1]
        mlp = sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width
    except KeyError as exc:
        raise CheckpointError(f"GRAFT checkpoint lacks {exc.args[0]!r}; the file is incomplete") from None
    if width in _KNOWN_WIDTHS:
        raise CheckpointError(
            f"width {width}: this is a {_KNOWN_WIDTHS[width]} checkpoint, GRAFT uses ViT-B/16 (width 768)"
        )
    layers = len({k.split(".")[3] for k in sd if k.startswith("visual.transformer.resblocks.")})
    grid = math.isqrt(n_pos - 1)
    cfg = GraftConfig(name="custom", image_size=grid * patch, patch_size=patch, width=width,
                      layers=layers, mlp_ratio=mlp, embed_dim=embed_dim)
    for name, known in GRAFT_MODELS.items():
        if replace(known, name="custom") == cfg:
            return known
    return cfg


def load_state(model: GraftModel, sd: dict[str, torch.Tensor]) -> None:
    """Load ``sd`` into ``model``; only :data:`OPTIONAL_KEYS` may be missing, nothing unexpected."""
    try:
        result = model.load_state_dict(sd, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"GRAFT checkpoint does not fit the model: {str(exc)[:400]}") from None
    missing = set(result.missing_keys) - OPTIONAL_KEYS
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"GRAFT checkpoint does not fit the model: missing keys {sorted(missing)[:8]}, "
            f"unexpected keys {sorted(result.unexpected_keys)[:8]}"
        )
    if any(k.startswith("pixel_head.") for k in result.missing_keys):
        logger.warning("checkpoint has no pixel-level head: encode_patches is unavailable")
        model.has_pixel_head = False


def load_module_state(module: torch.nn.Module, sd: dict[str, torch.Tensor], what: str) -> None:
    """Strict ``load_state_dict`` of any module; a mismatch raises CheckpointError naming ``what``."""
    try:
        module.load_state_dict(sd)
    except (RuntimeError, TypeError, AttributeError) as exc:
        detail = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2]) or type(exc).__name__
        raise CheckpointError(f"{what} does not fit the model: {detail[:400]}; "
                              "check that the file is the checkpoint this model expects") from None


def load_graft(path: str | Path, *, trust_checkpoint: bool = False,
               expect: GraftConfig | None = None) -> GraftModel:
    """Load a GRAFT model (eval mode, CPU) from an official ``.ckpt``, ``.safetensors`` or our format.

    ``trust_checkpoint=True`` unpickles non-tensor objects (only for files you trust).
    ``expect``: the architecture the caller needs; a different one raises CheckpointError.
    """
    path = Path(path)
    if trust_checkpoint:
        logger.warning("loading %s with weights_only=False (trusted by the caller)", path)
    raw, saved_config = unwrap(*read_file(path, trust_checkpoint=trust_checkpoint))
    try:
        sd = to_graft_state(raw)
        config = infer_config(sd)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if saved_config is not None:
        known = {f.name for f in fields(GraftConfig)}
        config = GraftConfig(**{k: v for k, v in saved_config.items() if k in known})
    if expect is not None and replace(config, name=expect.name) != expect:
        raise CheckpointError(f"{path} holds a {config} model, but {expect.name} ({expect}) was asked for")
    model = GraftModel(config)
    load_state(model, sd)
    logger.info("loaded GRAFT %s from %s", config.name, path)
    return model.eval()


def save_graft(model: GraftModel, path: str | Path, *, step: int = 0) -> Path:
    """Write our self-describing checkpoint (``.safetensors`` by suffix, else a torch pickle)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        meta = {"format": FORMAT, "config": json.dumps(model.config.to_dict()), "step": str(step)}
        save_file(sd, str(path), metadata=meta)
    else:
        torch.save({"model": sd, "config": model.config.to_dict(), "step": int(step), "format": FORMAT}, path)
    return path


def export_official(model: GraftModel, path: str | Path) -> Path:
    """Write the official layout: ``{"state_dict": ...}`` (flat keys for ``.safetensors``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = convert.graft_to_official({k: v.detach().cpu() for k, v in model.state_dict().items()})
    if not model.has_pixel_head:
        sd = {k: v for k, v in sd.items() if not k.startswith("projector.")}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save({"state_dict": sd}, path)
    return path
