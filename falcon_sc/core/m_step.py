"""The M-step of training: M re-solved from the teacher's predictions accumulated since the last solve."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from . import distributed
from .initial_relationship import split_blocks
from .relationship import solve_relationships


def m_step(
    prob_sums: torch.Tensor,
    group_counts: torch.Tensor,
    coarse_blocks: Sequence[int],
    balance_weight: float,
    relationship: np.ndarray,
    *,
    time_limit: float,
) -> np.ndarray:
    """The new M (int8) from ``prob_sums`` ``(K_C, K_F)``, the teacher's probabilities summed per (dataset,
    coarse class) over the cells seen since the last solve, and ``group_counts`` ``(K_C,)``, those cells.

    The cost is the paper's ``C = Y_ohᵀ P / N`` over those cells (summed over all ranks), one independent
    problem per dataset, each normalised by its own number of cells. Rank 0 solves, every rank receives the
    answer (``relationship`` gives its shape and dtype).
    """
    block_of_group = np.repeat(np.arange(len(coarse_blocks)), coarse_blocks)
    counts = distributed.sum_(group_counts).double().cpu().numpy()
    n_seen = np.bincount(block_of_group, weights=counts, minlength=len(coarse_blocks))
    cost = distributed.sum_(prob_sums).T.double().cpu().numpy() / n_seen[block_of_group].clip(1)
    new = None
    if distributed.world()[0] == 0:
        new = np.hstack(solve_relationships(split_blocks(cost, coarse_blocks), balance_weight, time_limit=time_limit))
    return distributed.broadcast_array(new, relationship, prob_sums.device).astype(np.int8)
