"""Training configuration: YAML file -> nested dataclasses, with ``--set section.key=value`` overrides."""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from graft_models.losses import DIRECTIONS, REDUCTIONS
from graft_vqa.core.errors import ConfigError

__all__ = ["ConfigError", "TrainConfig", "config_from_dict", "config_to_dict", "load_config", "validate"]


@dataclass
class DataConfig:
    root: str = ""  # root of the official pair layout (split_m2o/, pixel_offset.csv)
    train_split: str = "train"  # split file used for training
    val_split: str = "test"  # split used for validation recall ("" disables validation)
    embeddings: str | None = None  # embed_ground folder: train from stored ground embeddings; None: raw images
    image_size: int = 224  # satellite input side in pixels
    ground_size: int = 224  # ground photo side for the frozen encoder (raw-image mode)
    max_ground: int = 25  # ground photos kept per satellite image
    batch_size: int = 32  # satellite images per rank per micro-step
    num_workers: int = 0  # DataLoader worker processes


@dataclass
class ModelConfig:
    name: str = "graft-vitb16"  # satellite encoder in graft_models' registry
    clip_checkpoint: str | None = None  # CLIP ViT-B/16 weights (open_clip state dict): inits both towers
    ground_encoder: str = "clip-vitb16"  # frozen ground encoder for raw-image mode (graft-tiny: tests)
    allow_untrained: bool = False  # random initial weights when no clip_checkpoint (tests only)


@dataclass
class LossConfig:
    level: str = "image"  # image | pixel | both (sum, pixel term weighted by pixel_weight)
    tau: float = 0.07  # fixed temperature
    direction: str = "ground"  # normalisation: ground | satellite | both (see graft_models.losses)
    reduction: str = "pairs"  # mean over all pairs, or "images": over j within i, then over i
    pixel_weight: float = 1.0  # weight of the pixel-level term when level is both


@dataclass
class OptimConfig:
    lr: float = 1e-5  # peak learning rate (AdamW)
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW betas
    eps: float = 1e-6  # AdamW epsilon
    warmup_steps: int = 100  # linear warm-up from 0, in optimizer steps
    steps: int = 1000  # total optimizer steps (length of the cosine schedule)
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    grad_accum: int = 1  # micro-batches per optimizer step (each its own contrastive batch)
    clip_grad: float = 1.0  # max global gradient norm (0 disables)


@dataclass
class ZeroShotConfig:
    folder: str | None = None  # folder-per-class image set (e.g. EuroSAT) classified at validation; None: off
    template: str = "ensemble"  # prompt template name in graft_models.text.TEMPLATES
    text_model: str = "clip-vitb16"  # text tower in graft_models.text.TEXT_MODELS (clip-tiny: tests)
    text_checkpoint: str | None = None  # CLIP text weights; None: model.clip_checkpoint (random if untrained)
    pad: str = "zeros"  # small chips: zero-pad to 224 (zeros) or upsample (resize)
    batch_size: int = 32  # images per forward pass


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)  # pair data
    model: ModelConfig = field(default_factory=ModelConfig)  # encoders and initialisation
    loss: LossConfig = field(default_factory=LossConfig)  # loss options
    optim: OptimConfig = field(default_factory=OptimConfig)  # optimiser and schedule
    zeroshot: ZeroShotConfig = field(default_factory=ZeroShotConfig)  # zero-shot classification check
    out_dir: str = "runs/graft"  # checkpoints, metrics.csv, TensorBoard logs, export
    seed: int = 0  # model init and data order
    device: str = "auto"  # auto | cuda | cpu
    precision: str = "bf16"  # bf16 autocast on CUDA (CPU always runs fp32) | fp32
    log_every: int = 10  # optimizer steps between metric rows
    ckpt_every: int = 100  # optimizer steps between checkpoints (the last step always saves)
    keep_checkpoints: int = 3  # newest step checkpoints kept on disk
    val_every: int = 0  # optimizer steps between validation runs (0: only at the end)
    val_max: int = 2000  # satellite images used for validation recall
    recall_k: tuple[int, ...] = (1, 5, 10)  # k for recall@k
    stop_at: int = 0  # stop after this step without finishing the schedule (0: run to optim.steps)
    export: str = "graft_official.ckpt"  # official-layout export written at the end ("" skips)
    progress: bool = True  # tqdm progress bar on rank 0
    tensorboard: bool = True  # also log to out_dir/tb when tensorboard is installed
    dump_grads: bool = False  # debugging: save step-1 gradients to out_dir/grads_step1.pt


def _fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"config key {key}: bad value {value!r}; allowed: {allowed}")


def _coerce(key: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of ``default`` (bool, int, float, str, str|None, tuple)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise _fail(key, value, "true or false")
        return value
    if isinstance(default, (int, float)):
        kind = type(default)
        name = "an integer" if kind is int else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise _fail(key, value, name)
        try:  # YAML reads "1e-4" as a string
            number = float(value) if kind is float else float(value) if isinstance(value, str) else value
        except ValueError:
            raise _fail(key, value, name) from None
        if kind is int and (not math.isfinite(number) or number != int(number)):
            raise _fail(key, value, name)
        return kind(number)
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or not value:
            raise _fail(key, value, f"a non-empty list like {list(default)}")
        return tuple(_coerce(f"{key}[{i}]", v, default[0]) for i, v in enumerate(value))
    if isinstance(default, str) or default is None:
        if isinstance(value, str) or (value is None and default is None):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _fail(key, value, "a string" if default is not None else "a path (string) or null")
    return value


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {sorted(f'{where}{k}' for k in unknown)}; "
                          f"known in {where or 'top level'}: {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if is_dataclass(default):
            if not isinstance(value, dict):
                raise _fail(f"{where}{name}", value, f"a mapping of {sorted(f.name for f in fields(default))}")
            value = _build(type(default), value, f"{where}{name}.")
        else:
            value = _coerce(f"{where}{name}", value, default)
        kwargs[name] = value
    return cls(**kwargs)


# Allowed values of the string options (see the field comments).
CHOICES: dict[str, tuple[str, ...]] = {
    "loss.level": ("image", "pixel", "both"),
    "loss.direction": DIRECTIONS,
    "loss.reduction": REDUCTIONS,
    "precision": ("bf16", "fp32"),
    "zeroshot.pad": ("zeros", "resize"),
}
# Numeric options that must be > 0, and those that must be >= 0.
POSITIVE = ("data.image_size", "data.ground_size", "data.max_ground", "data.batch_size", "loss.tau",
            "optim.lr", "optim.eps", "optim.steps", "optim.grad_accum", "zeroshot.batch_size",
            "log_every", "ckpt_every", "keep_checkpoints", "val_max")
NON_NEGATIVE = ("data.num_workers", "loss.pixel_weight", "optim.weight_decay", "optim.warmup_steps",
                "optim.clip_grad", "val_every", "stop_at")


def _get(cfg: "TrainConfig", key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def validate(cfg: "TrainConfig") -> "TrainConfig":
    """Check every option's value; raise :class:`ConfigError` naming key, value and allowed values."""
    for key, allowed in CHOICES.items():
        if _get(cfg, key) not in allowed:
            raise _fail(key, _get(cfg, key), " | ".join(allowed))
    if cfg.device not in ("auto", "cpu", "cuda") and re.fullmatch(r"cuda:\d+", cfg.device) is None:
        raise _fail("device", cfg.device, "auto | cpu | cuda | cuda:N")
    for key in POSITIVE:
        if not _get(cfg, key) > 0:
            raise _fail(key, _get(cfg, key), "a number > 0")
    for key in NON_NEGATIVE:
        if not _get(cfg, key) >= 0:
            raise _fail(key, _get(cfg, key), "a number >= 0")
    if not 0 <= cfg.optim.min_lr_ratio <= 1:
        raise _fail("optim.min_lr_ratio", cfg.optim.min_lr_ratio, "a number in [0, 1]")
    if len(cfg.optim.betas) != 2 or not all(0 <= b < 1 for b in cfg.optim.betas):
        raise _fail("optim.betas", list(cfg.optim.betas), "two numbers in [0, 1), e.g. [0.9, 0.98]")
    if not all(k > 0 for k in cfg.recall_k):
        raise _fail("recall_k", list(cfg.recall_k), "integers > 0, e.g. [1, 5, 10]")
    if cfg.stop_at > cfg.optim.steps:
        raise _fail("stop_at", cfg.stop_at, f"0 (run to optim.steps) or at most optim.steps={cfg.optim.steps}")
    return cfg


def _set(tree: dict, dotted: str) -> None:
    if "=" not in dotted:
        raise ConfigError(f"override {dotted!r} must look like section.key=value")
    key, raw = dotted.split("=", 1)
    *parents, leaf = key.strip().split(".")
    node = tree
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {p} is not a section")
    try:
        node[leaf] = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"override {dotted!r}: the value is not valid YAML") from None


def config_from_dict(tree: dict, overrides: list[str] | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from a nested dict plus ``key.sub=value`` overrides.

    Values are converted to each option's type (or rejected) and checked by :func:`validate`.
    """
    tree = dict(tree or {})
    for o in overrides or []:
        _set(tree, o)
    return validate(_build(TrainConfig, tree, ""))


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (or the defaults when ``path`` is None) and apply overrides."""
    tree = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found")
        tree = yaml.safe_load(p.read_text()) or {}
    return config_from_dict(tree, overrides)


def config_to_dict(cfg: TrainConfig) -> dict:
    """Plain nested dict (tuples as lists), safe for YAML and ``weights_only`` checkpoints."""
    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x
    return plain(asdict(cfg))
