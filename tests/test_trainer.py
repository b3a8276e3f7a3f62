"""The batched training step against a straightforward per-cell implementation, and the step's guards."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from falcon_sc.core import DEFAULT, losses
from falcon_sc.core.model import EMATeacher, make_mlp
from falcon_sc.core.neighbors import within_group_neighbors
from falcon_sc.core.objective import BatchInputs, batch_objective
from falcon_sc.core.trainer import train_falcon
from falcon_sc.core.views import TensorViews


def per_cell_objective(model, teacher, x, coarse, nbr_idx, nbr_valid, relationship, idx, pick, config, h, lam):
    """FALCON's objective written cell by cell, the way a DataLoader-based implementation gathers items."""
    coarse_terms, nn_terms, conf_terms, student_probs = [], [], [], []
    for row, i in enumerate(idx.tolist()):
        p = F.softmax(model(x[i][None]), dim=1)[0]
        student_probs.append(p)
        fine_of_c = relationship[:, coarse[i]] > 0
        coarse_terms.append(-torch.log(p[fine_of_c].sum()))
        agreements = []
        for u in pick[row].tolist():
            j = nbr_idx[i, math.floor(u * nbr_valid[i])]
            q_j = F.softmax(teacher(x[j][None]), dim=1)[0]
            agreements.append(-torch.log(torch.dot(p, q_j)))
        nn_terms.append(torch.stack(agreements).mean())
        logits_t = teacher(x[i][None])[0] / config.temperature
        q = torch.zeros_like(p)
        q[fine_of_c] = F.softmax(logits_t[fine_of_c], dim=0)
        target = (1 - h) * q + h * F.one_hot(q.argmax(), p.numel()).float()
        keep = float(q.max() > config.confidence_threshold)
        conf_terms.append(-(target * torch.log(p)).sum() * keep)
    mean_p = torch.stack(student_probs).mean(0)
    batch_coarse = coarse[idx]
    share = torch.stack([(batch_coarse == c).float().mean() for c in range(relationship.shape[1])])
    prior = relationship @ (share / relationship.sum(0))
    reg = (prior * (torch.log(prior) - torch.log(mean_p))).sum()
    coarse_l, nn_l, conf_l = (torch.stack(t).mean() for t in (coarse_terms, nn_terms, conf_terms))
    total = config.lambda_coarse * coarse_l + config.lambda_consistency * (nn_l + conf_l) + lam * reg
    return [coarse_l, nn_l, conf_l, reg, total]


def test_batched_objective_equals_per_cell_implementation():
    torch.manual_seed(0)
    n, d, n_fine = 40, 5, 4
    x = torch.randn(n, d)
    coarse = torch.tensor([0] * 25 + [1] * 15)
    relationship = torch.tensor([[1.0, 0], [1, 0], [1, 0], [0, 1]])
    # Neighbours within the coarse class; some cells have fewer valid neighbours than slots.
    nbr_idx = torch.stack([torch.randperm(25)[:6] if c == 0 else 25 + torch.randperm(15)[:6] for c in coarse])
    nbr_valid = torch.where(torch.arange(n) % 3 == 0, 2, 6)
    model = make_mlp(d, n_fine, n_layers=2, hidden_dim=8)
    teacher = EMATeacher(model, 0.99)
    with torch.no_grad():  # a teacher that differs from the student
        for p in teacher.module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    config = DEFAULT.replace(confidence_threshold=0.4)
    idx = torch.tensor([0, 3, 7, 26, 30, 39, 12, 5])
    pick = torch.rand(idx.numel(), 3)
    inputs = BatchInputs(TensorViews(x), coarse, nbr_idx, nbr_valid, relationship)

    batched, _ = batch_objective(model, teacher, inputs, idx, pick, coarse[idx], config, 0.4, 0.7)
    grads = torch.autograd.grad(batched[-1], list(model.parameters()))
    reference = per_cell_objective(
        model, teacher, x, coarse, nbr_idx, nbr_valid, relationship, idx, pick, config, 0.4, 0.7
    )
    ref_grads = torch.autograd.grad(reference[-1], list(model.parameters()))
    for got, want in zip(batched, reference, strict=True):
        assert got.item() == pytest.approx(want.item(), rel=1e-5)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    # Tensor-valued hardness and λ3 (as a captured CUDA graph reads them) give the same terms.
    as_tensors, _ = batch_objective(
        model, teacher, inputs, idx, pick, coarse[idx], config, torch.tensor(0.4), torch.tensor(0.7)
    )
    assert [t.item() for t in as_tensors] == pytest.approx([t.item() for t in batched], rel=1e-6)


def test_soft_targets_are_unchanged_by_a_zero_hardness_tensor():
    logits = torch.randn(5, 4)
    allowed = torch.ones(5, 4, dtype=torch.bool)
    soft, _ = losses.confidence_targets(logits, allowed, 0.9, 0.0)
    blended, _ = losses.confidence_targets(logits, allowed, 0.9, torch.tensor(0.0))
    assert torch.equal(soft, blended)


def test_relationship_prior_counts_classes_absent_from_the_batch():
    relationship = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]])
    prior = losses.relationship_prior(relationship, torch.tensor([0, 0, 2, 2]))
    assert prior.tolist() == [0.5, 0.0, 0.5]
    assert np.isclose(prior.sum().item(), 1.0)


class _FakeCuda:
    """Stand-ins for torch.cuda's stream and graph API: a 'capture' records the step, 'replay' reruns it."""

    def __init__(self, fail_capture=False):
        self.fail_capture = fail_capture
        self.captures = 0
        self.recorded = None

    def install(self, monkeypatch):
        import contextlib

        class Stream:
            def wait_stream(self, other):
                pass

        fake = self

        class Graph:
            def replay(self):
                fake.recorded()

        @contextlib.contextmanager
        def graph(_):
            fake.captures += 1
            if fake.fail_capture:
                raise RuntimeError("operation not permitted when stream is capturing")
            yield

        monkeypatch.setattr(torch.cuda, "Stream", Stream)
        monkeypatch.setattr(torch.cuda, "current_stream", Stream)
        monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
        monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
        monkeypatch.setattr(torch.cuda, "graph", graph)


@pytest.mark.parametrize("fail_capture", [False, True])
def test_graphed_step_warms_up_recaptures_on_new_keys_and_falls_back(monkeypatch, fail_capture):
    from falcon_sc.core.cuda_graph import GraphedStep

    fake = _FakeCuda(fail_capture)
    fake.install(monkeypatch)
    calls = []
    step = GraphedStep(lambda: calls.append(1))
    fake.recorded = step.step_fn
    keys = [0.1] * 6 + [0.01] * 3 + [0.001] * 2
    for key in keys:
        step(key)
    if fail_capture:
        # One failed capture, then every step runs eagerly: no step is lost or repeated.
        assert fake.captures == 1 and step.failed
    else:
        assert fake.captures == 3  # after the warm-up, once per learning rate
    # Each call runs the step exactly once: warm-up eagerly, then by replay (a real capture runs nothing;
    # the fake capture's body runs, hence the extra call per capture).
    extra = 0 if fail_capture else fake.captures
    assert len(calls) == len(keys) + extra


def test_resuming_from_an_epoch_state_reproduces_the_uninterrupted_run():
    rng = np.random.default_rng(0)
    coarse = np.repeat([0, 1, 2], 60)
    x = rng.normal(size=(180, 6)).astype(np.float32) + coarse[:, None]
    graph = within_group_neighbors(x, coarse, 5)
    config = DEFAULT.replace(epochs=4, min_total_steps=0, min_steps_per_epoch=6, solve_every=4, first_solve_fraction=0)
    states = {}

    def keep(progress):
        states[progress.epoch] = progress.state_dict()
        assert progress.epochs == 4 and len(progress.history["total"]) == progress.epoch

    full = train_falcon(x, coarse, graph, n_fine=6, config=config, random_state=3, progress=False, on_epoch_end=keep)
    assert full.n_solves > 0 and sorted(states) == [1, 2, 3, 4]
    resumed = train_falcon(x, coarse, graph, n_fine=6, config=config, random_state=3, progress=False, resume=states[2])
    np.testing.assert_array_equal(resumed.probs, full.probs)
    np.testing.assert_array_equal(resumed.relationship, full.relationship)
    assert resumed.history["total"] == full.history["total"] and resumed.n_solves == full.n_solves


class _ShiftedViews:
    """Views that are not a feature matrix (the student sees shifted rows), as an image backend's are."""

    predict_chunk = 16

    def __init__(self, x):
        self.x = x

    @property
    def n_examples(self):
        return self.x.shape[0]

    def student(self, idx, generator):
        return self.x[idx] + 0.1

    def teacher(self, idx, generator):
        return self.x[idx]

    def plain(self, idx):
        return self.x[idx]


def test_views_need_a_network_and_a_single_dataset():
    rng = np.random.default_rng(0)
    coarse = np.repeat([0, 1], 30)
    x = torch.as_tensor(rng.normal(size=(60, 4)), dtype=torch.float32)
    graph = within_group_neighbors(x.numpy(), coarse, 3)
    config = DEFAULT.replace(epochs=1, min_total_steps=0)
    with pytest.raises(ValueError, match="need a `network`"):
        train_falcon(_ShiftedViews(x), coarse, graph, n_fine=4, config=config, progress=False)
    with pytest.raises(ValueError, match="Several datasets"):
        train_falcon(
            _ShiftedViews(x),
            coarse,
            graph,
            n_fine=4,
            n_coarse=2,
            coarse_blocks=[1, 1],
            config=config,
            network=make_mlp(4, 4, n_layers=2, hidden_dim=8),
            progress=False,
        )
    result = train_falcon(
        _ShiftedViews(x),
        coarse,
        graph,
        n_fine=4,
        config=config,
        network=make_mlp(4, 4, n_layers=2, hidden_dim=8),
        progress=False,
    )
    # A valid M (each fine class under one coarse class, none empty) and predictions over the 60 examples.
    assert (result.relationship.sum(1) == 1).all() and (result.relationship.sum(0) >= 1).all()
    assert result.probs.shape == (60, 4) and np.allclose(result.probs.sum(1), 1, atol=1e-5)


def test_divergence_guard_restores_the_saved_state_exactly():
    """What the guard saves is a copy (later steps do not change it), and recovering loads it back bit for bit:
    student, teacher and the optimiser's momentum, with the learning rate halved."""
    from falcon_sc.core.training_state import DivergenceGuard

    torch.manual_seed(0)
    model = make_mlp(6, 4, n_layers=2, hidden_dim=8)
    teacher = EMATeacher(model, 0.9)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(32, 6)

    def step():
        optimizer.zero_grad()
        model(x).logsumexp(1).mean().backward()
        optimizer.step()
        teacher.update(model)

    step()
    guard = DivergenceGuard(max_recoveries=1)
    guard.save(model, teacher, optimizer)
    saved = [t.clone() for t in (*model.state_dict().values(), *teacher.module.state_dict().values())]
    momentum = [optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    for _ in range(3):
        step()
    assert not torch.equal(next(iter(model.state_dict().values())), saved[0])
    guard.recover(model, teacher, optimizer, step=4)
    restored = [*model.state_dict().values(), *teacher.module.state_dict().values()]
    assert all(torch.equal(a, b) for a, b in zip(restored, saved, strict=True))
    assert all(
        torch.equal(optimizer.state[p]["momentum_buffer"], m) for p, m in zip(model.parameters(), momentum, strict=True)
    )
    assert guard.lr_scale == 0.5
    with pytest.raises(FloatingPointError, match="did not recover after 1"):
        guard.recover(model, teacher, optimizer, step=5)
