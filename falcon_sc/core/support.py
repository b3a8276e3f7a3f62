"""How well the data support each discovered subtype: reproducibility across independent runs, and a test of
each split against a structure-free null."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans


def subtype_stability(labels: np.ndarray, others: list[np.ndarray], n_fine: int) -> np.ndarray:
    """``(n_fine,)``: for each fine class of ``labels``, its best-match Jaccard index with the classes of each
    labelling in ``others`` (other restarts of the same data), averaged over them; NaN without others.

    1 means every other run found exactly the same cells; a subtype that exists only because K_F asked for it
    lands on different cells in each run and scores low. An empty class scores NaN."""
    if not others:
        return np.full(n_fine, np.nan)
    sizes = np.bincount(labels, minlength=n_fine).astype(np.float64)
    scores = []
    for other in others:
        n_other = max(n_fine, int(other.max()) + 1)
        shared = np.zeros((n_fine, n_other))
        np.add.at(shared, (labels, other), 1.0)
        union = sizes[:, None] + np.bincount(other, minlength=n_other)[None, :] - shared
        scores.append(np.divide(shared, union, out=np.zeros_like(shared), where=union > 0).max(1))
    stability = np.mean(scores, axis=0)
    stability[sizes == 0] = np.nan
    return stability


def _pair_sample(labels: np.ndarray, pair: tuple[int, int], max_cells: int, rng) -> np.ndarray:
    """The cells of both subtypes of ``pair``, or, above ``max_cells``, a sample of each in proportion to its size
    with at least 2 cells of each (a uniform sample can miss a small sibling, and the split is then undefined)."""
    groups = [np.flatnonzero(labels == h) for h in pair]
    total = sum(cells.size for cells in groups)
    if total > max_cells:
        groups = [
            rng.choice(cells, min(cells.size, max(2, round(max_cells * cells.size / total))), replace=False)
            for cells in groups
        ]
    return np.sort(np.concatenate(groups))


def separation_test(
    scores: np.ndarray,
    labels: np.ndarray,
    parents: np.ndarray,
    *,
    n_null: int = 19,
    max_cells: int = 500,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(statistic, p_value)``, each ``(K_F,)``: is subtype ``f`` separated from its nearest sibling (the
    subtype of the same parent with the closest centroid) by more than a structure-free class would allow?

    The statistic is the share of the pair's variance that their split explains, ``1 − SS_within / SS_total``,
    on about ``max_cells`` sampled cells (each subtype in proportion, at least 2 of each). The null draws as many
    points from a Gaussian with the pair's covariance (one population, no structure) ``n_null`` times and takes
    the best 2-means split of each; the p-value is ``(1 + #null ≥ statistic) / (n_null + 1)``, so 0.05 with 19
    draws means no null split did as well. Subtypes without a non-empty sibling get NaN."""
    rng = np.random.default_rng(random_state)
    scores = np.asarray(scores)  # float32 stays so (n × dims); sums and each pair's sample are in float64
    n_fine = parents.size
    sizes = np.bincount(labels, minlength=n_fine)
    centroids = np.zeros((n_fine, scores.shape[1]))
    np.add.at(centroids, labels, scores)
    centroids /= np.maximum(sizes, 1)[:, None]
    statistic, p_value = np.full(n_fine, np.nan), np.full(n_fine, np.nan)
    for f in np.flatnonzero(sizes):
        siblings = np.flatnonzero((parents == parents[f]) & (sizes > 0) & (np.arange(n_fine) != f))
        if siblings.size == 0:
            continue
        g = siblings[np.argmin(((centroids[siblings] - centroids[f]) ** 2).sum(1))]
        cells = _pair_sample(labels, (f, g), max_cells, rng)
        x = scores[cells].astype(np.float64)
        x -= x.mean(0)
        total = (x**2).sum()
        if cells.size < 4 or total <= 0:
            continue
        within = sum(((x[labels[cells] == h] - x[labels[cells] == h].mean(0)) ** 2).sum() for h in (f, g))
        statistic[f] = 1.0 - within / total
        # The Gaussian is drawn on its principal axes (k-means and the statistic do not change under a rotation),
        # so the covariance is decomposed once per pair rather than once per draw.
        spread = np.sqrt(np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False).reshape(x.shape[1], -1)), 0.0, None))
        null = []
        for _ in range(n_null):
            z = rng.standard_normal((cells.size, spread.size)) * spread
            z -= z.mean(0)
            fit = KMeans(2, n_init=1, random_state=int(rng.integers(2**31))).fit(z)
            null.append(1.0 - fit.inertia_ / (z**2).sum())
        p_value[f] = (1 + np.sum(np.asarray(null) >= statistic[f])) / (n_null + 1)
    return statistic, p_value
