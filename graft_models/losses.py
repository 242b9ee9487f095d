"""GRAFT contrastive losses: image level (the paper's Eq. 1) and pixel level.

Notation: a batch holds satellite images ``s_1..s_B``; satellite image ``i`` owns ground photos
``g_i^1..g_i^{N_i}`` (uneven counts). Ground embeddings arrive flattened, ``ground`` of shape
``(M, D)`` with ``owner`` of shape ``(M,)`` naming the satellite image (``0..B-1``) each belongs to.
Every (satellite, own ground photo) pair is a positive. For a pair ``k = (i, j)`` with query ``q_k``
(image level: ``f_S(s_i)``; pixel level: ``f_S(s_i)[p_i^j]``, the patch that holds the photo)::

    direction="ground":    l_k = -log exp(q_k.g_k/tau) / sum_{a,b} exp(q_k.g_a^b/tau)
    direction="satellite": l_k = -log exp(q_k.g_k/tau) / sum_a exp(c_a.g_k/tau)
    direction="both":      l_k = (l_k^ground + l_k^satellite) / 2

where ``c_a`` is ``f_S(s_a)`` (image level) or ``f_S(s_a)[p_i^j]`` (pixel level: the same patch
position in every satellite image of the batch). DESIGN.md writes the "ground" form; the PDF could
not be checked, so the direction is an option.

Reduction ``"pairs"`` (default) is the mean over all positive pairs, each pair weighted equally (the
paper's "mean over i and j" read as one mean over the batch's pairs); ``"images"`` first averages
over ``j`` within each satellite image, then over the images that own at least one photo.

Across ranks, pass a :class:`Negatives` built by :func:`graft_models.distributed.gather_negatives`:
the denominators then run over the global batch and the returned value is this rank's share of the
global mean (the ranks' values sum to the global loss).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

Direction = Literal["ground", "satellite", "both"]
Reduction = Literal["pairs", "images"]
DIRECTIONS = ("ground", "satellite", "both")
REDUCTIONS = ("pairs", "images")


@dataclass
class Negatives:
    """The global batch that local queries are contrasted against (see module docstring)."""

    ground: Tensor  # (M_global, D) every rank's ground embeddings, this rank's slice carries gradient
    sat: Tensor  # (S_global, D) or (S_global, gh, gw, D) every rank's satellite features
    total_pairs: int  # number of positive pairs in the global batch
    total_images: int  # number of satellite images owning >= 1 ground photo in the global batch


def _check(ground: Tensor, owner: Tensor, n_sat: int) -> None:
    if ground.ndim != 2:
        raise ValueError(f"ground embeddings must be (M, D), got {tuple(ground.shape)}")
    if owner.shape != ground.shape[:1]:
        raise ValueError(f"owner must be (M,) = ({ground.shape[0]},), got {tuple(owner.shape)}")
    if owner.numel() and (int(owner.min()) < 0 or int(owner.max()) >= n_sat):
        raise ValueError(f"owner indices must lie in [0, {n_sat}); check the collate function")


def _local_negatives(ground: Tensor, sat: Tensor, owner: Tensor) -> Negatives:
    return Negatives(ground=ground, sat=sat, total_pairs=int(owner.numel()),
                     total_images=int(torch.unique(owner).numel()))


def _reduce(pair_losses: Tensor, owner: Tensor, n_sat: int, neg: Negatives, reduction: str) -> Tensor:
    """Sum the local pair losses with the weights of the chosen global mean."""
    if reduction == "pairs":
        return pair_losses.sum() / max(neg.total_pairs, 1)
    counts = torch.bincount(owner, minlength=n_sat).to(pair_losses.dtype)
    weights = 1.0 / counts[owner]
    return (pair_losses * weights).sum() / max(neg.total_images, 1)


class _GraftLoss(nn.Module):
    """Shared options and the pair-loss combination of both levels."""

    def __init__(self, tau: float = 0.07, direction: Direction = "ground",
                 reduction: Reduction = "pairs") -> None:
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        self.tau = float(tau)
        self.direction = direction
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"tau={self.tau}, direction={self.direction!r}, reduction={self.reduction!r}"

    def _combine(self, pos: Tensor, lse_ground: Tensor | None, lse_sat: Tensor | None) -> Tensor:
        if self.direction == "ground":
            return lse_ground - pos
        if self.direction == "satellite":
            return lse_sat - pos
        return 0.5 * ((lse_ground - pos) + (lse_sat - pos))


class ImageLevelLoss(_GraftLoss):
    """GRAFT's image-level loss (Eq. 1); see the module docstring for the exact formula."""

    def forward(self, sat: Tensor, ground: Tensor, owner: Tensor,
                negatives: Negatives | None = None) -> Tensor:
        """Loss for satellite embeddings ``sat`` (B, D) and flattened ``ground`` (M, D), ``owner`` (M,)."""
        if sat.ndim != 2:
            raise ValueError(f"satellite embeddings must be (B, D), got {tuple(sat.shape)}")
        _check(ground, owner, sat.shape[0])
        neg = negatives or _local_negatives(ground, sat, owner)
        pos = (sat[owner] * ground).sum(-1) / self.tau
        lse_g = lse_s = None
        if self.direction in ("ground", "both"):
            lse_g = torch.logsumexp(sat @ neg.ground.T / self.tau, dim=1)[owner]
        if self.direction in ("satellite", "both"):
            lse_s = torch.logsumexp(ground @ neg.sat.T / self.tau, dim=1)
        return _reduce(self._combine(pos, lse_g, lse_s), owner, sat.shape[0], neg, self.reduction)


class PixelLevelLoss(_GraftLoss):
    """GRAFT's pixel-level loss: the image-level loss with the patch feature at each photo's location.

    ``patch`` (M,) is the flat index ``row * gw + col`` of the patch that holds each ground photo.
    """

    def forward(self, patches: Tensor, ground: Tensor, owner: Tensor, patch: Tensor,
                negatives: Negatives | None = None) -> Tensor:
        """Loss for patch features ``patches`` (B, gh, gw, D) and flattened ground photos."""
        if patches.ndim != 4:
            raise ValueError(f"patch features must be (B, gh, gw, D), got {tuple(patches.shape)}")
        n_sat, gh, gw, dim = patches.shape
        _check(ground, owner, n_sat)
        if patch.shape != owner.shape:
            raise ValueError(f"patch indices must be (M,) like owner, got {tuple(patch.shape)}")
        if patch.numel() and (int(patch.min()) < 0 or int(patch.max()) >= gh * gw):
            raise ValueError(f"patch indices must lie in [0, {gh * gw}) for a {gh}x{gw} grid")
        neg = negatives or _local_negatives(ground, patches, owner)
        query = patches.reshape(n_sat, gh * gw, dim)[owner, patch]  # (M, D)
        pos = (query * ground).sum(-1) / self.tau
        lse_g = lse_s = None
        if self.direction in ("ground", "both"):
            lse_g = torch.logsumexp(query @ neg.ground.T / self.tau, dim=1)
        if self.direction in ("satellite", "both"):
            all_sat = neg.sat.reshape(neg.sat.shape[0], gh * gw, dim)[:, patch]  # (S, M, D)
            lse_s = torch.logsumexp(torch.einsum("smd,md->ms", all_sat, ground) / self.tau, dim=1)
        return _reduce(self._combine(pos, lse_g, lse_s), owner, n_sat, neg, self.reduction)
