"""FALCON's engine on plain arrays and tensors: no AnnData here.

Modules: ``allocation`` (where training starts: fine classes per coarse class, k-means warm start),
``relationship`` (exact M-step with HiGHS), ``losses`` (the objective's terms), ``neighbors``
(within-class kNN), ``estimate`` (K_F from the data), ``model`` (MLP and EMA teacher), ``schedule`` (steps,
phases), ``trainer`` (the alternating optimisation), ``pipeline`` (neighbours + training in one call),
``config`` (hyperparameters and presets).
"""

from .allocation import kmeans_within_classes, structure_allocation
from .config import DEFAULT, PAPER, PRESETS, FalconConfig, get_config
from .estimate import FineCountEstimate, estimate_n_fine
from .neighbors import NeighborGraph, within_group_neighbors
from .pipeline import run_falcon
from .relationship import relationship_objective, solve_relationship, solve_relationships
from .schedule import Schedule
from .trainer import FalconResult, fixed_relationship, proportional_relationship, train_falcon

__all__ = [
    "DEFAULT",
    "PAPER",
    "PRESETS",
    "FalconConfig",
    "FalconResult",
    "FineCountEstimate",
    "NeighborGraph",
    "Schedule",
    "estimate_n_fine",
    "fixed_relationship",
    "get_config",
    "kmeans_within_classes",
    "proportional_relationship",
    "relationship_objective",
    "run_falcon",
    "solve_relationship",
    "solve_relationships",
    "structure_allocation",
    "train_falcon",
    "within_group_neighbors",
]
