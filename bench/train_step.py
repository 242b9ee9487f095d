"""Training-step throughput: ground photos as stored embeddings vs raw images through the frozen encoder.

Same satellite model, same batch, same loss; prints satellite samples/s for both and the ratio.
CPU default (tiny models, ~1 min):  python bench/train_step.py
GPU (ViT-B/16, random weights):     python bench/train_step.py --device cuda --sat-model graft-vitb16 \
                                        --ground-encoder clip-vitb16 --batch 32 --grounds 10
"""
from __future__ import annotations

import argparse
import time

import torch

from graft_models.data import PairBatch
from graft_models.embed_ground import build_ground_encoder
from graft_models.losses import ImageLevelLoss, PixelLevelLoss
from graft_models.factory import build_graft
from graft_models.train import compute_loss
from graft_models.train_config import config_from_dict


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(cfg, model, genc, batch: PairBatch, steps: int, amp: bool) -> float:
    """Seconds per optimizer step (after two warm-up steps)."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    losses = {"image": ImageLevelLoss(), "pixel": PixelLevelLoss()}
    for i in range(steps + 2):
        if i == 2:
            _sync(batch.sat.device)
            t0 = time.perf_counter()
        loss = compute_loss(cfg, model, genc, batch, losses, amp)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(batch.sat.device)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sat-model", default="graft-tiny")
    ap.add_argument("--ground-encoder", default="graft-tiny", help="graft-tiny or clip-vitb16 (random)")
    ap.add_argument("--batch", type=int, default=8, help="satellite images per step")
    ap.add_argument("--grounds", type=int, default=10, help="ground photos per satellite image")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--level", default="both")
    a = ap.parse_args()
    dev = torch.device(a.device)
    cfg = config_from_dict({"loss": {"level": a.level}})
    model = build_graft(a.sat_model).train().to(dev)
    model.logit_scale.requires_grad_(False)
    genc = build_ground_encoder(a.ground_encoder, allow_untrained=True).to(dev)
    g = torch.Generator().manual_seed(0)
    s, m = a.image_size, a.batch * a.grounds
    sat = torch.randn(a.batch, 3, s, s, generator=g)
    images = torch.randn(m, 3, s, s, generator=g)
    owner = torch.arange(a.batch).repeat_interleave(a.grounds)
    patch = torch.randint(0, (s // 16) ** 2, (m,), generator=g)
    amp = dev.type == "cuda"
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        emb = genc(images.to(dev)).float().cpu()
    raw = PairBatch(sat, images, owner, patch, torch.arange(a.batch)).to(dev)
    stored = PairBatch(sat, emb, owner, patch, torch.arange(a.batch)).to(dev)
    t_emb = time_steps(cfg, model, None, stored, a.steps, amp)
    t_raw = time_steps(cfg, model, genc, raw, a.steps, amp)
    print(f"device={dev} sat={a.sat_model} ground={a.ground_encoder} batch={a.batch}x{a.grounds} "
          f"size={s} level={a.level}")
    print(f"stored embeddings: {a.batch / t_emb:9.2f} sat samples/s  ({m / t_emb:9.1f} pairs/s)")
    print(f"raw ground images: {a.batch / t_raw:9.2f} sat samples/s  ({m / t_raw:9.1f} pairs/s)")
    print(f"ratio stored/raw: {t_raw / t_emb:.2f}x")


if __name__ == "__main__":
    main()
