import math

import numpy as np
import pytest
import torch

from falcon_sc.core import FalconConfig, Schedule, losses
from falcon_sc.core.model import EMATeacher, make_mlp

M = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # fine 0, 1 → coarse 0; fine 2 → coarse 1


def coarse_probs(logits, relationship):
    """The definition: fine probabilities summed through M, for every coarse class."""
    return torch.softmax(logits, dim=1) @ relationship


def test_coarse_loss_sums_fine_probabilities_through_m():
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]))
    coarse = torch.tensor([0, 1])
    expected = -(math.log(0.5) + math.log(0.8)) / 2
    assert losses.coarse_loss(logits, M, coarse).item() == pytest.approx(expected, rel=1e-6)
    assert torch.allclose(coarse_probs(logits, M), torch.tensor([[0.5, 0.5], [0.2, 0.8]]), atol=1e-6)
    # On random logits too, the loss is the cross-entropy of the summed probabilities.
    logits = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    coarse = torch.randint(0, 2, (50,), generator=torch.Generator().manual_seed(1))
    reference = torch.nn.functional.nll_loss(torch.log(coarse_probs(logits, M)), coarse)
    assert losses.coarse_loss(logits, M, coarse).item() == pytest.approx(reference.item(), rel=1e-5)


def test_neighbor_loss_hand_computed():
    p = torch.tensor([[0.5, 0.5, 0.0]])
    nbrs = torch.tensor([[[1.0, 0.0, 0.0], [0.2, 0.2, 0.6]]])
    expected = -(math.log(0.5) + math.log(0.2)) / 2
    assert losses.neighbor_loss(p, nbrs).item() == pytest.approx(expected, rel=1e-6)


def test_confidence_targets_restrict_to_allowed_classes_and_harden():
    logits = torch.tensor([[2.0, 1.0, 5.0]])
    allowed = torch.tensor([[True, True, False]])
    soft, conf = losses.confidence_targets(logits, allowed, temperature=0.9, hardness=0.0)
    e0, e1 = math.exp(2 / 0.9), math.exp(1 / 0.9)
    assert soft.tolist()[0] == pytest.approx([e0 / (e0 + e1), e1 / (e0 + e1), 0.0], rel=1e-6)
    assert conf.item() == pytest.approx(e0 / (e0 + e1), rel=1e-6)
    half, _ = losses.confidence_targets(logits, allowed, temperature=0.9, hardness=0.5)
    assert half.tolist()[0] == pytest.approx([0.5 * soft[0, 0].item() + 0.5, 0.5 * soft[0, 1].item(), 0.0])
    hard, _ = losses.confidence_targets(logits, allowed, temperature=0.9, hardness=1.0)
    assert hard.tolist()[0] == [1.0, 0.0, 0.0]


def test_confidence_loss_masks_unconfident_cells():
    log_p = torch.log(torch.tensor([[0.25, 0.75], [0.5, 0.5]]))
    targets = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    full = (-math.log(0.75) - math.log(0.5)) / 2
    assert losses.confidence_loss(log_p, targets).item() == pytest.approx(full, rel=1e-6)
    masked = losses.confidence_loss(log_p, targets, torch.tensor([True, False])).item()
    assert masked == pytest.approx(-math.log(0.75) / 2, rel=1e-6)


def test_marginal_regularizer_uniform_is_log_k_minus_entropy():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    mean = np.array([0.4, 0.2, 0.4])
    expected = math.log(3) + float((mean * np.log(mean)).sum())
    assert losses.marginal_regularizer(p.mean(0)).item() == pytest.approx(expected, rel=1e-6)
    assert losses.marginal_regularizer(torch.full((3,), 1 / 3)).item() == pytest.approx(0.0, abs=1e-6)


def test_relationship_prior_splits_each_coarse_share_evenly():
    coarse = torch.tensor([0, 0, 0, 1])  # coarse 0 holds 3/4 of the batch
    prior = losses.relationship_prior(M, coarse)
    assert prior.tolist() == pytest.approx([0.375, 0.375, 0.25])
    assert losses.marginal_regularizer(prior, prior).item() == pytest.approx(0.0, abs=1e-6)


def test_ema_update_moves_towards_student():
    torch.manual_seed(0)
    student = make_mlp(3, 2, n_layers=1, hidden_dim=4)
    teacher = EMATeacher(student, decay=0.9)
    before = [p.clone() for p in teacher.module.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    teacher.update(student)
    for old, new, s in zip(before, teacher.module.parameters(), student.parameters(), strict=True):
        assert torch.allclose(new, 0.9 * old + 0.1 * s)
        assert not new.requires_grad


def test_mlp_shape():
    net = make_mlp(10, 7, n_layers=4, hidden_dim=64)
    linear = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [
        (10, 64),
        (64, 64),
        (64, 64),
        (64, 64),
        (64, 7),
    ]


def test_soft_to_hard_schedule_is_a_half_cosine():
    config = FalconConfig(epochs=10, batch_size=100, soft_target_fraction=0.3)
    s = Schedule.build(config, 1000)  # 10 steps/epoch, 100 steps, soft phase = 30 steps
    assert (s.steps_per_epoch, s.total_steps, s.soft_steps) == (10, 100, 30)
    assert s.hardness(0) == 0.0
    assert s.hardness(15) == pytest.approx(0.5)
    assert s.hardness(30) == 1.0 and s.hardness(99) == 1.0
    assert s.in_soft_phase(29) and not s.in_soft_phase(30)
    assert s.lr_factor(59, 0.1) == 1.0 and s.lr_factor(60, 0.1) == pytest.approx(0.1)
    assert s.lr_factor(80, 0.1) == pytest.approx(0.01)


def test_small_data_rule_keeps_m_updating():
    # The paper's batch of 1024 on 700 cells: one step per epoch, so M is solved every step.
    paper = Schedule.build(FalconConfig(), 700)
    assert (paper.batch_size, paper.steps_per_epoch, paper.solve_every) == (700, 1, 1)
    tuned = Schedule.build(FalconConfig(min_steps_per_epoch=8, min_total_steps=1500, min_solves_per_epoch=2), 700)
    assert tuned.batch_size == 87 and tuned.steps_per_epoch == 8
    assert tuned.total_steps >= 1500 and tuned.solve_every == 4
    big = Schedule.build(FalconConfig(), 372_000)  # the paper's own size is untouched
    assert (big.batch_size, big.steps_per_epoch, big.epochs, big.solve_every) == (1024, 363, 10, 25)


def test_reverse_marginal_regularizer_is_kl_prior_to_mean_and_a_barrier():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    prior = torch.tensor([0.5, 0.25, 0.25])
    mean = np.array([0.4, 0.2, 0.4])
    expected = float((prior.numpy() * np.log(prior.numpy() / mean)).sum())
    assert losses.marginal_regularizer(p.mean(0), prior, "reverse").item() == pytest.approx(expected, rel=1e-5)
    assert losses.marginal_regularizer(prior, prior, "reverse").item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"forward.*reverse"):
        losses.marginal_regularizer(p.mean(0), prior, "sideways")

    # A class that is almost empty: the forward KL barely pushes it back, the reverse KL pushes hard.
    def pull(divergence):
        logits = torch.tensor([[4.0, 4.0, -6.0]] * 4, requires_grad=True)
        losses.marginal_regularizer(torch.softmax(logits, 1).mean(0), None, divergence).backward()
        return -logits.grad[:, 2].sum().item()  # descent direction on the emptying class's logit

    assert pull("reverse") > 100 * pull("forward") > 0


def test_lambda_reg_is_relaxed_after_the_soft_phase():
    config = FalconConfig(epochs=10, batch_size=100, soft_target_fraction=0.3, lambda_reg=1.0, lambda_reg_hard=0.2)
    s = Schedule.build(config, 1000)
    assert s.lambda_reg(0) == 1.0 and s.lambda_reg(29) == 1.0
    assert s.lambda_reg(30) == 0.2 and s.lambda_reg(99) == 0.2
    unchanged = Schedule.build(FalconConfig(lambda_reg=0.5), 1000)
    assert unchanged.lambda_reg(0) == unchanged.lambda_reg(99) == 0.5
