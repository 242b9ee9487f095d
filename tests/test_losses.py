"""GRAFT losses: vectorised == naive loops (value and gradient); 2-rank gather == one process."""
from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from graft_models.distributed import gather_negatives, gather_with_grad
from graft_models.losses import ImageLevelLoss, PixelLevelLoss

COUNTS = [3, 1, 5, 2]  # uneven ground photos per satellite image
GH, GW, D, TAU = 3, 2, 8, 0.07


def _batch(seed: int = 0, counts=COUNTS):
    g = torch.Generator().manual_seed(seed)
    b, m = len(counts), sum(counts)
    sat = F.normalize(torch.randn(b, D, generator=g, dtype=torch.float64), dim=-1)
    patches = F.normalize(torch.randn(b, GH, GW, D, generator=g, dtype=torch.float64), dim=-1)
    ground = F.normalize(torch.randn(m, D, generator=g, dtype=torch.float64), dim=-1)
    owner = torch.repeat_interleave(torch.arange(b), torch.tensor(counts))
    patch = torch.randint(0, GH * GW, (m,), generator=g)
    return sat, patches, ground, owner, patch


def _naive(queries, cands, ground, owner, direction, reduction):
    """Plain loops: queries[k] is pair k's query, cands[k][a] the satellite-side vector of image a."""
    losses = {}
    for k in range(ground.shape[0]):
        i = int(owner[k])
        pos = torch.exp(torch.dot(queries[k], ground[k]) / TAU)
        den_g = sum(torch.exp(torch.dot(queries[k], ground[b]) / TAU) for b in range(ground.shape[0]))
        den_s = sum(torch.exp(torch.dot(cands[k][a], ground[k]) / TAU) for a in range(len(cands[k])))
        lg, ls = -torch.log(pos / den_g), -torch.log(pos / den_s)
        val = {"ground": lg, "satellite": ls, "both": 0.5 * (lg + ls)}[direction]
        losses.setdefault(i, []).append(val)
    if reduction == "pairs":
        flat = [v for vals in losses.values() for v in vals]
        return sum(flat) / len(flat)
    return sum(sum(v) / len(v) for v in losses.values()) / len(losses)


def _naive_image(sat, ground, owner, direction, reduction):
    queries = [sat[int(owner[k])] for k in range(ground.shape[0])]
    cands = [[sat[a] for a in range(sat.shape[0])] for _ in range(ground.shape[0])]
    return _naive(queries, cands, ground, owner, direction, reduction)


def _naive_pixel(patches, ground, owner, patch, direction, reduction):
    rc = [(int(p) // GW, int(p) % GW) for p in patch]
    queries = [patches[int(owner[k]), rc[k][0], rc[k][1]] for k in range(ground.shape[0])]
    cands = [[patches[a, rc[k][0], rc[k][1]] for a in range(patches.shape[0])]
             for k in range(ground.shape[0])]
    return _naive(queries, cands, ground, owner, direction, reduction)


def _grads(fn, *tensors):
    leaves = [t.clone().requires_grad_(True) for t in tensors]
    out = fn(*leaves)
    out.backward()
    return out.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("reduction", ["pairs", "images"])
@pytest.mark.parametrize("direction", ["ground", "satellite", "both"])
def test_image_level_matches_naive_loop(direction, reduction):
    sat, _, ground, owner, _ = _batch()
    loss = ImageLevelLoss(tau=TAU, direction=direction, reduction=reduction)
    v1, g1 = _grads(lambda s, g: loss(s, g, owner), sat, ground)
    v2, g2 = _grads(lambda s, g: _naive_image(s, g, owner, direction, reduction), sat, ground)
    torch.testing.assert_close(v1, v2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("reduction", ["pairs", "images"])
@pytest.mark.parametrize("direction", ["ground", "satellite", "both"])
def test_pixel_level_matches_naive_loop(direction, reduction):
    _, patches, ground, owner, patch = _batch(1)
    loss = PixelLevelLoss(tau=TAU, direction=direction, reduction=reduction)
    v1, g1 = _grads(lambda p, g: loss(p, g, owner, patch), patches, ground)
    v2, g2 = _grads(lambda p, g: _naive_pixel(p, g, owner, patch, direction, reduction),
                    patches, ground)
    torch.testing.assert_close(v1, v2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


def test_pairs_and_images_reductions_differ_with_uneven_counts():
    sat, _, ground, owner, _ = _batch(2)
    a = ImageLevelLoss(reduction="pairs")(sat, ground, owner)
    b = ImageLevelLoss(reduction="images")(sat, ground, owner)
    assert not math.isclose(float(a), float(b), rel_tol=1e-6)


def test_perfect_alignment_gives_lower_loss_than_random():
    sat, _, ground, owner, _ = _batch(3)
    aligned = sat[owner] + 0.01 * ground
    loss = ImageLevelLoss()
    assert float(loss(sat, F.normalize(aligned, dim=-1), owner)) < float(loss(sat, ground, owner))


def test_bad_inputs_raise_clear_errors():
    sat, patches, ground, owner, patch = _batch()
    with pytest.raises(ValueError, match="owner indices"):
        ImageLevelLoss()(sat, ground, owner + 10)
    with pytest.raises(ValueError, match="patch indices"):
        PixelLevelLoss()(patches, ground, owner, patch + GH * GW)
    with pytest.raises(ValueError, match="direction"):
        ImageLevelLoss(direction="sideways")


# ------------------------------------------------------------------------------ two ranks (gloo)
RANK_SATS = [[0, 1], [2, 3]]  # satellite images held by each rank


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, out: dict) -> None:
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    sat, patches, ground, owner, patch = _batch(4)
    mine = torch.isin(owner, torch.tensor(RANK_SATS[rank]))
    s_idx = torch.tensor(RANK_SATS[rank])
    res = {}
    for level in ("image", "pixel"):
        for direction in ("ground", "satellite", "both"):
            for reduction in ("pairs", "images"):
                feats = (sat if level == "image" else patches)[s_idx].clone().requires_grad_(True)
                g = ground[mine].clone().requires_grad_(True)
                own = owner[mine] - RANK_SATS[rank][0]
                neg = gather_negatives(feats, g, own)
                if level == "image":
                    val = ImageLevelLoss(TAU, direction, reduction)(feats, g, own, neg)
                else:
                    val = PixelLevelLoss(TAU, direction, reduction)(feats, g, own, patch[mine], neg)
                val.backward()
                total = val.detach().clone()
                dist.all_reduce(total)
                res[(level, direction, reduction)] = (float(total), feats.grad, g.grad)
    # variable-length gather keeps rank order and offsets
    x = torch.full((rank + 2, 3), float(rank), requires_grad=True)
    cat, off = gather_with_grad(x)
    (cat.sum(0) * torch.arange(3.0)).sum().backward()
    res["gather"] = (cat.detach(), off, x.grad)
    out[rank] = res
    dist.destroy_process_group()


def test_two_rank_gather_equals_single_process():
    port = _free_port()
    out = mp.Manager().dict()
    mp.spawn(_rank_main, args=(port, out), nprocs=2, join=True)
    sat, patches, ground, owner, patch = _batch(4)
    for level in ("image", "pixel"):
        for direction in ("ground", "satellite", "both"):
            for reduction in ("pairs", "images"):
                feats = (sat if level == "image" else patches).clone().requires_grad_(True)
                g = ground.clone().requires_grad_(True)
                if level == "image":
                    val = ImageLevelLoss(TAU, direction, reduction)(feats, g, owner)
                else:
                    val = PixelLevelLoss(TAU, direction, reduction)(feats, g, owner, patch)
                val.backward()
                key = (level, direction, reduction)
                assert out[0][key][0] == pytest.approx(float(val.detach()), rel=1e-12), key
                for r in range(2):
                    mine = torch.isin(owner, torch.tensor(RANK_SATS[r]))
                    torch.testing.assert_close(out[r][key][1], feats.grad[RANK_SATS[r]])
                    torch.testing.assert_close(out[r][key][2], g.grad[mine])
    cat, off, grad = out[1]["gather"]
    assert off == 2 and cat.shape == (5, 3)
    assert torch.equal(cat[:2], torch.zeros(2, 3)) and torch.equal(cat[2:], torch.ones(3, 3))
    # d/dx of sum over ranks of (cat.sum(0) . [0,1,2]) = 2 * [0,1,2] for every row
    assert torch.equal(grad, 2 * torch.arange(3.0).expand(3, 3))
