"""Exact k-nearest neighbours by cosine similarity, searched only among cells of the same group."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class NeighborGraph:
    """Within-group neighbours of every cell.

    Attributes
    ----------
    indices
        ``(n, k)`` int64 array; row ``i`` holds the neighbours of cell ``i`` ordered by decreasing similarity.
        Only the first ``n_valid[i]`` entries are meaningful; the rest repeat them.
    n_valid
        ``(n,)`` int64 array: ``min(k, size of the cell's group − 1)``, or 1 for a cell alone in its group,
        which is then its own neighbour.
    """

    indices: np.ndarray
    n_valid: np.ndarray


def within_group_neighbors(
    data: np.ndarray | torch.Tensor,
    groups: np.ndarray,
    n_neighbors: int = 20,
    *,
    device: str | torch.device = "cpu",
    chunk_size: int = 4096,
) -> NeighborGraph:
    """Find each cell's ``n_neighbors`` most cosine-similar cells within its own group.

    Groups with ``n_neighbors`` cells or fewer use all other cells of the group; a one-cell group is its own
    neighbour. Similarities are computed exactly, in chunks of ``chunk_size`` query cells.
    """
    if n_neighbors < 1:
        raise ValueError(f"n_neighbors must be ≥ 1, got {n_neighbors}.")
    groups = np.asarray(groups)
    n_cells = groups.shape[0]
    indices = np.empty((n_cells, n_neighbors), dtype=np.int64)
    n_valid = np.empty(n_cells, dtype=np.int64)
    data = torch.as_tensor(data)
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        size = members.size
        if size == 1:
            indices[members] = members[0]
            n_valid[members] = 1
            continue
        k = min(n_neighbors, size - 1)
        unit = F.normalize(data[torch.as_tensor(members)].to(device=device, dtype=torch.float32), dim=1)
        for start in range(0, size, chunk_size):
            stop = min(start + chunk_size, size)
            sim = unit[start:stop] @ unit.T
            sim[torch.arange(stop - start), torch.arange(start, stop)] = float("-inf")  # exclude self
            top = sim.topk(k, dim=1).indices.cpu().numpy()
            # Pad short rows by cycling through the valid neighbours so the array stays rectangular.
            local = top[:, np.arange(n_neighbors) % k]
            indices[members[start:stop]] = members[local]
        n_valid[members] = k
    return NeighborGraph(indices=indices, n_valid=n_valid)
