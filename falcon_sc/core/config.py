"""Hyperparameters of a FALCON run and the named presets."""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

#: Inputs with at most this many genes are treated as targeted panels (spatial and other few-gene assays).
PANEL_MAX_GENES = 500


def is_panel(n_genes: int | None) -> bool:
    """Whether an input of ``n_genes`` genes is a targeted panel (None: an embedding, never one)."""
    return n_genes is not None and n_genes <= PANEL_MAX_GENES


def is_whole_transcriptome(n_genes: int | None) -> bool:
    """Whether an input of ``n_genes`` genes is neither a targeted panel nor an embedding (None)."""
    return n_genes is not None and not is_panel(n_genes)


@dataclass(frozen=True)
class FalconConfig:
    """Every hyperparameter of a FALCON run.

    Schedules are given as fractions of the total number of optimisation steps, so they mean the same on
    700 cells and on 372k cells (the paper's "epoch 6 of 10" is ``0.6``).
    """

    # Fine classifier: ``n_layers`` Linear+ReLU blocks of ``hidden_dim`` units, then a linear head to K_F.
    n_layers: int = 4
    hidden_dim: int = 64
    # Optimisation.
    epochs: int = 10
    batch_size: int = 1024
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_milestones: tuple[float, ...] = (0.6, 0.8)
    lr_gamma: float = 0.1
    grad_clip: float | None = None
    # Small-data rule: the batch shrinks so an epoch has at least ``min_steps_per_epoch`` steps, and epochs
    # are added until training has at least ``min_total_steps`` steps.
    min_steps_per_epoch: int = 1
    min_total_steps: int = 0
    # Large-data rule: only as many whole epochs (at least one) as first reach ``max_total_steps`` steps; None =
    # always ``epochs``. Off in both presets: 600 steps at 100,000 cells cut training by a third and cost 0.3 ACC
    # on a hard simulation (docs/notes.md, "Speed").
    max_total_steps: int | None = None
    # Objective λ1·L_coarse + λ2·(L_NN + L_conf) + λ3·L_reg.
    lambda_coarse: float = 0.5
    lambda_consistency: float = 0.5
    lambda_reg: float = 0.5
    prior: Literal["uniform", "relationship"] = "uniform"
    # "forward" = KL(p̄ ‖ prior) (the paper's log K_F − H(p̄) for the uniform prior); "reverse" = KL(prior ‖ p̄),
    # whose gradient does not vanish as a class empties, so it keeps every fine class alive.
    marginal_divergence: Literal["forward", "reverse"] = "forward"
    # λ3 once the targets are hard (after the soft-target phase); None keeps ``lambda_reg``.
    lambda_reg_hard: float | None = None
    temperature: float = 0.9
    # Only cells whose soft target (before hardening) exceeds this probability enter L_conf (0 = all cells).
    confidence_threshold: float = 0.0
    n_neighbors: int = 20
    # Fewer neighbours in a coarse class of small subtypes: at most this share of the class's cells per fine class
    # at the start (rounded; at least ``n_sampled_neighbors``; a class with one fine class keeps ``n_neighbors``).
    # With 20 neighbours, most of the neighbours of a cell in a subtype of ~20 cells lie outside it, and the
    # neighbour loss merges the subtype into the next. None: ``n_neighbors`` in every class.
    neighbor_share: float | None = None
    # How within-class neighbours are ranked: cosine similarity (paper) or Euclidean distance. On PCs of all
    # cells a coarse class lies off the global centre, and cosine similarity cannot see how far a cell lies
    # along that direction, so variation inside the class along its own mean is lost to the neighbour search.
    # "auto": Euclidean for whole-transcriptome inputs (more than PANEL_MAX_GENES genes); cosine for targeted
    # panels, where it measured better, and for embeddings (``use_rep``), where neither won.
    neighbor_metric: Literal["cosine", "euclidean", "auto"] = "cosine"
    # Under cosine similarity, compare a class's cells on their coordinates centred on the class with the length
    # of the class's offset from the global centre as one more coordinate, instead of the coordinates as they
    # are (``offset_axis`` of :func:`~.neighbors.within_group_neighbors`): the offset kept in place hides the
    # variation along the class's own mean from the angle. "auto": on for gene inputs (searched on PCs of
    # z-scored genes), off for embeddings (``use_rep``), on which it split (DEFAULT below).
    neighbor_offset_axis: bool | Literal["auto"] = False
    # What the classifier sees and where neighbours are searched: the selected genes themselves (paper) or
    # their top ``n_pcs`` principal components (a fixed linear first layer of the classifier). ``None`` picks
    # ``max(10, K_F + 1)``: K_F classes differ along at most K_F − 1 directions, and further components
    # mostly add noise to the neighbour search (pbmc3k: ACC 95.5 with 10 PCs, 94.5 with 18). Not capped: a
    # subtype of 25 cells among 20,000 adds little variance, so its direction ranks low (sim-27x83, K_F = 83:
    # ACC 83.8 with 50 PCs, 91.6 with 84).
    # "within": principal axes of the variation inside the coarse classes (pooled within-class covariance),
    # after the axes between the class means; neighbours are searched on the within-class axes.
    representation: Literal["genes", "pca", "within"] = "genes"
    n_pcs: int | None = None
    # Before PCA, z-score each gene and clip at ±max_value (scanpy's ``pp.scale``).
    standardize: bool = True
    max_value: float | None = 10.0
    n_sampled_neighbors: int = 5
    # Where the within-class neighbours are searched. "representation": in what the classifier sees (the genes,
    # or their PCs above). "class_pca": on the top ``class_pcs`` PCs of the features z-scored inside each coarse
    # class, so that the few genes that vary within a class are not drowned by those that tell classes apart
    # (sim-panel 77.5 / 71.0 → 91.2 / 87.0, 3 seeds, but a 33-gene check panel −4.0 / −7.0 and, with 2,000 genes,
    # sim-hard 77.9 → 69.8: a purer graph trained worse). "combined": the representation's PCs next to the
    # class's own ``class_pcs`` PCs, every column of equal weight on average (:func:`~.pca.combined_scores`): the
    # global PCs estimate the programmes shared across classes from all cells, the class's own see what varies
    # only inside it. "auto": "combined" on gene inputs (whole transcriptomes and panels) of at most
    # ``class_pcs_max_cells`` cells, "representation" on embeddings and larger inputs (DEFAULT below).
    neighbor_space: Literal["representation", "class_pca", "combined", "auto"] = "representation"
    class_pcs: int = 10
    # "auto" (neighbor_space, warm_start_clustering) keeps the representation's neighbours and k-means starts
    # above this many cells: each class's PCs cost an eigendecomposition of its gene covariance (39 s for 27
    # classes and 100,000 cells × 2,000 genes on 2 CPU cores), and on bench/scale.py's 100,000-cell simulation
    # they lost (ACC / ARI 99.2 / 99.5 → 98.0 / 98.1, total 68.5 → 100.1 s, same machine and day; 2026-12-02).
    class_pcs_max_cells: int | None = 50_000
    ema_decay: float = 0.99
    # Soft → hard targets (cosine) and the balance weight λ_M both act during this first part of training.
    soft_target_fraction: float = 0.3
    balance_weight: float = 0.005
    # M is re-solved every ``solve_every`` steps, and at least ``min_solves_per_epoch`` times per epoch.
    solve_every: int = 25
    min_solves_per_epoch: int = 1
    # M stays at its initial value for this fraction of training: a solve on the predictions of an untrained
    # classifier only reflects coarse class sizes and locks in arbitrary splits.
    first_solve_fraction: float = 0.0
    relationship_init: Literal["random", "proportional"] = "random"
    # How many fine classes each coarse class gets at the start (with relationship_init="proportional"):
    # "size" = in proportion to class sizes; "structure" = where splitting the class's cells into one more
    # cluster gains most over structure-free data of the same spread (see :mod:`.allocation`).
    allocation: Literal["size", "structure"] = "size"
    # Start from k-means inside each coarse class (with the initial M's counts): the classifier is first fitted
    # to that partition for ``warm_start_steps`` steps, and FALCON refines it.
    # "alternate": every second restart starts cold (random classifier, M from class sizes) and the restarts'
    # objective decides, so a poor k-means start cannot decide the result.
    # With several datasets the allocation and k-means use the first dataset's taxonomy (the other datasets'
    # cells take its nearest class) and the other datasets' M follow from where the k-means classes fall
    # (:func:`~.allocation.joint_start`).
    warm_start: Literal["none", "kmeans", "alternate"] = "none"
    # How a warm start partitions each coarse class: "kmeans" on the representation, or "spectral" clustering of
    # the within-class neighbour graph (:func:`~.allocation.spectral_within_classes`). Runs on several datasets
    # always use k-means (:func:`~.allocation.joint_start`).
    # "auto": "spectral" where neighbor_space "auto" takes "combined" (whole transcriptomes of at most
    # ``class_pcs_max_cells`` cells), else "kmeans" (DEFAULT below).
    warm_start_clustering: Literal["kmeans", "spectral", "auto"] = "kmeans"
    warm_start_steps: int = 300
    # Fine classes left with fewer than max(5, min_subtype_share · n) cells are re-seeded where a subtype
    # splits most clearly, and FALCON is run again from there (kept if its objective is lower), at most
    # ``reseed_rounds`` times.
    reseed_rounds: int = 0
    min_subtype_share: float = 0.001
    # Independent runs from different seeds; the one with the lowest final objective is kept. That objective
    # uses λ3 = ``restart_lambda_reg`` (None: ``lambda_reg``).
    n_restarts: int = 1
    restart_lambda_reg: float | None = None
    # Above this many cells a single run is made (None: no limit): with ``n_restarts`` > 1, restarts multiply
    # the cost, which on large inputs is minutes on a CPU.
    restart_max_cells: int | None = None
    # Within-class neighbours: classes larger than this are searched approximately (NN-descent) on the CPU,
    # with the recall measured on a sample; None = always exact. CUDA searches every class exactly.
    knn_exact_max_cells: int | None = None
    # On CUDA (one process), replay each training step as a captured CUDA graph: same computation, far less
    # launch overhead.
    cuda_graphs: bool = True
    # dtype of the classifier input kept on the device ("float16"/"bfloat16" halve its memory).
    storage_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    # On CUDA, run the networks' forward passes under bfloat16 autocast (losses stay float32). Pays off for
    # convolutional backbones; the small MLP is launch-bound and gains nothing.
    mixed_precision: bool = False
    # CPU threads of k-means and the training steps (PCA and neighbours take ``n_jobs``, see :mod:`.threads`).
    # More are faster alone but collapse when another process competes for the cores: 20k cells, 1,500 steps
    # of batch 1024 on 2 cores trained in 16 s with 2 threads and 25.5 s with 1 alone, but in 230 s with 2
    # threads and 21 s with 1 when two runs shared the cores.
    training_threads: int = 1
    # Coarse-label check after training (see :mod:`.label_check`): each cell's coarse mass averaged over this
    # many nearest cells of any coarse class (0 = no check).
    coarse_check_neighbors: int = 15
    # Null draws of the test of each subtype's split against a structure-free Gaussian (see :mod:`.support`);
    # 0 = no test.
    support_null_draws: int = 19
    # Divergence guard: on a non-finite loss, restore the last good state and halve the learning rate.
    max_recoveries: int = 3
    solver_time_limit: float = 60.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = _checked(field.name, getattr(self, field.name), _field_types()[field.name])
            object.__setattr__(self, field.name, value)  # ints given for floats become floats, lists tuples
        if self.n_sampled_neighbors > self.n_neighbors:
            raise ValueError(
                f"n_sampled_neighbors={self.n_sampled_neighbors} exceeds n_neighbors={self.n_neighbors}: the "
                "neighbours sampled per step are drawn from the n_neighbors found. Lower it or raise n_neighbors."
            )

    def min_subtype_cells(self, n_cells: int) -> int:
        """Fewest cells a subtype of a run on ``n_cells`` cells may hold before it counts as (nearly) empty:
        ``max(5, ⌈min_subtype_share · n_cells⌉)``."""
        return max(5, int(np.ceil(self.min_subtype_share * n_cells)))

    def resolved_neighbor_space(self, n_features: int | None, n_cells: int) -> str:
        """The neighbour space for ``n_cells`` cells of ``n_features`` genes (None: an embedding)."""
        if self.neighbor_space != "auto":
            return self.neighbor_space
        return "combined" if n_features is not None and self._class_pcs_affordable(n_cells) else "representation"

    def resolved_warm_start_clustering(self, n_features: int | None, n_cells: int) -> str:
        """How warm starts partition each class, for ``n_cells`` cells of ``n_features`` genes (None: an
        embedding): spectral clustering of the neighbour graph on whole transcriptomes of at most
        ``class_pcs_max_cells`` cells, k-means otherwise."""
        if self.warm_start_clustering != "auto":
            return self.warm_start_clustering
        return "spectral" if is_whole_transcriptome(n_features) and self._class_pcs_affordable(n_cells) else "kmeans"

    def reads_genes_through_pcs(self, n_features: int, n_cells: int) -> bool:
        """Whether a run on ``n_cells`` cells of ``n_features`` genes uses the gene matrix only through its global
        PCs (``representation="pca"``, neighbours not on class PCs): then it can be read in row blocks."""
        space = self.resolved_neighbor_space(n_features, n_cells)
        return self.representation == "pca" and space not in ("class_pca", "combined")

    def _class_pcs_affordable(self, n_cells: int) -> bool:
        """Whether "auto" takes the class PCs (and, on whole transcriptomes, spectral starts) for ``n_cells``."""
        return self.class_pcs_max_cells is None or n_cells <= self.class_pcs_max_cells

    def resolved_neighbor_metric(self, n_features: int | None) -> str:
        """The neighbour metric for an input of ``n_features`` genes (None: an embedding, never a panel)."""
        if self.neighbor_metric != "auto":
            return self.neighbor_metric
        return "euclidean" if is_whole_transcriptome(n_features) else "cosine"

    def resolved_neighbor_offset_axis(self, n_features: int | None) -> bool:
        """Whether cosine searches put each class's offset on an axis of its own, for an input of ``n_features``
        genes (None: an embedding)."""
        if self.neighbor_offset_axis != "auto":
            return self.neighbor_offset_axis
        return n_features is not None

    def replace(self, **changes: Any) -> FalconConfig:
        """A copy with ``changes`` applied; unknown names raise a :class:`TypeError` listing valid ones."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(self))
            raise TypeError(f"Unknown FALCON option(s) {sorted(unknown)}; valid options are: {valid}.")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The values each numeric option may take: (lower, upper, whether each bound is allowed); None = unbounded.
_NON_NEGATIVE = (0, None, True, True)
_AT_LEAST_ONE = (1, None, True, True)
_POSITIVE = (0, None, False, True)
_FRACTION = (0, 1, True, True)
_FRACTION_BELOW_ONE = (0, 1, True, False)
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "n_layers": _NON_NEGATIVE,
    "hidden_dim": _AT_LEAST_ONE,
    "epochs": _AT_LEAST_ONE,
    "batch_size": _AT_LEAST_ONE,
    "lr": _POSITIVE,
    "momentum": _FRACTION_BELOW_ONE,
    "weight_decay": _NON_NEGATIVE,
    "lr_milestones": (0, 1, False, False),
    "lr_gamma": _POSITIVE,
    "grad_clip": _POSITIVE,
    "min_steps_per_epoch": _AT_LEAST_ONE,
    "min_total_steps": _NON_NEGATIVE,
    "max_total_steps": _AT_LEAST_ONE,
    "lambda_coarse": _NON_NEGATIVE,
    "lambda_consistency": _NON_NEGATIVE,
    "lambda_reg": _NON_NEGATIVE,
    "lambda_reg_hard": _NON_NEGATIVE,
    "temperature": _POSITIVE,
    "confidence_threshold": _FRACTION_BELOW_ONE,
    "n_neighbors": _AT_LEAST_ONE,
    "neighbor_share": _POSITIVE,
    "coarse_check_neighbors": _NON_NEGATIVE,
    "support_null_draws": _NON_NEGATIVE,
    "n_pcs": _AT_LEAST_ONE,
    "max_value": _POSITIVE,
    "n_sampled_neighbors": _AT_LEAST_ONE,
    "class_pcs": _AT_LEAST_ONE,
    "ema_decay": _FRACTION,
    "soft_target_fraction": _FRACTION,
    "balance_weight": _NON_NEGATIVE,
    "solve_every": _AT_LEAST_ONE,
    "min_solves_per_epoch": _NON_NEGATIVE,
    "first_solve_fraction": _FRACTION_BELOW_ONE,
    "warm_start_steps": _NON_NEGATIVE,
    "reseed_rounds": _NON_NEGATIVE,
    "min_subtype_share": _FRACTION_BELOW_ONE,
    "n_restarts": _AT_LEAST_ONE,
    "restart_lambda_reg": _NON_NEGATIVE,
    "restart_max_cells": _AT_LEAST_ONE,
    "knn_exact_max_cells": _AT_LEAST_ONE,
    "max_recoveries": _NON_NEGATIVE,
    "training_threads": _AT_LEAST_ONE,
    "solver_time_limit": _POSITIVE,
}


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(FalconConfig)


def _checked(name: str, value: Any, kind: Any) -> Any:
    """``value`` as option ``name`` of type ``kind`` takes it, or a ValueError naming the option, what it
    expects and what it got (every option is checked when a config is built, before any work)."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) is Literal:
        if value not in args:
            raise ValueError(f"Option {name}={value!r} is not valid; choose one of {', '.join(map(repr, args))}.")
        return value
    if Literal["auto"] in args:  # bool | "auto"
        if value != "auto" and not isinstance(value, bool):
            raise ValueError(f"Option {name} expects True, False or 'auto'; got {value!r}.")
        return value
    if type(None) in args:  # X | None
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, tuple | list) or isinstance(value, str):
            raise ValueError(f"Option {name} expects a tuple of numbers, e.g. (0.6, 0.8); got {value!r}.")
        return tuple(_checked(name, v, args[0] if args else float) for v in value)
    expected = {bool: "True or False", int: "an integer", float: "a number"}[kind]
    numeric_ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = isinstance(value, bool) if kind is bool else numeric_ok and (kind is float or float(value).is_integer())
    if not ok or (kind is not bool and not np.isfinite(value)):
        raise ValueError(f"Option {name} expects {expected}; got {value!r}.")
    if kind is bool:
        return value
    value = kind(value)
    low, high, low_in, high_in = _RANGES.get(name, (None, None, True, True))
    below = low is not None and (value < low or (value == low and not low_in))
    above = high is not None and (value > high or (value == high and not high_in))
    if below or above:
        lower = f"{'[' if low_in else '('}{low if low is not None else '-inf'}"
        upper = f"{high if high is not None else 'inf'}{']' if high_in else ')'}"
        interval = f"{lower}, {upper}"
        raise ValueError(f"Option {name}={value!r} is out of range; it must lie in {interval}.")
    return value


#: The published single-cell recipe (paper, Table/appendix configuration), unchanged.
PAPER = FalconConfig()

#: Our defaults. Each change was measured against PAPER on real data first (docs/notes.md has every try with its
#: numbers and command; bench/accuracy.py the tables). ACC / ARI are 3-seed means on the 2-core CPU.
#: - a step budget (≥ 8 steps per epoch, ≥ 300 steps) with an EMA teacher of decay 0.95: 10 epochs of 2,638 cells
#:   are only 20–30 steps. Neighbour consistency spreads labels through the graph at the pace of the teacher
#:   (time constant 1 / (1 − decay) steps), so the floor is 15 teacher time constants; above ~31,000 cells the
#:   paper's 10 epochs are longer and apply. 1,500 steps at decay 0.99 (the previous default) gave the same
#:   results on every real dataset (pbmc3k 96.9 / 91.9 → 97.0 / 92.2; its panels, Zeisel, pbmc68k within 0.5)
#:   at a fifth of the training time; 400 steps at 0.99 lost (pbmc3k 94.3 / 85.0);
#: - classifier and neighbour search on the top PCs of z-scored genes (K_F + 1 of them, at least 10): kNN
#:   purity 73 % (genes) → 95 % on pbmc3k, and much faster steps;
#: - L_conf only on cells the teacher is confident about (> 0.9): otherwise the first hard targets send every
#:   cell of a coarse class to the same fine class and training never leaves that collapse;
#: - the marginal prior follows M (each coarse class split evenly over its fine classes): the uniform prior
#:   asks a 14-cell class to fill 1/K_F of the cells;
#: - L_reg as KL(prior ‖ p̄) with λ3 = 1 in the soft phase, then 0.2: the paper's KL(p̄ ‖ prior) lets fine
#:   classes empty (two true subtypes then share one class), while a strong prior kept to the end moves
#:   boundaries between unequal subtypes (pbmc3k: 480 CD14 vs 162 FCGR3A monocytes) towards equal sizes;
#: - M starts from the structure allocation (each fine class to the coarse class whose cells gain most from
#:   one more k-means cluster over a structure-free null) and is first re-solved after the soft phase: solves
#:   on an untrained classifier's predictions only reflect class sizes and lock in arbitrary splits, and M
#:   rarely moves later, so where it starts is where subtypes are looked for (sim-8x20: the true tree, where
#:   the size split was 4 edits off);
#: - a warm start from a partition of each coarse class under that M (k-means; spectral clustering of the
#:   neighbour graph on whole transcriptomes), and one run. Restarts (``n_restarts``, compared on the objective
#:   with λ3 = ``restart_lambda_reg``) paid nothing on real data and the cold ones collapsed: Zeisel kept a cold
#:   restart with 10 of 47 subtypes populated (ACC / ARI / macro 40.0 / 41.9 / 16.2) where the warm run alone
#:   populates 42 (42.6 / 34.7 / 29.6); pbmc3k and its panels gave the same labels at a third of the time;
#: - gradient clipping at norm 5 (one paper-preset seed diverged at lr 0.1);
#: - approximate kNN on the CPU for classes above 100,000 cells (exact search there costs about a minute per
#:   class on 2 cores; NN-descent a few seconds after a one-off ~45 s compilation).
#: - within-class neighbours by Euclidean distance on whole-transcriptome inputs (``neighbor_metric="auto"``):
#:   cosine similarity cannot see where a cell lies along its coarse class's offset from the global centre.
#:   3 seeds, ACC / ARI: pbmc3k 95.2 / 87.7 → 96.6 / 90.8. Panels keep cosine (−1.9 / −2.5 over 18 simulated
#:   runs with 33 to 300 genes), embeddings too (−0.3 / −0.2 over 5; bench/neighbor_metric.py).
#: - within-class neighbours searched on the global PCs next to the class's own 10 PCs (``neighbor_space="auto"``
#:   → "combined", :func:`~.pca.combined_scores`) for gene inputs of at most 50,000 cells
#:   (``class_pcs_max_cells``), and on whole transcriptomes warm starts from spectral clustering of that graph
#:   (``warm_start_clustering="auto"``). Whole transcriptomes (Euclidean): pbmc3k 96.6 / 90.8 → 96.9 / 91.9.
#:   Panels (cosine): Zeisel 42.1 / 34.6 → 43.0 / 33.5, macro ACC 29.2 → 33.8, populated subtypes 39 → 43 of 47;
#:   pbmc3k as 40-, 100- and 300-gene panels +0.0 / +0.5, −0.7 / −1.0, −0.5 / −0.1; calibrated check panels
#:   (2 seeds) 33 genes +2.2 / +1.4, 100 genes +1.0 / +0.4, 300 genes −3.1 / −1.6. Spectral starts stay off
#:   panels (−3 to −7 on the pbmc3k panels).
#: - under cosine similarity, each class's offset from the global centre on an axis of its own
#:   (``neighbor_offset_axis``; 3 seeds, ACC / ARI): Zeisel 43.0 / 33.5 → 44.6 / 39.6; pbmc3k as 40-, 100- and
#:   300-gene panels −1.0 / −0.9, +0.2 / +0.2, −0.1 / −0.6. Off for embeddings, where it split: +0.2 to +6.6 on
#:   PCs of z-scored genes, −0.5 / −1.1 (pbmc3k), −0.5 / −0.5 (pbmc68k's stored PCs) and −4.5 / −8.3 (Zeisel) on
#:   PCs of unscaled log data.
#: - fewer neighbours in a coarse class of small subtypes (``neighbor_share``: at most 0.35 of its cells per fine
#:   class, at least ``n_sampled_neighbors``; 3 seeds): Zeisel ACC / ARI 44.6 / 39.6 → 45.2 / 39.7, macro ACC
#:   34.5 → 36.0, populated subtypes 43.0 → 44.0 of 47 (seeds 3–5: macro 32.6 → 35.5); pbmc3k and its panels
#:   unchanged (no class there has small subtypes), pbmc68k 76.2 / 74.5 → 76.3 / 74.5. Shares 0.25 and 0.5 gave
#:   Zeisel macro 36.4 and 35.1; 0.75 changed nothing there.
DEFAULT = PAPER.replace(
    min_steps_per_epoch=8,
    min_total_steps=300,
    ema_decay=0.95,
    min_solves_per_epoch=2,
    representation="pca",
    confidence_threshold=0.9,
    prior="relationship",
    lambda_reg=1.0,
    marginal_divergence="reverse",
    lambda_reg_hard=0.2,
    relationship_init="proportional",
    allocation="structure",
    warm_start="kmeans",
    first_solve_fraction=0.3,
    grad_clip=5.0,
    lambda_consistency=1.0,
    restart_lambda_reg=0.5,
    restart_max_cells=50_000,
    knn_exact_max_cells=100_000,
    neighbor_metric="auto",
    neighbor_offset_axis="auto",
    neighbor_share=0.35,
    neighbor_space="auto",
    warm_start_clustering="auto",
)

PRESETS: dict[str, FalconConfig] = {"paper": PAPER, "default": DEFAULT}


def get_config(preset: str | FalconConfig = "default", **overrides: Any) -> FalconConfig:
    """Resolve a preset name (``"default"`` or ``"paper"``) or a config, then apply ``overrides``."""
    if isinstance(preset, FalconConfig):
        base = preset
    elif preset in PRESETS:
        base = PRESETS[preset]
    else:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)} or pass a FalconConfig.")
    return base.replace(**overrides) if overrides else base
