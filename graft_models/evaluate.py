"""Held-out checks of a GRAFT checkpoint: retrieval recall@k / mAP on a pair split, zero-shot classification.

``python -m graft_models.evaluate --checkpoint PATH --pairs ROOT [--split test] [--classes FOLDER]
[--out results.json]``. ``PATH`` is a ``graft_models.train`` checkpoint (its config supplies the
image sizes, ground encoder, stored embeddings and text weights; flags override) or any file
:func:`graft_models.checkpoint.load_graft` reads (then pass ``--clip`` or ``--embeddings``).

Retrieval: every satellite image of the split is a query and the split's ground photos the
gallery (a photo is relevant to its own satellite image), and the reverse direction; both through
:func:`graft_models.zeroshot.retrieval_metrics` on embeddings from
:func:`graft_models.retrieval.embed_pairs`. The full similarity matrix is ranked in memory, so cap very
large splits with ``--max-images``. Training calls :func:`zeroshot_metrics` at validation time.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from torch import nn

from graft_models.train_config import (
    ConfigError,
    TrainConfig,
    ZeroShotConfig,
    config_from_dict,
)
from graft_models.retrieval import pair_metrics
from graft_models.train_checkpoint import CKPT_FORMAT
from graft_vqa.core.errors import CheckpointError, GraftVQAError, WeightsNotFoundError

log = logging.getLogger("graft_models.evaluate")


def zeroshot_text_encoder(cfg: TrainConfig, *, build: bool = True):
    """The text encoder for ``cfg.zeroshot`` (None when ``build`` is False, after the same checks).

    Weights: ``zeroshot.text_checkpoint``, else ``model.clip_checkpoint``; random (seeded with
    ``cfg.seed``, leaving the global RNG untouched) only when ``model.allow_untrained``.
    """
    from graft_models.text import TEMPLATES, build_text_encoder
    from graft_models.zeroshot import list_folder_dataset

    z = cfg.zeroshot
    list_folder_dataset(z.folder)  # fails early, naming the folder, when it holds no class folders
    if z.template not in TEMPLATES:
        raise ConfigError(f"zeroshot.template {z.template!r} is unknown; use one of {sorted(TEMPLATES)}")
    checkpoint = z.text_checkpoint or cfg.model.clip_checkpoint
    if checkpoint is None and not cfg.model.allow_untrained:
        raise WeightsNotFoundError("zero-shot classification needs CLIP text weights: set "
                                   "zeroshot.text_checkpoint or model.clip_checkpoint (--text-checkpoint/--clip)")
    if not build:
        return None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return build_text_encoder(z.text_model, checkpoint, allow_random=cfg.model.allow_untrained)


def zeroshot_metrics(model: nn.Module, text_encoder, z: ZeroShotConfig) -> dict[str, float]:
    """``zeroshot_top1`` and ``zeroshot_acc/<class>`` of ``model`` on the folder ``z.folder`` (eval mode)."""
    from graft_models.zeroshot import classify_folder

    was = model.training
    model.eval()
    try:
        res = classify_folder(model, text_encoder, z.folder, template=z.template, pad=z.pad,
                              batch_size=z.batch_size)
    finally:
        model.train(was)
    return {"zeroshot_top1": res.accuracy, **{f"zeroshot_acc/{c}": v for c, v in res.per_class.items()}}


def load_for_eval(path: str | Path, *, trust_checkpoint: bool = False) -> tuple[nn.Module, dict | None]:
    """A GRAFT model (eval mode, CPU) and, for a training checkpoint, its config dict (else None)."""
    from graft_models.checkpoint import load_graft, load_state, read_file
    from graft_models.model import GraftConfig, GraftModel

    path = Path(path)
    raw, _ = read_file(path, trust_checkpoint=trust_checkpoint, what="checkpoint")
    if isinstance(raw, dict) and raw.get("format") == CKPT_FORMAT:
        try:
            model = GraftModel(GraftConfig(**raw["model_config"]))
            config, state = raw["config"], raw["model"]
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: incomplete training checkpoint ({type(exc).__name__}: {exc}); "
                                  "use a file written by graft_models.train") from None
        try:
            load_state(model, state)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        log.info("training checkpoint %s at step %s", path, raw.get("step"))
        return model.eval(), config
    return load_graft(path, trust_checkpoint=trust_checkpoint), None


def settings(a: argparse.Namespace, model: nn.Module, saved: dict | None) -> TrainConfig:
    """The training config of the checkpoint (or defaults), with the command-line flags applied."""
    cfg = config_from_dict(saved or {"data": {"image_size": model.config.image_size}}, a.set)
    for flag, (section, key) in _FLAGS.items():
        value = getattr(a, flag)
        if value is not None:
            setattr(getattr(cfg, section) if section else cfg, key, value)
    if a.allow_untrained:
        cfg.model.allow_untrained = True
    if a.batch_size:
        cfg.zeroshot.batch_size = a.batch_size
    cfg.data.val_split = a.split
    cfg.zeroshot.folder = a.classes
    return cfg


_FLAGS = {"pairs": ("data", "root"), "embeddings": ("data", "embeddings"), "image_size": ("data", "image_size"),
          "ground_size": ("data", "ground_size"), "batch_size": ("data", "batch_size"),
          "ground_encoder": ("model", "ground_encoder"), "clip": ("model", "clip_checkpoint"),
          "text_model": ("zeroshot", "text_model"), "text_checkpoint": ("zeroshot", "text_checkpoint"),
          "template": ("zeroshot", "template"), "pad": ("zeroshot", "pad"), "recall_k": ("", "recall_k")}


def evaluate(a: argparse.Namespace) -> dict:
    """Run the requested checks; returns ``{"checkpoint", "split", "retrieval", "zeroshot"}``."""
    model, saved = load_for_eval(a.checkpoint, trust_checkpoint=a.trust_checkpoint)
    cfg = settings(a, model, saved)
    device = torch.device(a.device if a.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    text = zeroshot_text_encoder(cfg) if cfg.zeroshot.folder else None  # fail fast, before the pairs
    result = {"checkpoint": str(a.checkpoint), "split": a.split, "retrieval": None, "zeroshot": None}
    if a.pairs:
        result["retrieval"] = pair_metrics(cfg, model, device, a.max_images)
    if text is not None:
        result["zeroshot"] = zeroshot_metrics(model, text, cfg.zeroshot)
    return result


def format_table(result: dict) -> str:
    """A two-column text table of every figure in ``result``."""
    rows = [(f"{part}/{k}" if part == "retrieval" else k, v)
            for part in ("retrieval", "zeroshot") for k, v in (result[part] or {}).items()]
    width = max((len(k) for k, _ in rows), default=6)
    return "\n".join([f"{'metric':<{width}}  value"] + [f"{k:<{width}}  {v:.4f}" for k, v in rows])


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (see the module docstring)."""
    ap = argparse.ArgumentParser(description="Held-out retrieval recall@k/mAP and zero-shot classification.")
    ap.add_argument("--checkpoint", required=True, help="graft_models.train checkpoint or a GRAFT model file")
    ap.add_argument("--pairs", help="root of an official pair layout (split_m2o/, pixel_offset.csv)")
    ap.add_argument("--split", default="test", help="split file under split_m2o/ (default: test)")
    ap.add_argument("--classes", help="folder-per-class image set for zero-shot classification")
    ap.add_argument("--embeddings", help="stored ground embeddings (graft_models.embed_ground output)")
    ap.add_argument("--ground-encoder", help="frozen ground encoder: clip-vitb16 or graft-tiny (tests)")
    ap.add_argument("--clip", help="CLIP ViT-B/16 open_clip weights (ground encoder, text tower)")
    ap.add_argument("--text-model", help="text tower: clip-vitb16 or clip-tiny (tests)")
    ap.add_argument("--text-checkpoint", help="CLIP text weights (default: --clip)")
    ap.add_argument("--template", help="prompt template (graft_models.text.TEMPLATES; default ensemble)")
    ap.add_argument("--pad", choices=("zeros", "resize"), help="small chips: zero-pad or upsample to 224")
    ap.add_argument("--image-size", type=int, help="satellite input side (default: the checkpoint's)")
    ap.add_argument("--ground-size", type=int, help="ground photo side for the frozen encoder")
    ap.add_argument("--batch-size", type=int, help="images per forward pass")
    ap.add_argument("--max-images", type=int, help="use only the first N satellite images of the split")
    ap.add_argument("--recall-k", type=lambda s: tuple(int(k) for k in s.split(",")), help="e.g. 1,5,10")
    ap.add_argument("--allow-untrained", action="store_true", help="random encoders where weights lack (tests)")
    ap.add_argument("--trust-checkpoint", action="store_true", help="unpickle non-tensor objects (trusted files)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="other config overrides")
    ap.add_argument("--out", help="write the results as JSON here")
    return ap


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 on a user error, with its message)."""
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not (a.pairs or a.classes):
        print("graft_models.evaluate: error: give --pairs ROOT and/or --classes FOLDER", file=sys.stderr)
        return 2
    try:
        result = evaluate(a)
    except (GraftVQAError, KeyError) as exc:
        message = " ".join(str(exc).split())  # one line
        print(f"graft_models.evaluate: error: {message}", file=sys.stderr)
        return 2
    print(format_table(result))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
