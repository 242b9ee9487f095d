"""Held-out retrieval on a pair split, shared by training (validation) and ``graft_models.evaluate``.

Every satellite image of the split is a query and the split's ground photos the gallery (a photo is
relevant to its own satellite image), and the reverse direction; both through
:func:`graft_models.zeroshot.retrieval_metrics`.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from graft_models.data import PairDataset, collate_pairs, read_official
from graft_models.embed_ground import GroundEmbeddings, build_ground_encoder
from graft_models.train_config import TrainConfig
from graft_models.zeroshot import retrieval_metrics


@torch.no_grad()
def embed_pairs(model: nn.Module, ground_encoder, ds: PairDataset, batch_size: int,
                device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Satellite embeddings (S, D), ground embeddings (M, D) and each ground's satellite (M,) of ``ds``.

    ``ground_encoder`` None: ``ds`` yields stored ground embeddings. The model runs in eval mode.
    """
    sats, grounds, owners = [], [], []
    was = model.training
    model.eval()
    loader = DataLoader(ds, batch_size=batch_size, collate_fn=collate_pairs)
    for b in tqdm(loader, desc="embed pairs", disable=len(loader) < 8):
        b = b.to(device)
        owners.append(b.owner + sum(len(s) for s in sats))
        sats.append(model.encode_image(b.sat).float())
        grounds.append((b.ground if ground_encoder is None else ground_encoder(b.ground)).float())
    model.train(was)
    return torch.cat(sats), torch.cat(grounds), torch.cat(owners)


def pair_dataset(cfg: TrainConfig, embeddings, max_images: int | None = None):
    """The :class:`PairDataset` of split ``cfg.data.val_split`` (its first ``max_images`` images)."""
    d = cfg.data
    recs = read_official(d.root, d.val_split)[:max_images]
    return PairDataset(d.root, recs, image_size=d.image_size, ground_size=d.ground_size,
                       embeddings=embeddings, max_ground=d.max_ground)


def dataset_retrieval(cfg: TrainConfig, model: nn.Module, ground_encoder, ds,
                      device: torch.device) -> dict[str, float]:
    """Recall@k (``cfg.recall_k``) and mAP, both directions, of ``model`` on a pair dataset.

    Keys: ``images``, ``ground_photos``, ``sat2ground_recall@k``, ``sat2ground_mAP`` and the
    ``ground2sat_`` equivalents (the names in metrics.csv and in the evaluate command's output).
    """
    sat, ground, owner = (t.cpu() for t in embed_pairs(model, ground_encoder, ds, cfg.data.batch_size, device))
    relevant = (owner[None, :] == torch.arange(len(sat))[:, None]).numpy()  # (S, M)
    out = {"images": float(len(sat)), "ground_photos": float(len(ground))}
    out.update({f"sat2ground_{k}": v for k, v in retrieval_metrics(sat, ground, relevant, cfg.recall_k).items()})
    out.update({f"ground2sat_{k}": v for k, v in retrieval_metrics(ground, sat, relevant.T, cfg.recall_k).items()})
    return out


def pair_metrics(cfg: TrainConfig, model: nn.Module, device: torch.device,
                 max_images: int | None = None) -> dict[str, float]:
    """:func:`dataset_retrieval` on split ``cfg.data.val_split`` with the configured ground side."""
    d = cfg.data
    emb = GroundEmbeddings(d.embeddings) if d.embeddings else None
    genc = None if emb else build_ground_encoder(cfg.model.ground_encoder, cfg.model.clip_checkpoint,
                                                 allow_untrained=cfg.model.allow_untrained).to(device)
    return dataset_retrieval(cfg, model, genc, pair_dataset(cfg, emb, max_images), device)
