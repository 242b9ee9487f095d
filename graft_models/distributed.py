"""Distributed helpers on PyTorch's own engine (``torch.distributed``; NCCL on GPUs, gloo on CPU).

:func:`gather_with_grad` all-gathers tensors whose first dimension differs between ranks (ground
photo counts vary per batch) by padding to the largest count. Its backward sums the incoming
gradients over all ranks and hands each rank the slice of its own rows, so a loss computed on the
gathered set gives every rank the exact gradient of the global loss with respect to its local rows
(the cross-rank terms that a "local gradient only" gather would drop are included).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
from torch import Tensor

from graft_models.losses import Negatives

log = logging.getLogger(__name__)


def is_distributed() -> bool:
    """True inside an initialised process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of ranks (1 outside a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@dataclass
class DistInfo:
    """Where this process stands after :func:`init_distributed`."""

    rank: int  # global rank
    local_rank: int  # rank on this node (picks the GPU)
    world_size: int  # number of processes
    device: torch.device  # the device this rank computes on
    initialised_here: bool  # whether init_distributed created the process group


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (or run alone).

    ``device`` is ``"auto"`` (CUDA when available), ``"cuda"`` or ``"cpu"``. NCCL is used for CUDA
    and gloo for CPU.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    n = int(os.environ.get("WORLD_SIZE", "1"))
    made = False
    if n > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        made = True
        log.info("rank %d/%d joined (%s)", dist.get_rank(), n, dist.get_backend())
    return DistInfo(rank=rank(), local_rank=local_rank, world_size=world_size(), device=dev,
                    initialised_here=made)


def cleanup(info: DistInfo) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if info.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


class _AllGatherSum(torch.autograd.Function):
    """all_gather of equal-shape tensors; backward = all-reduce(sum) of the gradient, own slice."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102
        ctx.rank = dist.get_rank()
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.stack(out)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank]


def gather_with_grad(tensor: Tensor) -> tuple[Tensor, int]:
    """All-gather ``tensor`` (n_r, ...) from every rank, n_r may differ; returns (cat, own offset).

    The result concatenates the ranks' rows in rank order; ``offset`` is where this rank's rows
    start. Gradient flows back to every rank's own rows (see the module docstring). Outside a
    process group it returns ``(tensor, 0)``.
    """
    if not is_distributed():
        return tensor, 0
    n_local = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    sizes = [torch.zeros_like(n_local) for _ in range(world_size())]
    dist.all_gather(sizes, n_local)
    counts = [int(s.item()) for s in sizes]
    biggest = max(counts)
    pad = biggest - tensor.shape[0]
    padded = tensor
    if pad:
        padded = torch.cat([tensor, tensor.new_zeros((pad, *tensor.shape[1:]))])
    if tensor.requires_grad:
        stacked = _AllGatherSum.apply(padded)
    else:
        out = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(out, padded.contiguous())
        stacked = torch.stack(out)
    parts = [stacked[r, :c] for r, c in enumerate(counts)]
    return torch.cat(parts), sum(counts[: rank()])


def all_reduce_sum(value: float | int, device: torch.device) -> float:
    """Sum a Python number over ranks (the number itself outside a process group)."""
    if not is_distributed():
        return float(value)
    t = torch.tensor([float(value)], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())


def gather_negatives(sat: Tensor, ground: Tensor, owner: Tensor, gather_sat: bool = True,
                     reuse: Negatives | None = None) -> Negatives | None:
    """Build the global :class:`Negatives` for the losses; ``None`` outside a process group.

    ``sat`` is (B, D) or (B, gh, gw, D); ``ground`` (M, D); ``owner`` (M,) local indices.
    ``gather_sat=False`` skips gathering satellite features (enough for ``direction="ground"``).
    ``reuse``: Negatives already built from the same ``ground``/``owner`` (e.g. for the other loss
    level); its gathered ground side and counts are kept and only ``sat`` is gathered.
    """
    if not is_distributed():
        return None
    all_sat = gather_with_grad(sat)[0] if gather_sat else sat
    if reuse is not None:
        return replace(reuse, sat=all_sat)
    all_ground, _ = gather_with_grad(ground)
    n_pairs = all_reduce_sum(owner.numel(), sat.device)
    n_images = all_reduce_sum(torch.unique(owner).numel(), sat.device)
    return Negatives(ground=all_ground, sat=all_sat, total_pairs=int(n_pairs), total_images=int(n_images))
