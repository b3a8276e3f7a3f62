"""FALCON's engine on plain arrays and tensors: no AnnData here.

Modules: ``allocation`` (where training starts: fine classes per coarse class, k-means warm start),
``initial_relationship`` (the M training starts from), ``relationship`` (exact M solver with HiGHS),
``m_step`` (M re-solved from the accumulated predictions), ``losses`` (the objective's terms), ``objective``
(their weighted sum on a batch and on all cells), ``neighbors`` (within-class kNN), ``estimate`` (K_F from the
data), ``model`` (MLP and EMA teacher), ``schedule`` (steps, phases), ``cuda_graph`` (a step replayed as a
CUDA graph), ``training_state`` (divergence guard, progress, checkpoint and resume), ``trainer`` (the
alternating optimisation), ``pipeline`` (neighbours + training in one call), ``threads`` (CPU threads per
stage), ``config`` (hyperparameters and presets).
"""

from .allocation import kmeans_within_classes, structure_allocation
from .config import DEFAULT, PAPER, PRESETS, FalconConfig, get_config
from .estimate import FineCountEstimate, estimate_n_fine
from .initial_relationship import fixed_relationship, proportional_relationship
from .neighbors import NeighborGraph, within_group_neighbors
from .pipeline import run_falcon
from .relationship import relationship_objective, solve_relationship, solve_relationships
from .schedule import Schedule
from .trainer import FalconResult, train_falcon

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
