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
    # Fewer neighbours in a class of small subtypes: at most this share of its cells per fine class (at least
    # ``n_sampled_neighbors``), so that a ~20-cell subtype is not merged by its neighbours. None: ``n_neighbors``.
    neighbor_share: float | None = None
    # How within-class neighbours are ranked: cosine similarity (paper) or Euclidean distance, which also sees how
    # far a cell lies along its class's offset from the global centre. "auto": see :meth:`resolved`.
    neighbor_metric: Literal["cosine", "euclidean", "auto"] = "cosine"
    # Under cosine similarity, a class's offset from the global centre on an axis of its own (``offset_axis`` of
    # :func:`~.neighbors.within_group_neighbors`): in place it hides the variation along it. "auto": :meth:`resolved`.
    neighbor_offset_axis: bool | Literal["auto"] = False
    # What the classifier sees and where neighbours are searched: the genes (paper) or their top ``n_pcs``
    # principal components. None: ``max(10, K_F + 1)``, as K_F classes differ along at most K_F − 1 directions.
    representation: Literal["genes", "pca"] = "genes"
    n_pcs: int | None = None
    # Before PCA, z-score each gene and clip at ±max_value (scanpy's ``pp.scale``).
    standardize: bool = True
    max_value: float | None = 10.0
    n_sampled_neighbors: int = 5
    # Where within-class neighbours are searched: in what the classifier sees ("representation"), on the top
    # ``class_pcs`` PCs computed inside each class ("class_pca"), or both side by side ("combined",
    # :func:`~.pca.combined_scores`: the global PCs see programmes shared across classes, a class's own what varies
    # only inside it). "auto": see :meth:`resolved`.
    neighbor_space: Literal["representation", "class_pca", "combined", "auto"] = "representation"
    class_pcs: int = 10
    # Above this many cells "auto" skips the class PCs and spectral starts: they cost an eigendecomposition per
    # class and lost on a 100,000-cell simulation (docs/notes.md, "Neighbours").
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
    # Fine classes per coarse class at the start (relationship_init="proportional"): in proportion to class size,
    # or where one more k-means cluster gains most over structure-free data (:mod:`.allocation`).
    allocation: Literal["size", "structure"] = "size"
    # Fit the classifier first to a partition of each coarse class under the initial M (``warm_start_steps``
    # steps); "alternate" starts every second restart cold. Several datasets: :func:`~.allocation.joint_start`.
    warm_start: Literal["none", "kmeans", "alternate"] = "none"
    # How a warm start partitions each class: k-means on the representation or spectral clustering of the
    # neighbour graph (several datasets: always k-means). "auto": see :meth:`resolved`.
    warm_start_clustering: Literal["kmeans", "spectral", "auto"] = "kmeans"
    warm_start_steps: int = 300
    # Independent runs from different seeds; the one with the lowest final objective (at the paper's λ3, see
    # :mod:`.objective`) is kept.
    n_restarts: int = 1
    # Within-class neighbours: classes larger than this are searched approximately (NN-descent) on the CPU,
    # with the recall measured on a sample; None = always exact. CUDA searches every class exactly.
    knn_exact_max_cells: int | None = None
    # On CUDA (one process), replay each training step as a captured CUDA graph: less launch overhead.
    cuda_graphs: bool = True
    # dtype of the classifier input kept on the device ("float16"/"bfloat16" halve its memory).
    storage_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    # On CUDA, forward passes under bfloat16 autocast (losses stay float32): for convolutional backbones.
    mixed_precision: bool = False
    # CPU threads of k-means and the training steps (PCA and neighbours take ``n_jobs``): more are faster alone
    # but collapse tenfold when another process competes for the cores (docs/notes.md, "Speed").
    training_threads: int = 1
    # Coarse-label check (:mod:`.label_check`): neighbours of any class a cell's coarse mass is averaged over (0: none).
    coarse_check_neighbors: int = 15
    # Null draws of each subtype's split test (:mod:`.support`); 0 = no test.
    support_null_draws: int = 19
    # Seconds the exact M-step solver may take before it stops with an error.
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

    def resolved(self, *, n_genes: int | None, n_cells: int) -> FalconConfig:
        """This config with every ``"auto"`` decided for an input of ``n_cells`` cells and ``n_genes`` genes
        (``None``: an embedding, ``use_rep`` or image features, never a panel). Each entry point calls it once; the
        engine refuses a config that still says ``"auto"``.

        - ``neighbor_space``: ``"combined"`` on gene inputs of at most ``class_pcs_max_cells`` cells, else
          ``"representation"``;
        - ``warm_start_clustering``: ``"spectral"`` on whole transcriptomes of at most ``class_pcs_max_cells`` cells,
          else ``"kmeans"``;
        - ``neighbor_metric``: ``"euclidean"`` on whole transcriptomes, ``"cosine"`` on panels and embeddings;
        - ``neighbor_offset_axis``: on for gene inputs, off for embeddings.
        """
        affordable = self.class_pcs_max_cells is None or n_cells <= self.class_pcs_max_cells
        genes, whole = n_genes is not None, is_whole_transcriptome(n_genes)
        decided = {
            "neighbor_space": "combined" if genes and affordable else "representation",
            "warm_start_clustering": "spectral" if whole and affordable else "kmeans",
            "neighbor_metric": "euclidean" if whole else "cosine",
            "neighbor_offset_axis": genes,
        }
        return self.replace(**{name: value for name, value in decided.items() if getattr(self, name) == "auto"})

    def unresolved(self) -> list[str]:
        """The options that still say ``"auto"`` (see :meth:`resolved`)."""
        return [
            f.name
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), str) and getattr(self, f.name) == "auto"
        ]

    def reads_genes_through_pcs(self) -> bool:
        """Whether a run uses the gene matrix only through its global PCs (``representation="pca"``, neighbours not
        on class PCs), so that it can be read in row blocks. For a resolved config."""
        return self.representation == "pca" and self.neighbor_space not in ("class_pca", "combined")

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
    "n_restarts": _AT_LEAST_ONE,
    "knn_exact_max_cells": _AT_LEAST_ONE,
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

#: Our defaults: the same method with what measurements on real cells showed to matter. docs/presets.md lists each
#: change from PAPER and why; docs/notes.md has every measurement with its command.
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
