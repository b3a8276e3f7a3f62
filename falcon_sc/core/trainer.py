"""FALCON's alternating optimisation: train the fine classifier, re-solve M, repeat.

Everything stays on one device: the input matrix, the neighbour table and the coarse labels are tensors,
batches and their sampled neighbours are drawn by index, and the EMA predictions that feed the M-step are
accumulated there too. There is no per-cell Python in the loop, and the host waits for the device only
every ``solve_every`` steps (finiteness check, M solve). Under ``torch.distributed`` each rank trains on its
slice of every batch (:mod:`.distributed`).
"""

from __future__ import annotations

import copy
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import distributed, losses
from .classifier import FineClassifier, within_coarse
from .config import FalconConfig
from .model import EMATeacher, make_mlp
from .neighbors import NeighborGraph
from .progress import progress_bar
from .relationship import solve_relationship, solve_relationships
from .schedule import Schedule
from .views import InputViews, TensorViews

logger = logging.getLogger(__name__)

LOSS_TERMS = ("coarse", "neighbor", "confidence", "reg", "total")


@dataclass
class FalconResult:
    """What a FALCON run produced (fine classes in the engine's internal order)."""

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
    neighbors: NeighborGraph | None = None  # the graph used (set by :func:`~.pipeline.run_falcon`)
    coarse_blocks: tuple[int, ...] = ()  # coarse classes per dataset (columns of ``relationship``)

    def relationships(self) -> list[np.ndarray]:
        """One ``(K_F, K_C^l)`` relationship per dataset."""
        return split_blocks(self.relationship, self.coarse_blocks)


def split_blocks(matrix: np.ndarray, coarse_blocks) -> list[np.ndarray]:
    """The column blocks of ``matrix`` (one per dataset) given the number of coarse classes of each."""
    return np.split(matrix, np.cumsum(coarse_blocks)[:-1], axis=1)


def proportional_relationship(coarse_sizes: np.ndarray, n_fine: int, base: np.ndarray | None = None) -> np.ndarray:
    """M giving each coarse class ``base[c]`` fine classes (default 1) plus a share of the rest proportional
    to its size.

    The ``n_fine − sum(base)`` extra classes are split by largest remainder; ties go to the larger class. A
    ``base`` that does not fit (more than ``n_fine`` classes, or a class with none) is ignored for the default.
    """
    coarse_sizes = np.asarray(coarse_sizes, dtype=np.float64)
    n_coarse = coarse_sizes.size
    base = usable_base(base, n_coarse, n_fine)
    extra = n_fine - base.sum()
    quota = extra * coarse_sizes / coarse_sizes.sum() if coarse_sizes.sum() > 0 else np.zeros(n_coarse)
    counts = np.floor(quota).astype(int)
    order = np.lexsort((-coarse_sizes, -(quota - counts)))
    counts[order[: extra - counts.sum()]] += 1
    return fixed_relationship(counts + base)


def usable_base(base: np.ndarray | None, n_coarse: int, n_fine: int) -> np.ndarray:
    """``base`` (fine classes each coarse class starts with) as a fresh int array, or one each when it is
    missing or does not fit (wrong length, a class with none, more than ``n_fine`` in all)."""
    counts = np.ones(n_coarse, dtype=int) if base is None else np.array(base, dtype=int)
    if counts.shape != (n_coarse,) or counts.min() < 1 or counts.sum() > n_fine:
        return np.ones(n_coarse, dtype=int)
    return counts


def aligned_relationship(first: np.ndarray, overlap: np.ndarray, *, time_limit: float = 60.0) -> np.ndarray:
    """Initial M_l of a later dataset, consistent with the first dataset's M at the coarse level.

    ``overlap[c, c']`` is the share of the first dataset's coarse class ``c`` that falls in the later dataset's
    class ``c'`` (judged from the later dataset's cells, see :func:`coarse_overlaps`). The fine classes of ``c``
    split ``c`` into equal consecutive parts, the classes ``c'`` into parts of sizes ``overlap[c]``; a fine
    class's cost for ``c'`` is how much its part overlaps that of ``c'``, and the exact M-step solver assigns
    the parents (so every class ``c'`` gets a fine class). Without this, independent initial splits of the
    datasets would ask each fine class to be the union of unrelated cells until the first M-step.
    """
    parents = first.argmax(1)
    cost = np.zeros((first.shape[0], overlap.shape[1]))
    for c in range(first.shape[1]):
        fines = np.flatnonzero(parents == c)
        edges = np.r_[0.0, np.cumsum(overlap[c])]
        for j, f in enumerate(fines):
            lo, hi = j / fines.size, (j + 1) / fines.size
            cost[f] = np.clip(np.minimum(hi, edges[1:]) - np.maximum(lo, edges[:-1]), 0.0, None) * fines.size
    return solve_relationship(cost, 0.0, time_limit=time_limit)


@torch.no_grad()
def coarse_overlaps(x: torch.Tensor, coarse: torch.Tensor, coarse_blocks: Sequence[int]) -> list[np.ndarray]:
    """For every later dataset, ``(K_C^0, K_C^l)``: how the first dataset's coarse classes spread over its own.

    Each cell of a later dataset is given the first dataset's coarse class with the nearest centroid (cosine);
    row ``c`` is the distribution over the later dataset's classes of the cells given ``c`` (uniform if none).
    """
    n_first = coarse_blocks[0]
    unit = F.normalize(x.float(), dim=1)
    first = coarse < n_first
    centroids = torch.zeros(n_first, x.shape[1], device=x.device).index_add_(0, coarse[first], unit[first])
    centroids = F.normalize(centroids, dim=1)
    overlaps, offset = [], n_first
    for size in coarse_blocks[1:]:
        cells = (coarse >= offset) & (coarse < offset + size)
        nearest = (unit[cells] @ centroids.T).argmax(1).cpu().numpy()
        own = (coarse[cells] - offset).cpu().numpy()
        counts = np.bincount(nearest * size + own, minlength=n_first * size).reshape(n_first, size).astype(float)
        totals = counts.sum(1, keepdims=True)
        overlaps.append(np.where(totals > 0, counts / np.maximum(totals, 1), 1.0 / size))
        offset += size
    return overlaps


def fixed_relationship(fine_per_coarse: np.ndarray) -> np.ndarray:
    """M with ``fine_per_coarse[c]`` consecutive fine classes under coarse class ``c``."""
    fine_per_coarse = np.asarray(fine_per_coarse, dtype=int)
    parents = np.repeat(np.arange(fine_per_coarse.size), fine_per_coarse)
    return np.eye(fine_per_coarse.size, dtype=np.int8)[parents]


class _GraphedStep:
    """Runs a training step through a CUDA graph: a few eager warm-up steps on a side stream (they create the
    optimiser's momentum buffers and cuBLAS workspaces), then one capture replayed every step. A new
    ``key`` (values baked into the graph, such as the learning rate) triggers a new capture.

    A step of the small FALCON classifier is ~150 tiny kernels; launched one by one from Python the GPU
    mostly waits for the host, replayed as one graph it does not.
    """

    warmup_steps = 3

    def __init__(self, step_fn):
        self.step_fn = step_fn
        self.graph: torch.cuda.CUDAGraph | None = None
        self.key = None
        self.n_calls = 0
        self.failed = False

    def __call__(self, key) -> None:
        self.n_calls += 1
        if self.failed:
            self.step_fn()
            return
        if self.n_calls <= self.warmup_steps:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.step_fn()
            torch.cuda.current_stream().wait_stream(side)
            return
        if self.graph is None or key != self.key:
            self.graph = None  # release the previous capture's memory first
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):  # records the step's kernels without running them
                    self.step_fn()
            except RuntimeError as err:  # nothing ran; the step is taken eagerly from now on
                logger.warning("CUDA graph capture failed (%s); training continues without graphs.", err)
                self.failed = True
                self.step_fn()
                return
            self.graph, self.key = graph, key
        self.graph.replay()


class _DivergenceGuard:
    """Keeps the last good training state; restores it with a halved learning rate on a non-finite loss."""

    def __init__(self, max_recoveries: int):
        self.max_recoveries = max_recoveries
        self.recoveries = 0
        self.lr_scale = 1.0
        self._state = None

    def save(self, model, teacher, optimizer) -> None:
        self._state = copy.deepcopy((model.state_dict(), teacher.module.state_dict(), optimizer.state_dict()))

    def recover(self, model, teacher, optimizer, step: int) -> None:
        if self.recoveries >= self.max_recoveries:
            raise FloatingPointError(
                f"FALCON training diverged (non-finite loss at step {step}) and did not recover after "
                f"{self.max_recoveries} restarts with a halved learning rate. Lower `lr`, set `grad_clip`, "
                "or check the input for extreme values."
            )
        self.recoveries += 1
        self.lr_scale *= 0.5
        model_state, teacher_state, optimizer_state = self._state
        model.load_state_dict(model_state)
        teacher.module.load_state_dict(teacher_state)
        optimizer.load_state_dict(optimizer_state)
        logger.warning(
            "Non-finite loss at step %d: restored the last good state and halved the learning rate (%d/%d).",
            step,
            self.recoveries,
            self.max_recoveries,
        )


def _regularizer(config: FalconConfig, mean_probs, relationship: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    prior = losses.relationship_prior(relationship, coarse) if config.prior == "relationship" else None
    return losses.marginal_regularizer(mean_probs, prior, config.marginal_divergence)


def _objective(config: FalconConfig, coarse, neighbor, confidence, reg, *, lambda_reg: float | None = None):
    """λ1·L_coarse + λ2·(L_NN + L_conf) + λ3·L_reg (λ3 = ``config.lambda_reg`` unless given).

    Training relaxes λ3 late (:meth:`Schedule.lambda_reg`); restarts are compared with
    ``config.restart_lambda_reg``."""
    lambda_reg = config.lambda_reg if lambda_reg is None else lambda_reg
    return config.lambda_coarse * coarse + config.lambda_consistency * (neighbor + confidence) + lambda_reg * reg


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
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """FALCON's loss terms ``[coarse, neighbor, confidence, reg, total]`` on the cells ``idx``, batched.

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
    c = inputs.coarse[idx]
    nbrs = inputs.nbr_idx[idx[:, None], (pick * inputs.nbr_valid[idx, None]).long()]
    teacher_logits = teacher(inputs.views.teacher(torch.cat([idx, nbrs.reshape(-1)]), inputs.generator)).float()
    t_self = teacher_logits[: idx.numel()]
    t_nbr_probs = F.softmax(teacher_logits[idx.numel() :], dim=1).view(idx.numel(), n_sampled, -1)
    allowed = inputs.relationship[:, c].T.bool()

    logits = student(inputs.views.student(idx, inputs.generator)).float()
    log_probs = F.log_softmax(logits, dim=1)
    probs = log_probs.exp()
    targets, teacher_confidence = losses.confidence_targets(t_self, allowed, config.temperature, hardness)
    l_coarse = share * losses.coarse_loss(logits, inputs.relationship, c)
    l_nn = share * losses.neighbor_loss(probs, t_nbr_probs)
    # Early on the teacher is confident about no cell; its arbitrary preferences are then not imposed.
    confident = teacher_confidence > config.confidence_threshold if config.confidence_threshold > 0 else None
    l_conf = share * losses.confidence_loss(log_probs, targets, confident)
    mean_probs = distributed.sum_with_grad(probs.sum(0)) / batch_coarse.numel()
    l_reg = _regularizer(config, mean_probs, inputs.relationship, batch_coarse)
    total = _objective(config, l_coarse, l_nn, l_conf, l_reg, lambda_reg=lambda_reg)
    return [l_coarse, l_nn, l_conf, l_reg, total], t_self


def _warm_start(model, teacher: EMATeacher, views: InputViews, labels, batch: int, config: FalconConfig, generator):
    """Fit the classifier to ``labels`` by cross-entropy (its own SGD, so FALCON's optimiser starts fresh), then
    copy it into the teacher: training starts from that partition instead of from random predictions."""
    device = generator.device
    labels = torch.as_tensor(np.asarray(labels, dtype=np.int64), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    n = labels.numel()
    for _ in range(config.warm_start_steps):
        idx = torch.randint(n, (min(batch, n),), generator=generator, device=device)
        loss = F.cross_entropy(model(views.student(idx, generator)).float(), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
    teacher.module.load_state_dict(model.state_dict())


@dataclass
class TrainingProgress:
    """Where training stands after an epoch; what ``on_epoch_end`` receives.

    ``state_dict()`` is everything needed to continue exactly from here (pass it as ``resume``): networks,
    optimiser, random generator, M and the EMA predictions accumulated since the last solve, history.
    """

    epoch: int  # epochs completed
    epochs: int  # epochs in total
    relationship: np.ndarray
    history: dict[str, list[float]]
    teacher: torch.nn.Module
    state_dict: Callable[[], dict[str, Any]]


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
    initial_labels: np.ndarray | None = None,
    config: FalconConfig,
    random_state: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
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
    before sharing out the remaining fine classes, e.g. the per-class counts of :func:`~.estimate.estimate_n_fine`.

    ``initial_labels`` (one fine class per example, consistent with the initial M, e.g. per-class k-means)
    warm-starts the classifier: before FALCON's own steps it is fitted to them for ``config.warm_start_steps``
    steps (cross-entropy), and the teacher starts from it. FALCON then refines that partition.

    ``data`` may instead be an :class:`~.views.InputViews` (e.g. augmented images) with a ``network`` on
    ``device`` that maps its views to ``n_fine`` logits; without ``network`` the classifier is the config's
    MLP. ``on_epoch_end`` is called after every epoch with a :class:`TrainingProgress`; a ``resume`` state
    (from :meth:`TrainingProgress.state_dict`) continues that run and reproduces its remaining epochs.
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
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    student = model
    if world_size > 1:
        ids = [device.index] if device.type == "cuda" else None
        student = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    block_of_group = np.repeat(np.arange(len(coarse_blocks)), coarse_blocks)
    if not learn_relationship:
        relationship = fixed
    elif config.relationship_init == "proportional":
        relationship = proportional_relationship(coarse_sizes[: coarse_blocks[0]], n_fine, initial_fine_per_coarse)
        if len(coarse_blocks) > 1:
            later = [
                aligned_relationship(relationship, overlap, time_limit=config.solver_time_limit)
                for overlap in coarse_overlaps(views.x, coarse_t, coarse_blocks)
            ]
            relationship = np.hstack([relationship, *later])
    else:  # "random"
        random_cost = torch.rand(n_fine, n_coarse, generator=generator, device=device).cpu().numpy()
        relationship = np.hstack(
            solve_relationships(
                split_blocks(random_cost, coarse_blocks), config.balance_weight, time_limit=config.solver_time_limit
            )
        )
    rel_t = torch.as_tensor(relationship, dtype=torch.float32, device=device)
    # EMA predictions summed per coarse class (the M-step's cost) and the number of cells behind them.
    prob_sums = torch.zeros(n_coarse, n_fine, device=device)
    group_counts = torch.zeros(n_coarse, device=device)

    guard = _DivergenceGuard(config.max_recoveries)
    history: dict[str, list[float]] = defaultdict(list)
    n_solves = 0
    solve_time = 0.0
    step = 0
    first_epoch = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        teacher.module.load_state_dict(resume["teacher"])
        optimizer.load_state_dict(resume["optimizer"])
        generator.set_state(resume["generator"])
        relationship = np.asarray(resume["relationship"], dtype=np.int8)
        rel_t.copy_(torch.as_tensor(relationship, dtype=torch.float32))
        prob_sums.copy_(resume["prob_sums"])
        group_counts.copy_(resume["group_counts"])
        history.update({name: list(values) for name, values in resume["history"].items()})
        n_solves, solve_time, step, first_epoch = (resume[k] for k in ("n_solves", "solve_time", "step", "epoch"))
        guard.recoveries, guard.lr_scale = resume["recoveries"], resume["lr_scale"]
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
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            terms, t_self = batch_objective(
                student, teacher, inputs, idx, pick, coarse_t[batch_idx], config, hardness, lambda_reg
            )
        optimizer.zero_grad(set_to_none=True)
        terms[-1].backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        teacher.update(model)
        # Finiteness is checked at the next checkpoint, not here: a check per step would make the host
        # wait for the device every step.
        finite = torch.isfinite(terms[-1])
        nonfinite.logical_or_(~finite)
        n_finite.add_(finite)
        sums.add_(torch.where(finite, torch.stack(terms).detach(), 0.0))
        if learn_relationship:
            prob_sums.index_add_(0, coarse_t[idx], F.softmax(t_self.float(), dim=1))
            group_counts.index_add_(0, coarse_t[idx], torch.ones_like(idx, dtype=group_counts.dtype))

    # Augmented views draw from the generator inside the step, which a CUDA graph would replay unchanged.
    use_graph = config.cuda_graphs and device.type == "cuda" and world_size == 1 and isinstance(views, TensorViews)
    run_step = _GraphedStep(train_step) if use_graph else None
    timings["setup"] = time.perf_counter() - t0
    t_train = time.perf_counter()

    lr = config.lr * guard.lr_scale * schedule.lr_factor(step, config.lr_gamma)
    epochs = progress_bar(
        range(first_epoch, schedule.epochs),
        enabled=progress and rank == 0,
        desc="FALCON",
        unit="epoch",
        initial=first_epoch,
        total=schedule.epochs,
    )
    for epoch in epochs:
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
                # The paper's C = Y_ohᵀ P / N over the cells seen since the last solve (on all ranks), one
                # independent problem per dataset, each normalised by its own number of cells.
                counts = distributed.sum_(group_counts).double().cpu().numpy()
                n_seen = np.bincount(block_of_group, weights=counts, minlength=len(coarse_blocks))
                cost = distributed.sum_(prob_sums).T.double().cpu().numpy() / n_seen[block_of_group].clip(1)
                weight = config.balance_weight if schedule.in_soft_phase(step - 1) else 0.0
                new = None
                if rank == 0:
                    blocks = split_blocks(cost, coarse_blocks)
                    new = np.hstack(solve_relationships(blocks, weight, time_limit=config.solver_time_limit))
                new = distributed.broadcast_array(new, relationship, device).astype(np.int8)
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
            counters = {
                "epoch": epoch + 1,
                "step": step,
                "relationship": relationship,
                "n_solves": n_solves,
                "solve_time": solve_time,
                "recoveries": guard.recoveries,
                "lr_scale": guard.lr_scale,
            }

            def state_dict(counters=counters) -> dict[str, Any]:
                return copy.deepcopy(
                    {
                        **counters,
                        "model": model.state_dict(),
                        "teacher": teacher.module.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "generator": generator.get_state(),
                        "prob_sums": prob_sums,
                        "group_counts": group_counts,
                        "history": dict(history),
                    }
                )

            on_epoch_end(
                TrainingProgress(epoch + 1, schedule.epochs, relationship, dict(history), teacher.module, state_dict)
            )

    timings["training"] = time.perf_counter() - t_train - solve_time
    timings["relationship_solves"] = solve_time

    t_pred = time.perf_counter()
    teacher_logits = predict_logits(teacher.module, views, device, amp)
    result = _finalise(teacher_logits, coarse_t, nbr_idx, rel_t, config)
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
        classifier=FineClassifier(copy.deepcopy(teacher.module).cpu().eval()),
    )


@torch.no_grad()
def _finalise(logits, coarse_t, nbr_idx, rel_t, config: FalconConfig, chunk: int = 16384):
    """Labels restricted to each cell's coarse class, and the objective's terms on all cells.

    The neighbour term is accumulated over row chunks: all neighbours' probabilities at once would take
    cells × k × K_F floats (6.6 GB for a million cells)."""
    probs = F.softmax(logits, dim=1)
    labels, confidence = within_coarse(probs, rel_t[:, coarse_t].T.bool())
    log_probs = F.log_softmax(logits, dim=1)
    terms = {
        "coarse": losses.coarse_loss(logits, rel_t, coarse_t),
        "neighbor": sum(
            losses.neighbor_loss(probs[i : i + chunk], probs[nbr_idx[i : i + chunk]]) * nbr_idx[i : i + chunk].shape[0]
            for i in range(0, probs.shape[0], chunk)
        )
        / probs.shape[0],
        # L_conf with one-hot targets: the log-probability of each cell's label.
        "confidence": -log_probs.gather(1, labels[:, None]).mean(),
        "reg": _regularizer(config, probs.mean(0), rel_t, coarse_t),
    }
    terms["total"] = _objective(config, **terms, lambda_reg=config.restart_lambda_reg)
    objective = {name: float(value) for name, value in terms.items()}
    return (
        probs.cpu().numpy().astype(np.float32),
        labels.cpu().numpy().astype(np.int64),
        confidence.cpu().numpy().astype(np.float32),
        objective,
    )
