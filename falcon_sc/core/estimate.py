"""Estimate the number of fine classes K_F from the data, without fine labels.

Each coarse class (each (dataset, coarse class) group) is asked how many subtypes it holds. Its cells (a
random sample of at most ``max_cells``) are z-scored (over all cells, clipped, as the classifier's PCA
input) and projected on their own principal components, keeping those that carry more variance than the
components of the same cells with every gene permuted independently (parallel analysis; at least 2, at
most ``n_components``). k-means splits them for every k from 2 to ``max_per_group``; a split with a cluster
of fewer than ``min_cells_per_subtype`` cells does not count (it isolates outlying cells). A split counts
only if it makes the class more clustered than structureless data of the same kind: the silhouette of the
partition must exceed, by more than ``threshold``, the larger of two null silhouettes computed through the
same PCA and k-means: Gaussian data with the class's full sample covariance (correlated, elongated but
unimodal variation) and the class's genes permuted independently across its cells (each gene's skewed,
sparse distribution). The class's count is the k with the largest excess, or 1. K_F is the sum over the
coarse classes of a dataset (the median over datasets when there are several, which share their fine
classes), clipped to the given bounds.

Why nulls of the same kind: an elongated unimodal class is split "stably" by k-means with a sizeable
silhouette, sparse genes make outlying cells, and principal components chosen on the very cells that are
then clustered make even structureless data look somewhat clustered (most of all for small classes in many
genes). Each of these fooled a fixed silhouette threshold or a single null on the simulated grid of
``bench/experiments/estimate_kf.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.utils.extmath import randomized_svd

from .pca import feature_moments, zscore


@dataclass
class FineCountEstimate:
    """The estimated K_F and the evidence behind it, per (dataset, coarse class) group."""

    n_fine: int  # the estimate, within the bounds
    unclipped: int  # before clipping to the bounds
    per_group: np.ndarray  # (n_groups,) estimated subtypes of each group
    excess: np.ndarray  # (n_groups, max_per_group − 1) silhouette − null silhouette for k = 2 …; NaN if not tried
    silhouette: np.ndarray  # same shape: the silhouette itself
    n_cells: np.ndarray  # (n_groups,) cells in each group


def _silhouette(x: np.ndarray, k: int, seed: int, min_size: int = 1, n_init: int = 3) -> float:
    """Silhouette of k-means with k clusters; NaN when a cluster has fewer than ``min_size`` cells (k-means
    then isolates a few outlying cells, which scores a high silhouette without being a subtype)."""
    labels = KMeans(k, n_init=n_init, random_state=seed).fit_predict(x)
    if np.bincount(labels, minlength=k).min() < max(min_size, 1):
        return np.nan
    return float(silhouette_score(x, labels, sample_size=min(x.shape[0], 2000), random_state=seed))


def _top_scores(matrix: np.ndarray, d: int, seed: int) -> np.ndarray:
    u, s, _ = randomized_svd(matrix, d, n_iter=4, random_state=seed)
    return u * s


def _singular_values(matrix: np.ndarray) -> np.ndarray:
    """All singular values, from the eigenvalues of the smaller Gram matrix (several times faster than an SVD)."""
    gram = matrix @ matrix.T if matrix.shape[0] <= matrix.shape[1] else matrix.T @ matrix
    return np.sqrt(np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None))


def _group_scores(
    x: np.ndarray, k_max: int, n_components: int, n_null: int, min_size: int, rng
) -> tuple[np.ndarray, np.ndarray]:
    """Silhouette and null silhouette for k = 2 … k_max on the rows of ``x`` (one group, z-scored).

    Two nulls go through the same PCA and k-means as the data, and the larger silhouette counts: Gaussian data
    with the group's full sample covariance (keeps correlated, elongated but unimodal variation) and the
    group's genes permuted independently across its cells (keeps each gene's skewed, sparse distribution).
    Both also pay the price of principal components chosen on the very cells that are then clustered, which
    makes even structureless data look somewhat clustered, most of all for small groups in many genes."""
    centred = x - x.mean(0)
    seed = int(rng.integers(2**31))
    ks = range(2, k_max + 1)
    singular = _singular_values(centred)
    # Parallel analysis: keep the components that carry more variance than those of permuted genes.
    noise = _singular_values(rng.permuted(centred, axis=0))
    d = int(np.clip(np.sum(singular > noise), 2, min(n_components, x.shape[0] - 1, x.shape[1])))
    scores = _top_scores(centred, d, seed)
    sil = np.array([_silhouette(scores, k, seed, min_size) for k in ks])
    gaussian, permuted = [], []
    for _ in range(n_null):  # each null is averaged over draws, so one k-means start per draw suffices
        cloud = _top_scores(rng.standard_normal((x.shape[0], singular.size)) * singular, d, seed)
        gaussian.append([_silhouette(cloud, k, seed, n_init=1) for k in ks])
        shuffled = _top_scores(rng.permuted(centred, axis=0), d, seed)
        permuted.append([_silhouette(shuffled, k, seed, n_init=1) for k in ks])
    return sil, np.maximum(np.mean(gaussian, axis=0), np.mean(permuted, axis=0))


def estimate_n_fine(
    data: np.ndarray | torch.Tensor,
    groups: np.ndarray,
    coarse_blocks: Sequence[int] | None = None,
    *,
    bounds: tuple[int, int] | None = None,
    max_per_group: int = 8,
    min_cells_per_subtype: int = 10,
    threshold: float = 0.05,
    n_components: int = 20,
    max_cells: int = 3000,
    n_null: int = 2,
    max_value: float = 10.0,
    random_state: int = 0,
) -> FineCountEstimate:
    """Estimate K_F from ``data`` ``(n, genes)`` (log-normalised) and group codes ``groups`` in ``[0, G)``.

    ``coarse_blocks`` gives the number of groups of each dataset (default: one dataset). A group of ``n``
    cells is tried with at most ``min(max_per_group, n // min_cells_per_subtype)`` subtypes. ``bounds``
    ``(lower, upper)`` clip the estimate; the lower bound must allow one fine class per coarse class of every
    dataset. See the module docstring for the criterion.
    """
    groups = np.asarray(groups, dtype=np.int64)
    n_groups = int(groups.max()) + 1 if groups.size else 0
    coarse_blocks = list(coarse_blocks) if coarse_blocks is not None else [n_groups]
    if sum(coarse_blocks) != n_groups:
        raise ValueError(f"coarse_blocks {coarse_blocks} must sum to the number of groups ({n_groups}).")
    lower, upper = check_bounds(bounds, max(coarse_blocks), groups.size)
    if max_per_group < 1 or min_cells_per_subtype < 1:
        raise ValueError("max_per_group and min_cells_per_subtype must be ≥ 1.")

    rng = np.random.default_rng(random_state)
    x = torch.as_tensor(data)
    # z-score every gene over all cells (clipped, like the classifier's PCA input) before the per-group PCA
    mean, scale = feature_moments(x)

    per_group = np.ones(n_groups, dtype=np.int64)
    excess = np.full((n_groups, max(max_per_group - 1, 0)), np.nan)
    silhouette = np.full_like(excess, np.nan)
    n_cells = np.bincount(groups, minlength=n_groups)
    for g in range(n_groups):
        cells = np.flatnonzero(groups == g)
        k_max = min(max_per_group, cells.size // min_cells_per_subtype)
        if k_max < 2:
            continue
        if cells.size > max_cells:
            cells = np.sort(rng.choice(cells, max_cells, replace=False))
        rows = torch.as_tensor(cells, device=x.device)
        z = zscore(x[rows].float(), mean, scale, max_value).double().cpu().numpy()
        sil, null = _group_scores(z, k_max, n_components, n_null, min_cells_per_subtype, rng)
        silhouette[g, : k_max - 1] = sil
        excess[g, : k_max - 1] = sil - null
        if np.isfinite(sil - null).any():
            best = int(np.nanargmax(sil - null))
            if sil[best] - null[best] > threshold:
                per_group[g] = best + 2

    totals = [int(block.sum()) for block in np.split(per_group, np.cumsum(coarse_blocks)[:-1])]
    unclipped = int(np.ceil(np.median(totals)))
    return FineCountEstimate(
        n_fine=int(np.clip(unclipped, lower, upper)),
        unclipped=unclipped,
        per_group=per_group,
        excess=excess,
        silhouette=silhouette,
        n_cells=n_cells,
    )


def check_bounds(bounds, n_coarse: int, n_cells: int) -> tuple[int, int]:
    """``(lower, upper)`` validated; defaults ``(max K_C, n_cells)``."""
    if bounds is None:
        return n_coarse, n_cells
    try:
        lower, upper = (int(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"n_fine bounds must be two integers (lower, upper), got {bounds!r}.") from None
    if lower > upper:
        raise ValueError(f"n_fine bounds ({lower}, {upper}) have lower > upper.")
    if lower < n_coarse:
        raise ValueError(
            f"The lower n_fine bound {lower} is below the {n_coarse} coarse classes of a dataset; every coarse "
            f"class needs at least one fine class, so use a lower bound ≥ {n_coarse}."
        )
    if upper > n_cells:
        raise ValueError(f"The upper n_fine bound {upper} exceeds the number of cells ({n_cells}).")
    return lower, upper
