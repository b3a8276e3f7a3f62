"""FALCON's objective: λ1·L_coarse + λ2·(L_NN + L_conf) + λ3·L_reg, on a batch during training
(:func:`batch_objective`) and on all cells at the end (:func:`evaluate`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from . import distributed, losses
from .classifier import within_coarse
from .config import FalconConfig
from .model import EMATeacher
from .views import InputViews


class LossTerms(NamedTuple):
    """The objective's terms on a batch (0-dim tensors); ``total`` is their weighted sum."""

    coarse: torch.Tensor
    neighbor: torch.Tensor
    confidence: torch.Tensor
    reg: torch.Tensor
    total: torch.Tensor


#: The terms' names, in :class:`LossTerms` order (the keys of a run's history).
LOSS_TERMS = LossTerms._fields


def regularizer(config: FalconConfig, mean_probs, relationship: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    prior = losses.relationship_prior(relationship, coarse) if config.prior == "relationship" else None
    return losses.marginal_regularizer(mean_probs, prior, config.marginal_divergence)


#: λ3 of the objective that restarts are compared on: the paper's single-cell value, whatever λ3 training used
#: (a stronger prior would favour the restart whose subtypes are the most even, not the best fit).
RESTART_LAMBDA_REG = 0.5


def weighted_total(config: FalconConfig, coarse, neighbor, confidence, reg, *, lambda_reg: float | None = None):
    """λ1·L_coarse + λ2·(L_NN + L_conf) + λ3·L_reg (λ3 = ``config.lambda_reg`` unless given).

    Training relaxes λ3 late (:meth:`Schedule.lambda_reg`); restarts are compared at ``RESTART_LAMBDA_REG``."""
    lambda_reg = config.lambda_reg if lambda_reg is None else lambda_reg
    return config.lambda_coarse * coarse + config.lambda_consistency * (neighbor + confidence) + lambda_reg * reg


@dataclass(frozen=True)
class BatchInputs:
    """What a training step reads from: the examples' views, coarse labels, neighbour table, M, and the
    generator of the views' random draws (augmentations)."""

    views: InputViews
    coarse: torch.Tensor  # (n,)
    nbr_idx: torch.Tensor  # (n, k)
    nbr_valid: torch.Tensor  # (n,)
    relationship: torch.Tensor  # (K_F, K_C) float
    generator: torch.Generator | None = None


def batch_objective(
    student: torch.nn.Module,
    teacher: EMATeacher,
    inputs: BatchInputs,
    idx: torch.Tensor,
    pick: torch.Tensor,
    batch_coarse: torch.Tensor,
    config: FalconConfig,
    hardness: float | torch.Tensor,
    lambda_reg: float | torch.Tensor,
) -> tuple[LossTerms, torch.Tensor]:
    """FALCON's loss terms (:class:`LossTerms`) on the cells ``idx``, batched.

    ``pick`` ``(len(idx), L)`` holds uniforms in [0, 1) choosing each cell's sampled neighbours among its
    valid ones. The cells, their neighbours and all teacher predictions go through one batched pass each.
    ``idx`` may be this rank's slice of a global batch whose coarse labels are ``batch_coarse``: per-cell
    means are then scaled by the slice's share (so averaging over ranks gives the global mean) and the
    marginal is summed over ranks. ``hardness`` (of the targets) and ``lambda_reg`` (λ3) may be 0-dim
    tensors, so that a captured CUDA graph reads them rather than baking them in. Also returns the teacher's
    logits on ``idx``.
    """
    n_sampled = pick.shape[1]
    share = idx.numel() * distributed.world()[1] / batch_coarse.numel()
    # index_select and gather rather than advanced indexing: the same values, several times faster on a CPU
    c = inputs.coarse.index_select(0, idx)
    valid = inputs.nbr_valid.index_select(0, idx)
    nbrs = inputs.nbr_idx.index_select(0, idx).gather(1, (pick * valid[:, None]).long())
    teacher_logits = teacher(inputs.views.teacher(torch.cat([idx, nbrs.reshape(-1)]), inputs.generator)).float()
    t_self = teacher_logits[: idx.numel()]
    t_nbr_probs = F.softmax(teacher_logits[idx.numel() :], dim=1).view(idx.numel(), n_sampled, -1)
    allowed = inputs.relationship.index_select(1, c).T.bool()

    logits = student(inputs.views.student(idx, inputs.generator)).float()
    log_probs = F.log_softmax(logits, dim=1)
    probs = log_probs.exp()
    targets, teacher_confidence = losses.confidence_targets(t_self, allowed, config.temperature, hardness)
    l_coarse = losses.coarse_loss(logits, inputs.relationship, c)
    l_nn = losses.neighbor_loss(probs, t_nbr_probs)
    # Early on the teacher is confident about no cell; its arbitrary preferences are then not imposed.
    confident = teacher_confidence > config.confidence_threshold if config.confidence_threshold > 0 else None
    l_conf = losses.confidence_loss(log_probs, targets, confident)
    if share != 1:  # a rank's slice of the batch (one process: the whole batch, and × 1 is an operation per step)
        l_coarse, l_nn, l_conf = share * l_coarse, share * l_nn, share * l_conf
    mean_probs = distributed.sum_with_grad(probs.sum(0)) / batch_coarse.numel()
    l_reg = regularizer(config, mean_probs, inputs.relationship, batch_coarse)
    total = weighted_total(config, l_coarse, l_nn, l_conf, l_reg, lambda_reg=lambda_reg)
    return LossTerms(l_coarse, l_nn, l_conf, l_reg, total), t_self


def _rows(matrix: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``matrix[index]`` for a 2-D ``index`` through index_select (the same values, faster on a CPU)."""
    return matrix.index_select(0, index.reshape(-1)).view(*index.shape, matrix.shape[1])


@torch.no_grad()
def evaluate(logits, coarse_t, nbr_idx, rel_t, config: FalconConfig, chunk: int = 16384):
    """Labels restricted to each cell's coarse class, their confidence, and the objective's terms on all cells
    (with λ3 = ``RESTART_LAMBDA_REG``: what restarts are compared on).

    The neighbour term is accumulated over row chunks: all neighbours' probabilities at once would take
    cells × k × K_F floats (6.6 GB for a million cells)."""
    probs = F.softmax(logits, dim=1)
    labels, confidence = within_coarse(probs, rel_t[:, coarse_t].T.bool())
    log_probs = F.log_softmax(logits, dim=1)
    terms = {
        "coarse": losses.coarse_loss(logits, rel_t, coarse_t),
        "neighbor": sum(
            losses.neighbor_loss(probs[i : i + chunk], _rows(probs, nbr_idx[i : i + chunk]))
            * nbr_idx[i : i + chunk].shape[0]
            for i in range(0, probs.shape[0], chunk)
        )
        / probs.shape[0],
        # L_conf with one-hot targets: the log-probability of each cell's label.
        "confidence": -log_probs.gather(1, labels[:, None]).mean(),
        "reg": regularizer(config, probs.mean(0), rel_t, coarse_t),
    }
    terms["total"] = weighted_total(config, **terms, lambda_reg=RESTART_LAMBDA_REG)
    objective = {name: float(value) for name, value in terms.items()}
    return (
        probs.cpu().numpy().astype(np.float32, copy=False),
        labels.cpu().numpy().astype(np.int64),
        confidence.cpu().numpy().astype(np.float32, copy=False),
        objective,
    )
