"""Training checkpoints: self-describing files to resume bit-for-bit (``format: graft-train/1``)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from graft_models.checkpoint import read_file
from graft_models.train_config import TrainConfig, config_to_dict
from graft_vqa.core.errors import CheckpointError

CKPT_FORMAT = "graft-train/1"  # the "format" entry of every training checkpoint


def save_checkpoint(path: Path, cfg: TrainConfig, model: nn.Module, opt, sched, step: int) -> None:
    """Self-describing training checkpoint (everything needed to resume bit-for-bit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": CKPT_FORMAT, "step": step, "config": config_to_dict(cfg),
             "model_config": model.config.to_dict(), "model": model.state_dict(),
             "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             # training draws no CUDA random numbers (no dropout; data order from seeded CPU
             # generators), so only the CPU generator is saved and restored
             "rng": {"torch": torch.get_rng_state()}}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    (path.parent / "latest.txt").write_text(path.name + "\n")
    olds = sorted(path.parent.glob("step_*.pt"))[:-max(1, cfg.keep_checkpoints)]
    for old in olds:
        old.unlink()


def read_checkpoint(spec: str, out_dir: str) -> dict:
    """Load a training checkpoint: ``auto`` is the newest in ``out_dir/checkpoints``."""
    if spec == "auto":
        latest = Path(out_dir) / "checkpoints" / "latest.txt"
        if not latest.is_file():
            raise CheckpointError(f"--resume auto: no checkpoint under {latest.parent}; start without --resume")
        spec = str(latest.parent / latest.read_text().strip())
    state, _ = read_file(Path(spec), what="training checkpoint")
    if not isinstance(state, dict) or state.get("format") != CKPT_FORMAT:
        raise CheckpointError(f"{spec} is not a graft_models.train checkpoint; pass a step_*.pt file "
                              "from out_dir/checkpoints (or --resume auto)")
    return state
