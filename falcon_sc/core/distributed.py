"""The few collective operations FALCON needs under ``torch.distributed`` (no-ops in a single process).

Every rank holds the (small) classifier input of all cells and draws the same global batches from the same
seeded generator; each rank trains on its slice of every batch. Gradients are averaged by
:class:`~torch.nn.parallel.DistributedDataParallel`, batch marginals and EMA-prediction sums are summed
across ranks, and rank 0 solves M and broadcasts it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, or ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward sums the incoming gradients over ranks too."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


def sum_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks that gradients flow through: each rank's input receives the gradient of the global
    sum, so that after DDP averages parameter gradients they equal those of the single-process loss."""
    return tensor if world()[1] == 1 else _SumOverRanks.apply(tensor)


def sum_(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (no gradient)."""
    if world()[1] > 1:
        dist.all_reduce(tensor)
    return tensor


def any_(flag: torch.Tensor) -> bool:
    """Whether ``flag`` (a boolean scalar tensor) is true on any rank."""
    value = flag.to(torch.int32)
    if world()[1] > 1:
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast_array(array: np.ndarray | None, like: np.ndarray, device: torch.device) -> np.ndarray:
    """Rank 0's ``array`` on every rank (other ranks pass ``None`` and a template of the same shape)."""
    if world()[1] == 1:
        return array
    tensor = torch.as_tensor(array if array is not None else np.zeros_like(like), device=device)
    dist.broadcast(tensor, src=0)
    return tensor.cpu().numpy()
