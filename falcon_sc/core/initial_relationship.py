"""Where M starts: fine classes per coarse class in proportion to size (from a base), aligned across
datasets, fixed by the caller, or random costs solved exactly (the paper's start)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import FalconConfig
from .relationship import solve_relationship, solve_relationships
from .views import InputViews


def initial_relationship(
    config: FalconConfig,
    coarse_sizes: np.ndarray,
    n_fine: int,
    coarse_blocks: Sequence[int],
    base: np.ndarray | None,
    views: InputViews,
    coarse: torch.Tensor,
    generator: torch.Generator,
) -> np.ndarray:
    """The M a run with a learned relationship starts from (``config.relationship_init``).

    ``"proportional"``: :func:`proportional_relationship` of the first dataset from ``base``; later datasets
    are aligned with it (:func:`aligned_relationship`). ``"random"``: uniform random costs solved exactly,
    drawn from ``generator``.
    """
    if config.relationship_init == "proportional":
        relationship = proportional_relationship(coarse_sizes[: coarse_blocks[0]], n_fine, base)
        if len(coarse_blocks) > 1:
            later = [
                aligned_relationship(relationship, overlap, time_limit=config.solver_time_limit)
                for overlap in coarse_overlaps(views.x, coarse, coarse_blocks)
            ]
            relationship = np.hstack([relationship, *later])
        return relationship
    random_cost = torch.rand(n_fine, sum(coarse_blocks), generator=generator, device=coarse.device).cpu().numpy()
    return np.hstack(
        solve_relationships(
            split_blocks(random_cost, coarse_blocks), config.balance_weight, time_limit=config.solver_time_limit
        )
    )


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
def first_dataset_classes(x: torch.Tensor, coarse: torch.Tensor, n_first: int) -> torch.Tensor:
    """Every cell's coarse class in the first dataset's taxonomy: its own label for the first dataset's cells
    (labels ``< n_first``), for the others the first dataset's class whose centroid is the most cosine-similar."""
    unit = F.normalize(x.float(), dim=1)
    first = coarse < n_first
    centroids = torch.zeros(n_first, x.shape[1], device=x.device).index_add_(0, coarse[first], unit[first])
    nearest = (unit @ F.normalize(centroids, dim=1).T).argmax(1)
    return torch.where(first, coarse, nearest)


def coarse_overlaps(x: torch.Tensor, coarse: torch.Tensor, coarse_blocks: Sequence[int]) -> list[np.ndarray]:
    """For every later dataset, ``(K_C^0, K_C^l)``: how the first dataset's coarse classes spread over its own.

    Each cell of a later dataset is given the first dataset's coarse class with the nearest centroid
    (:func:`first_dataset_classes`); row ``c`` is the distribution over the later dataset's classes of the cells
    given ``c`` (uniform if none).
    """
    n_first = coarse_blocks[0]
    proxy = first_dataset_classes(x, coarse, n_first)
    overlaps, offset = [], n_first
    for size in coarse_blocks[1:]:
        cells = (coarse >= offset) & (coarse < offset + size)
        nearest = proxy[cells].cpu().numpy()
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
