"""GRAFT training: ``python -m graft_models.train`` or ``torchrun --nproc-per-node N -m graft_models.train``.

``--config X.yaml [--set section.key=value ...] [--resume auto|PATH]``. DDP (NCCL on GPUs, gloo on
CPU); ground embeddings of the global batch are gathered across ranks as negatives. Data order is a
pure function of (seed, step), so ``--resume`` continues bit-for-bit from a checkpoint that holds
model, optimizer, scheduler, step, config and RNG states.
"""
from __future__ import annotations

import argparse
import csv
import logging
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm

from graft_models import distributed as D
from graft_models.data import PairBatch, PairDataset, collate_pairs, read_official
from graft_models.checkpoint import load_module_state
from graft_models.embed_ground import GroundEmbeddings, build_ground_encoder, load_clip_state
from graft_models.retrieval import dataset_retrieval, pair_dataset
from graft_models.train_checkpoint import read_checkpoint, save_checkpoint
from graft_models.losses import ImageLevelLoss, PixelLevelLoss
from graft_models.train_config import ConfigError, TrainConfig, config_from_dict, load_config
from graft_vqa.core.errors import GraftVQAError, WeightsNotFoundError

log = logging.getLogger("graft_models.train")


class StepBatches(torch.utils.data.Sampler):
    """Dataset indices per micro-step: epoch permutations seeded by (seed, epoch), rank slices.

    Micro-step ``t`` takes the global batch ``perm[t*G:(t+1)*G]`` (G = batch * world; incomplete
    tails of an epoch are dropped) and rank ``r`` its ``r``-th slice, so 1 process with batch G sees
    the same global batches as N processes with batch G/N.
    """

    def __init__(self, n: int, batch: int, world: int, rank: int, seed: int, start: int, stop: int):
        self.n, self.batch, self.world, self.rank = n, batch, world, rank
        self.seed, self.start, self.stop = seed, start, stop
        self.per_epoch = n // (batch * world)
        if self.per_epoch == 0:
            raise ConfigError(f"{n} training images cannot fill one global batch of {batch * world}; "
                              "lower data.batch_size")

    def __len__(self) -> int:
        return self.stop - self.start

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The permutation of dataset indices for ``epoch`` (a pure function of seed and epoch)."""
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))

    def __iter__(self):
        g = self.batch * self.world
        cached, perm = None, None
        for t in range(self.start, self.stop):
            epoch, within = divmod(t, self.per_epoch)
            if epoch != cached:  # one permutation per epoch, not per micro-step
                cached, perm = epoch, self.epoch_order(epoch)
            lo = within * g + self.rank * self.batch
            yield perm[lo:lo + self.batch].tolist()


def lr_lambda(cfg: TrainConfig):
    """Linear warm-up then cosine decay to ``min_lr_ratio`` over ``optim.steps``."""
    o = cfg.optim

    def f(step: int) -> float:
        if step < o.warmup_steps:
            return (step + 1) / max(o.warmup_steps, 1)
        t = min(1.0, (step - o.warmup_steps) / max(o.steps - o.warmup_steps, 1))
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    return f


def build_model(cfg: TrainConfig) -> nn.Module:
    """The satellite encoder, initialised from CLIP (``model.clip_checkpoint``) or randomly on request."""
    from graft_models.factory import build_graft

    torch.manual_seed(cfg.seed)
    model = build_graft(cfg.model.name)
    if cfg.model.clip_checkpoint:
        sd = load_clip_state(cfg.model.clip_checkpoint)
        visual = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")} or sd
        load_module_state(model.visual, visual, f"{cfg.model.clip_checkpoint} ({cfg.model.name}'s CLIP tower)")
    elif not cfg.model.allow_untrained:
        raise WeightsNotFoundError("training starts from CLIP ViT-B/16 weights: set model.clip_checkpoint "
                                   "to the open_clip OpenAI ViT-B/16 file, or --allow-untrained for tests")
    model.logit_scale.requires_grad_(False)  # tau is fixed
    return model.train()


def make_loader(cfg: TrainConfig, split: str, info: D.DistInfo, start: int, stop: int,
                embeddings: GroundEmbeddings | None) -> tuple[PairDataset, DataLoader]:
    """Dataset and a deterministic step-indexed loader for this rank."""
    d = cfg.data
    ds = PairDataset(d.root, read_official(d.root, split), image_size=d.image_size,
                     patch_size=16, ground_size=d.ground_size, embeddings=embeddings, max_ground=d.max_ground)
    sampler = StepBatches(len(ds), d.batch_size, info.world_size, info.rank, cfg.seed, start, stop)
    return ds, DataLoader(ds, batch_sampler=sampler, collate_fn=collate_pairs, num_workers=d.num_workers,
                          pin_memory=info.device.type == "cuda")


def compute_loss(cfg: TrainConfig, model: nn.Module, ground_encoder, batch: PairBatch,
                 losses: dict[str, nn.Module], amp: bool) -> torch.Tensor:
    """This rank's share of the global-batch loss (the ranks' shares sum to the global loss)."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        image, patches = model(batch.sat)
        ground = batch.ground if ground_encoder is None else ground_encoder(batch.ground)
    image, patches, ground = image.float(), patches.float(), ground.float()
    gather_sat = cfg.loss.direction != "ground"
    total = image.new_zeros(())
    neg = None
    if cfg.loss.level in ("image", "both"):
        neg = D.gather_negatives(image, ground, batch.owner, gather_sat=gather_sat)
        total = total + losses["image"](image, ground, batch.owner, neg)
    if cfg.loss.level in ("pixel", "both"):  # "both": the ground side gathered above is reused
        neg = D.gather_negatives(patches, ground, batch.owner, gather_sat=gather_sat, reuse=neg)
        w = cfg.loss.pixel_weight if cfg.loss.level == "both" else 1.0
        total = total + w * losses["pixel"](patches, ground, batch.owner, batch.patch, neg)
    return total


def validate(cfg: TrainConfig, model: nn.Module, ground_encoder, val_ds: PairDataset,
             device) -> dict[str, float]:
    """Retrieval recall@k and mAP on the validation dataset, named as the evaluate command names them."""
    return dataset_retrieval(cfg, model, ground_encoder, val_ds, device)


class Metrics:
    """metrics.csv (and TensorBoard when installed) on rank 0."""

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool = True) -> None:
        self.enabled, self.path, self.tb = enabled, out_dir / "metrics.csv", None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(out_dir / "tb"))
            except ImportError:
                log.info("tensorboard not installed: metrics go to CSV only")

    def write(self, step: int, values: dict[str, float]) -> None:
        """Append one row per metric (long format: step, name, value)."""
        if not self.enabled:
            return
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["step", "name", "value"])
            for k, v in values.items():
                w.writerow([step, k, repr(float(v))])
                if self.tb is not None:
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        """Flush TensorBoard."""
        if self.tb is not None:
            self.tb.close()


def train(cfg: TrainConfig, resume: dict | None = None) -> Path:
    """Run training as configured (inside or outside torchrun); returns ``out_dir``."""
    info = D.init_distributed(cfg.device)
    out = Path(cfg.out_dir)
    main = info.rank == 0
    try:
        model = build_model(cfg).to(info.device)
        net = DDP(model, find_unused_parameters=cfg.loss.level != "both") if info.world_size > 1 else model
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.optim.lr,
                                betas=tuple(cfg.optim.betas), eps=cfg.optim.eps, weight_decay=cfg.optim.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
        step = 0
        if resume is not None:
            model.load_state_dict(resume["model"])
            opt.load_state_dict(resume["optimizer"])
            sched.load_state_dict(resume["scheduler"])
            step = int(resume["step"])
            torch.set_rng_state(resume["rng"]["torch"])
            log.info("resumed at step %d", step)
        emb = GroundEmbeddings(cfg.data.embeddings) if cfg.data.embeddings else None
        genc = None if emb else build_ground_encoder(cfg.model.ground_encoder, cfg.model.clip_checkpoint,
                                                     allow_untrained=cfg.model.allow_untrained).to(info.device)
        text = None
        if cfg.zeroshot.folder:
            from graft_models.evaluate import zeroshot_metrics, zeroshot_text_encoder
            text = zeroshot_text_encoder(cfg, build=main)  # checks the set on every rank, builds on rank 0
        stop = cfg.stop_at or cfg.optim.steps
        accum = cfg.optim.grad_accum
        _, loader = make_loader(cfg, cfg.data.train_split, info, step * accum, stop * accum, emb)
        val_ds = pair_dataset(cfg, emb, cfg.val_max) if main and cfg.data.val_split else None
        losses = {"image": ImageLevelLoss(cfg.loss.tau, cfg.loss.direction, cfg.loss.reduction),
                  "pixel": PixelLevelLoss(cfg.loss.tau, cfg.loss.direction, cfg.loss.reduction)}
        amp = info.device.type == "cuda" and cfg.precision == "bf16"
        metrics = Metrics(out, main, cfg.tensorboard)
        if main:
            out.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=stop, initial=step, desc="train", disable=not (main and cfg.progress))
        tick, seen, running = time.perf_counter(), 0, 0.0
        for micro, batch in enumerate(loader):
            batch = batch.to(info.device)
            loss = compute_loss(cfg, net, genc, batch, losses, amp)
            (loss * info.world_size / accum).backward()
            running += float(loss.detach()) / accum
            seen += batch.sat.shape[0]
            if (micro + 1) % accum:
                continue
            step += 1
            if cfg.dump_grads and step == 1 and main:
                torch.save({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None},
                           out / "grads_step1.pt")
            if cfg.optim.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            global_loss = D.all_reduce_sum(running, info.device)
            running = 0.0
            bar.update(1)
            bar.set_postfix(loss=f"{global_loss:.4f}")
            if step % cfg.log_every == 0 or step == stop:
                dt = time.perf_counter() - tick
                metrics.write(step, {"loss": global_loss, "lr": sched.get_last_lr()[0],
                                     "samples_per_s": seen * info.world_size / max(dt, 1e-9)})
                tick, seen = time.perf_counter(), 0
            if (cfg.val_every and step % cfg.val_every == 0) or step == stop:
                if val_ds is not None:
                    metrics.write(step, validate(cfg, model, genc, val_ds, info.device))
                if text is not None:
                    metrics.write(step, zeroshot_metrics(model, text, cfg.zeroshot))
            if step % cfg.ckpt_every == 0 or step == stop:
                if main:
                    save_checkpoint(out / "checkpoints" / f"step_{step:07d}.pt", cfg, model, opt, sched, step)
                if D.is_distributed():
                    torch.distributed.barrier()
        bar.close()
        metrics.close()
        if main and cfg.export and step == cfg.optim.steps:
            from graft_models.checkpoint import export_official
            export_official(model, out / cfg.export)
            log.info("exported %s", out / cfg.export)
    finally:
        D.cleanup(info)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see the module docstring); returns 2 with a one-line message on a user error."""
    ap = argparse.ArgumentParser(description="Train GRAFT (image- and/or pixel-level).")
    ap.add_argument("--config", help="YAML config file (defaults otherwise)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override, e.g. --set optim.lr=1e-4 (repeatable)")
    ap.add_argument("--resume", help="'auto' (newest in out_dir) or a checkpoint path")
    ap.add_argument("--allow-untrained", action="store_true", help="random init without CLIP weights")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = a.set + (["model.allow_untrained=true"] if a.allow_untrained else [])
    try:
        cfg = load_config(a.config, overrides)
        state = None
        if a.resume:
            state = read_checkpoint(a.resume, cfg.out_dir)
            cfg = config_from_dict(state["config"], overrides)  # the checkpoint's config, then overrides
        train(cfg, state)
    except GraftVQAError as exc:
        print(f"graft_models.train: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
