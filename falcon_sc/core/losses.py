"""FALCON's loss terms on plain tensors.

Shapes: ``B`` cells in a batch, ``L`` sampled neighbours per cell, ``K_F`` fine and ``K_C`` coarse classes.
``relationship`` is the ``(K_F, K_C)`` 0/1 matrix M.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-8


def coarse_loss(logits: torch.Tensor, relationship: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """L_coarse: cross-entropy of the coarse prediction obtained through M against the coarse labels.

    Only the true class's term is formed: ``log Σ_{f∈c} p_f = logsumexp(logits restricted to c) −
    logsumexp(logits)``, O(B·K_F) instead of the O(B·K_F·K_C) of all coarse log-probabilities (which
    dominated a training step at K_F = 83, K_C = 27).
    """
    allowed = relationship.index_select(1, coarse).T > 0
    within = torch.logsumexp(logits.masked_fill(~allowed, float("-inf")), dim=1)
    return (torch.logsumexp(logits, dim=1) - within).mean()


def neighbor_loss(probs: torch.Tensor, neighbor_probs: torch.Tensor) -> torch.Tensor:
    """L_NN: ``−mean log(p_EMA(x̂)ᵀ p(x))`` over cells ``(B, K_F)`` and their neighbours ``(B, L, K_F)``."""
    agreement = torch.einsum("bk,blk->bl", probs, neighbor_probs)
    return -torch.log(agreement.clamp_min(_EPS)).mean()


def confidence_targets(
    teacher_logits: torch.Tensor,
    allowed: torch.Tensor,
    temperature: float,
    hardness: float | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets for L_conf, and the teacher's confidence in each (the soft target's largest entry).

    ``q = softmax(teacher_logits / T)`` restricted to the ``allowed`` fine classes ``(B, K_F)`` (those that M
    assigns to each cell's coarse class), blended towards its one-hot argmax with weight ``hardness``.
    """
    masked = (teacher_logits / temperature).masked_fill(~allowed, float("-inf"))
    soft = F.softmax(masked, dim=1)
    confidence, argmax = soft.max(1)
    if isinstance(hardness, int | float) and hardness <= 0:
        return soft, confidence
    hard = torch.zeros_like(soft).scatter_(1, argmax[:, None], 1.0)  # one_hot would sync a CUDA device
    return (1.0 - hardness) * soft + hardness * hard, confidence


def confidence_loss(
    log_probs: torch.Tensor, targets: torch.Tensor, confident: torch.Tensor | None = None
) -> torch.Tensor:
    """L_conf: cross-entropy of the student's log-probabilities against the (detached) targets.

    With a boolean ``confident`` mask, other cells contribute zero (the mean still runs over the batch).
    """
    per_cell = -(targets * log_probs).sum(1)
    if confident is not None:
        per_cell = per_cell * confident
    return per_cell.mean()


def marginal_regularizer(
    mean_probs: torch.Tensor, prior: torch.Tensor | None = None, divergence: str = "forward"
) -> torch.Tensor:
    """L_reg: divergence between the batch-mean prediction ``p̄`` ``(K_F,)`` and a ``prior`` (uniform if ``None``).

    ``"forward"`` is ``KL(p̄ ‖ prior)``, with the uniform prior the paper's ``log K_F − H(p̄)``. Its gradient
    through the softmax vanishes as a class empties, so a class that lost its cells stays empty.
    ``"reverse"`` is ``KL(prior ‖ p̄)``, a barrier that grows without bound as any class empties.
    """
    mean_p = mean_probs.clamp_min(_EPS)
    prior = torch.full_like(mean_p, 1.0 / mean_p.numel()) if prior is None else prior.clamp_min(_EPS)
    if divergence == "forward":
        return (mean_p * (torch.log(mean_p) - torch.log(prior))).sum()
    if divergence == "reverse":
        return (prior * (torch.log(prior) - torch.log(mean_p))).sum()
    raise ValueError(f"Unknown marginal divergence {divergence!r}; use 'forward' or 'reverse'.")


def relationship_prior(relationship: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """Marginal over fine classes implied by M and the batch's coarse labels.

    Each coarse class keeps its share of the batch, split evenly over the fine classes M gives it. Unlike the
    uniform prior, this does not ask a rare coarse class to fill as many cells as a common one.
    """
    n_coarse = relationship.shape[1]
    # index_add_ rather than bincount, which makes the host wait for a CUDA device.
    counts = torch.zeros(n_coarse, dtype=relationship.dtype, device=coarse.device)
    coarse_share = counts.index_add_(0, coarse, torch.ones_like(coarse, dtype=relationship.dtype)) / coarse.numel()
    return relationship @ (coarse_share / relationship.sum(0))
