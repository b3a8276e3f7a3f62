"""k-nearest neighbours by cosine similarity or Euclidean distance, searched only among cells of the same group.

Groups are searched exactly (chunked matrix products + top-k) unless they exceed ``exact_max_group`` cells;
those use NN-descent (pynndescent) and their recall is measured against exact search on a sample of cells.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import FalconConfig

logger = logging.getLogger(__name__)

#: The neighbour metrics: cosine similarity of the rows, or Euclidean distance between them.
METRICS = ("cosine", "euclidean")

# Similarity blocks are chunk × group size; this many float32 entries (256 MiB) per block bounds memory.
_BLOCK_ELEMENTS = 1 << 26


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
    n_approximate_groups
        How many groups were searched approximately (NN-descent) rather than exactly.
    recall
        Mean fraction of the exact k neighbours that the approximate search found, over a sample of cells
        of the approximately searched groups; ``None`` when every group was searched exactly.
    """

    indices: np.ndarray
    n_valid: np.ndarray
    n_approximate_groups: int = 0
    recall: float | None = None


def within_group_neighbors(
    data: np.ndarray | torch.Tensor,
    groups: np.ndarray,
    n_neighbors: int = 20,
    *,
    metric: str = "cosine",
    device: str | torch.device = "cpu",
    chunk_size: int = 4096,
    exact_max_group: int | None = None,
    recall_sample: int = 200,
    random_state: int = 0,
    offset_axis: bool = False,
) -> NeighborGraph:
    """Find each cell's ``n_neighbors`` nearest cells within its own group: the most cosine-similar
    (``metric="cosine"``) or the nearest in Euclidean distance (``"euclidean"``).

    With ``offset_axis`` (cosine only), the angle is taken between a group's rows centred on the group, each with
    the length of the group's mean as one more coordinate. A group lies off the global centre by its mean m; in
    the rows as they are, m hides the variation along its own direction from the angle, and a group lying near
    the centre (‖m‖ small against its spread) is cut by it, cells on either side of the centre looking opposite.
    On an axis of its own, m still keeps cells with little signal of their own near each other and hides no
    direction (Zeisel's brain cells, 3 seeds: ACC / ARI 43.0 / 33.5 → 44.6 / 39.6; docs/notes.md,
    "Neighbours"). Euclidean distances do not change under the shift, so it is ignored for them.

    Groups with ``n_neighbors`` cells or fewer use all other cells of the group; a one-cell group is its own
    neighbour. Groups of at most ``exact_max_group`` cells (all groups when ``None``) are searched exactly on
    ``device``, ``chunk_size`` query cells at a time (fewer for very large groups, to bound memory). Larger
    groups use NN-descent on the CPU; for them, ``recall_sample`` cells per group are also searched exactly and
    the mean recall is logged and returned.
    """
    if n_neighbors < 1:
        raise ValueError(f"n_neighbors must be ≥ 1, got {n_neighbors}.")
    if metric not in METRICS:
        raise ValueError(f"Unknown neighbour metric {metric!r}; use one of {list(METRICS)}.")
    groups = np.asarray(groups)
    n_cells = groups.shape[0]
    indices = np.empty((n_cells, n_neighbors), dtype=np.int64)
    n_valid = np.empty(n_cells, dtype=np.int64)
    data = torch.as_tensor(data)
    rng = np.random.default_rng(random_state)
    recalls = []
    n_approximate = 0
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        size = members.size
        if size == 1:
            indices[members] = members[0]
            n_valid[members] = 1
            continue
        k = min(n_neighbors, size - 1)
        points = data[torch.as_tensor(members)].to(device=device, dtype=torch.float32)
        if metric == "cosine" and offset_axis:  # (points is the group's own copy: centred in place)
            centre = points.mean(0)
            points = F.pad(points.sub_(centre), (0, 1), value=float(centre.norm()))
        if metric == "cosine":
            points = F.normalize(points, dim=1)
        if exact_max_group is None or size <= exact_max_group:
            local = _exact_topk(points, np.arange(size), k, chunk_size, metric)
        else:
            n_approximate += 1
            local = _approximate_topk(points.cpu().numpy(), k, random_state)
            sample = rng.choice(size, min(recall_sample, size), replace=False)
            exact = _exact_topk(points, sample, k, chunk_size, metric)
            recalls.append(np.mean([np.intersect1d(a, b).size / k for a, b in zip(local[sample], exact, strict=True)]))
        # Pad short rows by cycling through the valid neighbours so the array stays rectangular.
        indices[members] = members[local[:, np.arange(n_neighbors) % k]]
        n_valid[members] = k
    recall = float(np.mean(recalls)) if recalls else None
    if recall is not None:
        logger.info("approximate kNN in %d group(s): recall %.3f against exact search", n_approximate, recall)
    return NeighborGraph(indices=indices, n_valid=n_valid, n_approximate_groups=n_approximate, recall=recall)


def training_neighbors(
    search: np.ndarray | torch.Tensor,
    groups: np.ndarray,
    config: FalconConfig,
    fine_per_group: np.ndarray,
    *,
    device: str | torch.device = "cpu",
    exact_max_group: int | None = None,
    random_state: int = 0,
) -> NeighborGraph:
    """The within-group neighbours FALCON trains with: ``config.n_neighbors`` by the config's metric and offset
    axis (:func:`~falcon_sc.core.within_group_neighbors`), fewer in groups of small subtypes when
    ``config.neighbor_share`` is set (``subtype_neighbor_counts``, ``fine_per_group`` being the fine classes each
    group starts with). The
    single-cell engine and the image backend both search this way; ``config`` must be resolved."""
    graph = within_group_neighbors(
        search,
        groups,
        config.n_neighbors,
        metric=config.neighbor_metric,
        offset_axis=config.neighbor_offset_axis,
        device=device,
        exact_max_group=exact_max_group,
        random_state=random_state,
    )
    if config.neighbor_share is None:
        return graph
    sizes = np.bincount(groups, minlength=len(fine_per_group))
    counts = subtype_neighbor_counts(
        sizes, fine_per_group, config.n_neighbors, config.neighbor_share, config.n_sampled_neighbors
    )
    logger.info("neighbours per cell in each coarse class: %s", counts.tolist())
    return fewer_neighbors(graph, groups, counts)


def subtype_neighbor_counts(
    sizes: np.ndarray, fine_per_group: np.ndarray, n_neighbors: int, share: float, minimum: int
) -> np.ndarray:
    """Neighbours per cell in each group: ``share`` of the group's cells per fine class (rounded), between
    ``minimum`` and ``n_neighbors``; a group with one fine class keeps ``n_neighbors``.

    With more neighbours than a subtype has cells, most of a cell's neighbours lie outside its subtype and the
    neighbour loss merges the subtype into the next one; a group with one fine class has nothing to merge.
    """
    sizes, fine_per_group = np.asarray(sizes), np.asarray(fine_per_group)
    counts = np.clip(np.rint(share * sizes / np.maximum(fine_per_group, 1)), minimum, n_neighbors).astype(np.int64)
    return np.where(fine_per_group > 1, counts, n_neighbors)


def fewer_neighbors(graph: NeighborGraph, groups: np.ndarray, counts: np.ndarray) -> NeighborGraph:
    """``graph`` with each cell of group ``g`` keeping its ``counts[g]`` nearest neighbours (at most the
    neighbours it has): the same as searching that group for ``counts[g]`` neighbours."""
    keep = np.minimum(np.asarray(counts)[groups], graph.n_valid)
    if np.array_equal(keep, graph.n_valid):
        return graph
    # rows stay rectangular by cycling through the kept neighbours, as the search pads short rows
    columns = np.arange(graph.indices.shape[1])[None, :] % keep[:, None]
    return dataclasses.replace(graph, indices=np.take_along_axis(graph.indices, columns, axis=1), n_valid=keep)


def _exact_topk(points: torch.Tensor, queries: np.ndarray, k: int, chunk_size: int, metric: str) -> np.ndarray:
    """Indices (into ``points``) of the ``k`` nearest rows to each query row, excluding itself. For
    ``"cosine"`` the rows are unit vectors and nearest means most similar."""
    chunk = max(1, min(chunk_size, _BLOCK_ELEMENTS // points.shape[0]))
    # −‖x − y‖² up to the query's own ‖x‖², which does not change its ranking: 2 x·y − ‖y‖²
    squared_norms = (points**2).sum(1) if metric == "euclidean" else None
    out = np.empty((queries.size, k), dtype=np.int64)
    for start in range(0, queries.size, chunk):
        rows = torch.as_tensor(queries[start : start + chunk], device=points.device)
        sim = points[rows] @ points.T
        if squared_norms is not None:
            sim = 2.0 * sim - squared_norms
        sim[torch.arange(rows.numel(), device=points.device), rows] = float("-inf")  # exclude self
        out[start : start + rows.numel()] = sim.topk(k, dim=1).indices.cpu().numpy()
    return out


def _approximate_topk(points: np.ndarray, k: int, random_state: int) -> np.ndarray:
    """NN-descent neighbours (pynndescent, a scanpy dependency) without the cell itself, in Euclidean distance."""
    from pynndescent import NNDescent

    # For cosine the rows are unit vectors, whose Euclidean order is the cosine order; this also avoids
    # pynndescent's angular trees.
    index = NNDescent(points, metric="euclidean", n_neighbors=k + 1, random_state=random_state, compressed=True)
    found, _ = index.neighbor_graph
    keep = (found != np.arange(found.shape[0])[:, None]) & (found >= 0)
    # Stable sort moves the kept entries (in similarity order) to the front of each row.
    front = np.take_along_axis(found, np.argsort(~keep, axis=1, kind="stable"), axis=1)[:, :k]
    n_kept = keep.sum(1, keepdims=True)
    # Rows with fewer than k found (rare) repeat their best neighbour.
    return np.where(np.arange(k)[None, :] < n_kept, front, front[:, :1]).astype(np.int64)
