"""Coarse labels checked against the data: where a cell's neighbours put the classifier's mass.

The classifier is trained on every cell's coarse label, so a mislabelled cell's own prediction follows its
wrong label (5 % flipped labels on simulated data: 9 % of them found at agreement < 0.5). Its neighbours in the
representation, searched over all coarse classes, are mostly cells of its true class; their predictions,
summed through M into coarse classes and averaged, say where the cell belongs (same data: all found, none
wrongly, at < 0.5). Neighbours are taken from a random reference sample of at most ``_MAX_REFERENCE`` cells
per dataset, which bounds the search at n × 20,000 similarities (100k cells on 2 CPU cores: 4 s on 2026-11-30,
10.9 s on 2026-12-02, a day that machine ran everything about twice as slowly).
"""

from __future__ import annotations

import numpy as np
import torch

_MAX_REFERENCE = 20_000
_CHUNK = 1024  # query cells per block: a 1,024 × 20,000 similarity block is 82 MB


def neighbor_coarse_mass(
    scores: torch.Tensor | np.ndarray,
    probs: np.ndarray,
    relationship: np.ndarray,
    dataset_of_cell: np.ndarray,
    n_neighbors: int,
    random_state: int = 0,
) -> np.ndarray:
    """``(n, K_C)``: for each cell, the mean over its ``n_neighbors`` most cosine-similar reference cells of
    its dataset (itself excluded) of their fine probabilities summed into coarse classes through
    ``relationship``."""
    scores = torch.as_tensor(scores).float()
    unit = torch.nn.functional.normalize(scores, dim=1)
    coarse_probs = torch.as_tensor(probs @ relationship.astype(probs.dtype), device=unit.device)
    rng = np.random.default_rng(random_state)
    mass = torch.zeros(coarse_probs.shape, device=unit.device)
    for dataset in np.unique(dataset_of_cell):
        cells = np.flatnonzero(dataset_of_cell == dataset)
        reference = np.sort(rng.choice(cells, min(cells.size, _MAX_REFERENCE), replace=False))
        ref = torch.as_tensor(reference, device=unit.device)
        k = min(n_neighbors, reference.size - 1)
        if k < 1:  # a one-cell dataset: its own prediction is all there is
            mass[ref] = coarse_probs[ref]
            continue
        reference_unit = unit[ref]
        for start in range(0, cells.size, _CHUNK):
            query = torch.as_tensor(cells[start : start + _CHUNK], device=unit.device)
            similarity = unit[query] @ reference_unit.T
            # a cell is not its own neighbour: found by searching the sorted reference (a query × reference
            # comparison took a third as long as the similarities, 100k cells on 2 cores)
            column = torch.searchsorted(ref, query).clamp_(max=ref.numel() - 1)
            own = ref[column] == query
            similarity[own, column[own]] = -torch.inf
            nearest = ref[similarity.topk(k, dim=1).indices]
            mass[query] = coarse_probs[nearest].mean(1)
    return mass.cpu().numpy().astype(np.float32)
