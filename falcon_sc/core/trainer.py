"""FALCON's alternating optimisation: train the fine classifier, re-solve M, repeat.

Everything stays on one device: the input matrix, the neighbour table and the coarse labels are tensors,
batches and their sampled neighbours are drawn by index, and the EMA predictions that feed the M-step are
accumulated there too. There is no per-cell Python in the loop, and the host waits for the device only
every ``solve_every`` steps (finiteness check, M solve). Under ``torch.distributed`` each rank trains on its
slice of every batch (:mod:`.distributed`).
"""

from __future__ import annotations

import copy
import functools
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import distributed
from .allocation import Allocation
from .classifier import FineClassifier
from .config import FalconConfig
from .cuda_graph import GraphedStep
from .initial_relationship import initial_relationship, split_blocks
from .m_step import m_step
from .model import EMATeacher, make_mlp
from .neighbors import NeighborGraph
from .objective import LOSS_TERMS, BatchInputs, batch_objective, evaluate
from .progress import EpochProgress, epoch_progress
from .schedule import Schedule
from .training_state import DivergenceGuard, TrainingProgress, restore, snapshot
from .views import InputViews, TensorViews


@dataclass(frozen=True)
class FalconResult:
    """What a FALCON run produced (fine classes in the engine's internal order). Frozen: a layer that adds to a
    result (restarts, timings) returns a new one with :func:`dataclasses.replace`."""

    probs: np.ndarray  # (n, K_F) float32: teacher softmax over all fine classes
    labels: np.ndarray  # (n,) int64: most probable fine class among those M gives the cell's coarse class
    confidence: np.ndarray  # (n,) float32: that class's probability renormalised within the coarse class
    relationship: np.ndarray  # (K_F, K_C) int8; with several datasets their M_l side by side (see blocks)
    history: dict[str, list[float]]
    objective: dict[str, float]
    schedule: Schedule
    n_solves: int
    n_recoveries: int
    timings: dict[str, float] = field(default_factory=dict)
    restart_objectives: list[float] = field(default_factory=list)
    # mean adjusted Rand index between the fine labels of every two restarts (None with a single run)
    restart_agreement: float | None = None
    # the teacher network on the CPU (run_falcon adds the input projection it was trained on)
    classifier: FineClassifier | None = None
    cuda_graph: bool = False  # whether training steps were replayed as a CUDA graph
    neighbors: NeighborGraph | None = None  # the graph the neighbour terms used
    coarse_blocks: tuple[int, ...] = ()  # coarse classes per dataset (columns of ``relationship``)
    # the ``labels`` of every restart other than the kept run (run_falcon), for the subtypes' stability
    other_restart_labels: list[np.ndarray] = field(default_factory=list)
    # (n, K_C): the coarse mass of each cell's neighbours over all coarse classes (see core.label_check)
    neighbor_coarse_mass: np.ndarray | None = None
    # (K_F, 2): each subtype's split from its nearest sibling, statistic and p-value (see core.support)
    separation: np.ndarray | None = None
    # fine classes per coarse class (first dataset) where training started, and why (core.allocation)
    allocation: Allocation | None = None

    def relationships(self) -> list[np.ndarray]:
        """One ``(K_F, K_C^l)`` relationship per dataset."""
        return split_blocks(self.relationship, self.coarse_blocks)


@torch.no_grad()
def predict_logits(module: torch.nn.Module, views: InputViews, device: torch.device, amp: bool = False) -> torch.Tensor:
    """``module``'s float32 logits on the plain view of every example, ``views.predict_chunk`` at a time."""
    chunk, n = views.predict_chunk, views.n_examples
    out = []
    for start in range(0, n, chunk):
        idx = torch.arange(start, min(n, start + chunk), device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(module(views.plain(idx)).float())
    return torch.cat(out)


STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def storage_dtype(config: FalconConfig) -> torch.dtype:
    """The dtype in which the classifier's input matrix is kept on the device."""
    try:
        return STORAGE_DTYPES[config.storage_dtype]
    except KeyError:
        raise ValueError(
            f"Unknown storage_dtype {config.storage_dtype!r}; use one of {sorted(STORAGE_DTYPES)}."
        ) from None


def _warm_start(model, teacher: EMATeacher, views: InputViews, labels, batch: int, config: FalconConfig, generator):
    """Fit the classifier to ``labels`` by cross-entropy (its own SGD, so FALCON's optimiser starts fresh), then
    copy it into the teacher: training starts from that partition instead of from random predictions."""
    device = generator.device
    labels = torch.as_tensor(np.asarray(labels, dtype=np.int64), device=device)
    parameters = list(model.parameters())
    optimizer = torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum)
    n = labels.numel()
    for _ in range(config.warm_start_steps):
        idx = torch.randint(n, (min(batch, n),), generator=generator, device=device)
        loss = F.cross_entropy(model(views.student(idx, generator)).float(), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        optimizer.step()
    teacher.module.load_state_dict(model.state_dict())


def train_falcon(
    data: np.ndarray | torch.Tensor | InputViews,
    coarse: np.ndarray,
    neighbors: NeighborGraph,
    *,
    n_fine: int | None = None,
    n_coarse: int | None = None,
    fixed: np.ndarray | None = None,
    coarse_blocks: Sequence[int] | None = None,
    initial_fine_per_coarse: np.ndarray | None = None,
    start_relationship: np.ndarray | None = None,
    initial_labels: np.ndarray | None = None,
    config: FalconConfig,
    random_state: int = 0,
    device: str | torch.device = "cpu",
    progress: bool | EpochProgress = True,
    network: torch.nn.Module | None = None,
    on_epoch_end: Callable[[TrainingProgress], None] | None = None,
    resume: dict[str, Any] | None = None,
) -> FalconResult:
    """Run FALCON on a dense ``(n, d)`` matrix with integer coarse labels in ``[0, n_coarse)``.

    Either ``n_fine`` is given and M is learned, or ``fixed`` is a ``(K_F, K_C)`` relationship that stays
    unchanged (no M-step).

    Several datasets with their own coarse taxonomies share one fine classifier when ``coarse_blocks`` gives
    the number of coarse classes of each: coarse labels ``0 … coarse_blocks[0] − 1`` are the first dataset's,
    the next ``coarse_blocks[1]`` the second's, and so on. M is then the datasets' relationships M_l side by
    side (each fine class has one parent in every dataset); every loss term reads the column of the cell's own
    (dataset, coarse class), and the M-step solves each M_l independently.

    ``initial_fine_per_coarse`` (first dataset's coarse classes) is where the proportional initial M starts
    before sharing out the remaining fine classes, e.g. the per-class counts of
    :func:`~falcon_sc.core.estimate_n_fine`. ``start_relationship`` (``(K_F, K_C)``, all datasets) is instead the M
    training starts from, whatever ``config.relationship_init`` says.

    ``initial_labels`` (one fine class per example, consistent with the initial M, e.g. per-class k-means)
    warm-starts the classifier: before FALCON's own steps it is fitted to them for ``config.warm_start_steps``
    steps (cross-entropy), and the teacher starts from it. FALCON then refines that partition.

    ``data`` may instead be an :class:`~.views.InputViews` (e.g. augmented images) with a ``network`` on
    ``device`` that maps its views to ``n_fine`` logits; without ``network`` the classifier is the config's
    MLP. ``on_epoch_end`` is called after every epoch with a
    :class:`~falcon_sc.core.training_state.TrainingProgress`; a ``resume`` state (from its ``state_dict()``)
    continues that run and reproduces its remaining epochs.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    device = torch.device(device)
    coarse = np.asarray(coarse, dtype=np.int64)
    n_cells = coarse.size
    n_coarse = int(n_coarse if n_coarse is not None else coarse.max() + 1)
    coarse_sizes = np.bincount(coarse, minlength=n_coarse)
    coarse_blocks = tuple(int(b) for b in (coarse_blocks if coarse_blocks is not None else [n_coarse]))
    if sum(coarse_blocks) != n_coarse or min(coarse_blocks) < 1:
        raise ValueError(f"coarse_blocks {coarse_blocks} must be positive and sum to n_coarse={n_coarse}.")
    learn_relationship = fixed is None
    if learn_relationship:
        if n_fine is None:
            raise ValueError("Pass either n_fine (learn M) or fixed (a given relationship).")
        if n_fine < max(coarse_blocks):
            raise ValueError(
                f"n_fine={n_fine} is smaller than the {max(coarse_blocks)} coarse classes of a dataset; every coarse "
                "class needs at least one fine class."
            )
    else:
        fixed = np.asarray(fixed, dtype=np.int8)
        n_fine = fixed.shape[0]

    schedule = Schedule.build(config, n_cells)
    rank, world_size = distributed.world()
    generator = torch.Generator(device=device).manual_seed(int(random_state))
    torch.manual_seed(int(random_state))  # parameter initialisation uses the global generator

    if isinstance(data, InputViews):
        views = data
    else:
        views = TensorViews(torch.as_tensor(data).to(device=device, dtype=storage_dtype(config)))
    if views.n_examples != n_cells:
        raise ValueError(f"{views.n_examples} examples but {n_cells} coarse labels.")
    if len(coarse_blocks) > 1 and not isinstance(views, TensorViews):
        raise ValueError("Several datasets (coarse_blocks) need the examples as a feature matrix, not views.")
    coarse_t = torch.as_tensor(coarse, device=device)
    nbr_idx = torch.as_tensor(neighbors.indices, device=device)
    nbr_valid = torch.as_tensor(neighbors.n_valid, device=device)
    amp = config.mixed_precision and device.type == "cuda"

    if network is None:
        if not isinstance(views, TensorViews):
            raise ValueError("train_falcon: views other than a feature matrix need a `network` for their inputs.")
        network = make_mlp(views.x.shape[1], n_fine, n_layers=config.n_layers, hidden_dim=config.hidden_dim)
    model = network.to(device)
    teacher = EMATeacher(model, config.ema_decay)
    parameters = list(model.parameters())  # listed once: walking the modules every step is CPU overhead
    optimizer = torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    student = model
    if world_size > 1:
        ids = [device.index] if device.type == "cuda" else None
        student = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    if learn_relationship and start_relationship is not None:
        relationship = np.asarray(start_relationship, dtype=np.int8)
        if relationship.shape != (n_fine, n_coarse):
            raise ValueError(f"start_relationship has shape {relationship.shape}; expected ({n_fine}, {n_coarse}).")
    elif learn_relationship:
        relationship = initial_relationship(
            config, coarse_sizes, n_fine, coarse_blocks, initial_fine_per_coarse, views, coarse_t, generator
        )
    else:
        relationship = fixed
    rel_t = torch.as_tensor(relationship, dtype=torch.float32, device=device)
    # EMA predictions summed per coarse class (the M-step's cost) and the number of cells behind them.
    prob_sums = torch.zeros(n_coarse, n_fine, device=device)
    group_counts = torch.zeros(n_coarse, device=device)

    guard = DivergenceGuard()
    history: dict[str, list[float]] = defaultdict(list)
    n_solves, solve_time, step, first_epoch = 0, 0.0, 0, 0
    state = dict(
        model=model, teacher=teacher, optimizer=optimizer, generator=generator, prob_sums=prob_sums,
        group_counts=group_counts, history=history, guard=guard,
    )  # fmt: skip
    if resume is not None:
        restored = restore(resume, **state)
        relationship = restored["relationship"]
        rel_t.copy_(torch.as_tensor(relationship, dtype=torch.float32))
        n_solves, solve_time, step, first_epoch = (restored[k] for k in ("n_solves", "solve_time", "step", "epoch"))
    elif initial_labels is not None:
        _warm_start(model, teacher, views, initial_labels, schedule.batch_size, config, generator)
    guard.save(model, teacher, optimizer)

    # Everything a step reads or accumulates lives in fixed device tensors, updated in place, so that the
    # step can be captured once as a CUDA graph and replayed.
    batch = schedule.batch_size
    batch_idx = torch.zeros(batch, dtype=torch.int64, device=device)
    batch_pick = torch.zeros(batch, config.n_sampled_neighbors, device=device)
    hardness = torch.zeros((), device=device)
    lambda_reg = torch.zeros((), device=device)
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    n_finite = torch.zeros((), device=device)
    sums = torch.zeros(len(LOSS_TERMS), device=device)
    inputs = BatchInputs(views, coarse_t, nbr_idx, nbr_valid, rel_t, generator)

    def train_step() -> None:
        # Every rank draws the same global batch and trains on its slice of it.
        idx = batch_idx.tensor_split(world_size)[rank]
        pick = batch_pick.tensor_split(world_size)[rank]
        batch_coarse = coarse_t.index_select(0, batch_idx)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            terms, t_self = batch_objective(
                student, teacher, inputs, idx, pick, batch_coarse, config, hardness, lambda_reg
            )
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        optimizer.step()
        teacher.update(model)
        # Finiteness is checked at the next checkpoint, not here: a check per step would make the host
        # wait for the device every step.
        finite = torch.isfinite(terms.total)
        nonfinite.logical_or_(~finite)
        n_finite.add_(finite)
        sums.add_(torch.where(finite, torch.stack(terms).detach(), 0.0))
        if learn_relationship:
            own_coarse = batch_coarse.tensor_split(world_size)[rank]  # the coarse labels of idx
            prob_sums.index_add_(0, own_coarse, F.softmax(t_self.float(), dim=1))
            group_counts.index_add_(0, own_coarse, torch.ones_like(idx, dtype=group_counts.dtype))

    # Augmented views draw from the generator inside the step, which a CUDA graph would replay unchanged.
    use_graph = config.cuda_graphs and device.type == "cuda" and world_size == 1 and isinstance(views, TensorViews)
    run_step = GraphedStep(train_step) if use_graph else None
    timings["setup"] = time.perf_counter() - t0
    t_train = time.perf_counter()

    lr = config.lr * guard.lr_scale * schedule.lr_factor(step, config.lr_gamma)
    # a bar of its own unless the caller shares one over several runs
    with epoch_progress(progress, main_process=rank == 0) as bar:
        bar.add(schedule.epochs - first_epoch)
        for epoch in range(first_epoch, schedule.epochs):
            sums.zero_()
            n_finite.zero_()
            changes_this_epoch = 0
            perm = torch.randperm(n_cells, generator=generator, device=device)
            for b in range(schedule.steps_per_epoch):
                lr = config.lr * guard.lr_scale * schedule.lr_factor(step, config.lr_gamma)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch_idx.copy_(perm[b * batch : (b + 1) * batch])
                batch_pick.copy_(torch.rand(batch, config.n_sampled_neighbors, generator=generator, device=device))
                hardness.fill_(schedule.hardness(step))
                lambda_reg.fill_(schedule.lambda_reg(step))
                if run_step is None:
                    train_step()
                else:  # the learning rate is a constant of the graph, and recovery replaces momentum buffers
                    run_step(key=(lr, guard.recoveries))

                step += 1
                if step % schedule.solve_every and b + 1 < schedule.steps_per_epoch:
                    continue
                # Checkpoint: recover from a non-finite loss, else re-solve M if due and save the state.
                if distributed.any_(nonfinite):
                    guard.recover(model, teacher, optimizer, step - 1)
                    nonfinite.zero_()
                    prob_sums.zero_()
                    group_counts.zero_()
                    continue
                if learn_relationship and schedule.solves_at(step - 1):
                    t_solve = time.perf_counter()
                    weight = config.balance_weight if schedule.in_soft_phase(step - 1) else 0.0
                    new = m_step(
                        prob_sums,
                        group_counts,
                        coarse_blocks,
                        weight,
                        relationship,
                        time_limit=config.solver_time_limit,
                    )
                    # A fine class that changes parent in one dataset flips two entries of M.
                    changes_this_epoch += int((new != relationship).sum()) // 2
                    relationship = new
                    rel_t.copy_(torch.as_tensor(relationship, dtype=torch.float32))
                    prob_sums.zero_()
                    group_counts.zero_()
                    n_solves += 1
                    solve_time += time.perf_counter() - t_solve
                guard.save(model, teacher, optimizer)

            means = (distributed.sum_(sums) / distributed.sum_(n_finite).clamp_min(1)).tolist()
            for name, value in zip(LOSS_TERMS, means, strict=True):
                history[name].append(value)
            history["relationship_changes"].append(float(changes_this_epoch))
            history["lr"].append(lr)
            if on_epoch_end is not None:
                counters = dict(epoch=epoch + 1, step=step, n_solves=n_solves, solve_time=solve_time)
                state_dict = functools.partial(snapshot, relationship=relationship, counters=counters, **state)
                on_epoch_end(
                    TrainingProgress(
                        epoch + 1, schedule.epochs, relationship, dict(history), teacher.module, state_dict
                    )
                )
            bar.step()

    timings["training"] = time.perf_counter() - t_train - solve_time
    timings["relationship_solves"] = solve_time

    t_pred = time.perf_counter()
    teacher_logits = predict_logits(teacher.module, views, device, amp)
    result = evaluate(teacher_logits, coarse_t, nbr_idx, rel_t, config)
    timings["prediction"] = time.perf_counter() - t_pred
    probs, labels, confidence, objective = result
    return FalconResult(
        probs=probs,
        labels=labels,
        confidence=confidence,
        relationship=np.asarray(relationship, dtype=np.int8),
        history=dict(history),
        objective=objective,
        schedule=schedule,
        n_solves=n_solves,
        n_recoveries=guard.recoveries,
        timings=timings,
        cuda_graph=run_step is not None and not run_step.failed,
        coarse_blocks=coarse_blocks,
        neighbors=neighbors,
        classifier=FineClassifier(copy.deepcopy(teacher.module).cpu().eval()),
    )
