"""Where training starts: how many fine classes each coarse class gets, and the partition of each coarse class
(k-means, or spectral clustering of the neighbour graph) under that M.

Two allocations of K_F over the coarse classes:

- ``"size"``: in proportion to class sizes (largest remainder,
  :func:`~.initial_relationship.proportional_relationship`);
- ``"structure"``: greedily, each further fine class goes to the coarse class whose cells gain most from one
  more k-means cluster, measured as the drop in within-cluster sum of squares in excess of the drop the same
  number of clusters gives on structure-free data of the same spread (Gaussian with the class's variance along
  every axis). A large class with a clear split wins over a small one, an elongated but unimodal class does
  not split, and a class whose extra clusters only cut noise stops receiving fine classes. Cells nearer another
  coarse class's centroid than their own are left out of the criterion (islands of another class's cells are
  not subtypes).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.cluster import KMeans, SpectralClustering

from .config import FalconConfig
from .initial_relationship import proportional_relationship, usable_base
from .neighbors import NeighborGraph
from .relationship import solve_relationship

# Per coarse class, the allocation criterion is computed on a random sample of at most this many cells; a
# class's gains are scaled back to its full size.
_MAX_CELLS = 1000
# The warm start's k-means centroids of a larger class are fitted on a random sample of this many cells.
_MAX_FIT_CELLS = 20000
# Null draws per (class, k) for the structure criterion.
_N_NULL = 1


@dataclass(frozen=True)
class Allocation:
    """Fine classes per coarse class where training starts, and the evidence the allocation went by.

    ``method`` is ``"structure"``, ``"size"`` or ``"given"`` (counts a caller fixed). For ``"structure"``, gains
    are the criterion of :func:`~falcon_sc.core.structure_allocation` (excess drop in within-cluster sum of
    squares over the structure-free null, mean over the class's next clusters, in squared PC units summed over the
    class's cells):
    ``last_gain`` is its value when the class won its last fine class (NaN where the class kept only what it
    started with), ``next_gain`` its value for one more (-inf where the class cannot be split further). Both are
    NaN for the other methods."""

    method: str
    counts: np.ndarray  # (K_C,) int
    last_gain: np.ndarray  # (K_C,) float
    next_gain: np.ndarray  # (K_C,) float

    @classmethod
    def given(cls, counts: np.ndarray, method: str = "given") -> Allocation:
        """Counts that no criterion chose (a caller's, or in proportion to class size)."""
        counts = np.asarray(counts, dtype=np.int64)
        return cls(method, counts, np.full(counts.size, np.nan), np.full(counts.size, np.nan))


def _on_host(scores: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float32 scores as a NumPy array (no copy for a CPU tensor or array that is float32 already)."""
    return np.asarray(torch.as_tensor(scores).float().cpu())


def initial_counts(
    scores: torch.Tensor | np.ndarray,
    coarse: np.ndarray,
    n_coarse: int,
    n_fine: int,
    config: FalconConfig,
    base: np.ndarray | None,
    random_state: int,
) -> Allocation:
    """Fine classes per coarse class at the start of training (sums to ``n_fine``), with the evidence.

    ``base`` (e.g. the per-class counts of an estimate of K_F) is the starting point that both allocations
    add to; classes without it start at one fine class each.
    """
    sizes = np.bincount(coarse, minlength=n_coarse)
    if config.allocation == "size":
        return Allocation.given(proportional_relationship(sizes, n_fine, base).sum(0), "size")
    return structure_allocation(_on_host(scores), coarse, n_coarse, n_fine, base, random_state)


def structure_gains(
    scores: np.ndarray, coarse: np.ndarray, n_coarse: int, k_max: int, random_state: int, foreign: bool = True
) -> list[np.ndarray]:
    """For every coarse class, the excess gain of its 2nd, 3rd, … k_max-th cluster (see the module docstring).

    Entry ``j`` of class ``c``'s array is the gain of going from ``j + 1`` to ``j + 2`` clusters, in units of
    squared distance summed over the class's cells. Classes too small to split get an empty array. With
    ``foreign``, cells nearer another class's centroid are left out (``_own_like``).
    """
    rng = np.random.default_rng(random_state)
    own = _own_like(scores, coarse, n_coarse) if foreign else np.ones(coarse.size, dtype=bool)
    gains = []
    for c in range(n_coarse):
        members = np.flatnonzero((coarse == c) & own)
        k_top = min(k_max, members.size // 2)
        if k_top < 2:
            gains.append(np.zeros(0))
            continue
        weight = 1.0
        if members.size > _MAX_CELLS:
            weight = members.size / _MAX_CELLS
            members = np.sort(rng.choice(members, _MAX_CELLS, replace=False))
        v = scores[members].astype(np.float64)
        v -= v.mean(0)
        spread = v.std(0)
        seed = int(rng.integers(2**31))
        data = [float((v**2).sum())]
        null = [data[0]]
        nulls = [rng.standard_normal(v.shape) * spread for _ in range(_N_NULL)]
        for k in range(2, k_top + 1):
            data.append(KMeans(k, n_init=2, random_state=seed).fit(v).inertia_)
            null.append(np.mean([KMeans(k, n_init=1, random_state=seed).fit(g).inertia_ for g in nulls]))
        gains.append(weight * (np.diff(null) - np.diff(data)))
    return gains


def _own_like(scores: np.ndarray, coarse: np.ndarray, n_coarse: int) -> np.ndarray:
    """Whether each cell is nearer its own coarse class's centroid than any other's.

    Cells that look like another coarse class (mislabelled cells, doublets, a continuum between classes) form
    islands that k-means happily splits off, but such an island is another class's cells, not a subtype of
    this one: the criterion is computed without them."""
    return _centroid_distances(scores, coarse, n_coarse).argmin(1) == coarse


def _centroid_distances(
    scores: np.ndarray, labels: np.ndarray, n_groups: int, rows: np.ndarray | None = None
) -> np.ndarray:
    """Squared distance of each cell (of ``rows``, default all) to the centroid of each of the ``n_groups``
    groups of ``labels``, up to the cell's own ‖x‖² (which does not change its ranking): an (n, groups) matrix,
    never (n, groups, dims)."""
    sums = np.zeros((n_groups, scores.shape[1]))
    np.add.at(sums, labels, scores)
    centroids = sums / np.maximum(np.bincount(labels, minlength=n_groups), 1)[:, None]
    points = scores if rows is None else scores[rows]
    return (centroids**2).sum(1)[None, :] - 2.0 * points @ centroids.T


def structure_allocation(
    scores: np.ndarray,
    coarse: np.ndarray,
    n_coarse: int,
    n_fine: int,
    base: np.ndarray | None = None,
    random_state: int = 0,
) -> Allocation:
    """Fine classes per coarse class: each beyond ``base`` (default one each) goes, one at a time, to the
    class whose next clusters have the largest mean ``structure_gains`` (``_lookahead``); a class gets
    at most half as many classes as it has cells. Returns the counts with the gains they were chosen by."""
    counts = usable_base(base, n_coarse, n_fine)
    extra = n_fine - counts.sum()
    sizes = np.bincount(coarse, minlength=n_coarse)
    # A class is tried with up to three times the mean number of fine classes per coarse class (beyond that the
    # gains measure noise and cost k-means runs): more than enough for the class that holds most subtypes.
    k_max = int(min(counts.max() + extra, sizes.max() // 2, max(4, counts.max() + 1, 3 * -(-n_fine // n_coarse))))
    gains = structure_gains(scores, coarse, n_coarse, max(k_max, 2), random_state)
    last = np.full(n_coarse, np.nan)

    def next_gains() -> np.ndarray:
        return np.array([_lookahead(g[k - 1 :]) for g, k in zip(gains, counts, strict=True)])

    for _ in range(extra):
        nxt = next_gains()
        if np.isneginf(nxt).all():  # no class can take one more by the criterion: fall back to class size
            winner = int(np.argmax(sizes / counts))
        else:
            winner = int(np.argmax(nxt))
            last[winner] = nxt[winner]
        counts[winner] += 1
    return Allocation("structure", counts, last, next_gains())


def _lookahead(gains: np.ndarray) -> float:
    """The best mean gain over the next 1, 2, … clusters (−inf if none is left). k-means gains are not
    concave (a 3-cluster optimum can miss the split that 4 clusters find), so a class is judged by what its
    next few clusters gain together, not only the next one."""
    if gains.size == 0:
        return -np.inf
    return float(np.max(np.cumsum(gains) / np.arange(1, gains.size + 1)))


def _split_each_class(coarse: np.ndarray, relationship: np.ndarray, split) -> np.ndarray:
    """Fine labels from ``split(members, k)`` (cluster indices in ``[0, k)`` of the class's cells) inside each coarse
    class with ``k`` > 1 fine classes under M, cluster ``j`` becoming M's ``j``-th fine class of ``c``."""
    labels = np.empty(coarse.size, dtype=np.int64)
    for c in range(relationship.shape[1]):
        members = np.flatnonzero(coarse == c)
        fines = np.flatnonzero(relationship[:, c])
        if members.size == 0:
            continue
        k = min(fines.size, members.size)
        labels[members] = fines[0] if k == 1 else fines[split(members, k)]
    return labels


def kmeans_within_classes(
    scores: torch.Tensor | np.ndarray, coarse: np.ndarray, relationship: np.ndarray, random_state: int
) -> np.ndarray:
    """Fine labels from k-means inside each coarse class: the cells of class ``c`` are split into as many
    clusters as M gives it, cluster ``j`` becoming M's ``j``-th fine class of ``c``."""
    scores = _on_host(scores)

    def split(members: np.ndarray, k: int) -> np.ndarray:
        kmeans = KMeans(k, n_init=3, random_state=random_state)
        if members.size > _MAX_FIT_CELLS:  # centroids from a sample; every cell goes to its nearest one
            sample = np.random.default_rng(random_state).choice(members.size, _MAX_FIT_CELLS, replace=False)
            kmeans.fit(scores[members[sample]])
        else:
            kmeans.fit(scores[members])
        return kmeans.predict(scores[members])

    return _split_each_class(coarse, relationship, split)


def spectral_within_classes(
    graph: NeighborGraph, coarse: np.ndarray, relationship: np.ndarray, random_state: int
) -> np.ndarray:
    """Fine labels from spectral clustering of each coarse class's part of the within-class neighbour ``graph``
    (the one FALCON trains with; edges made symmetric), into as many clusters as M gives the class, cluster
    ``j`` becoming M's ``j``-th fine class of ``c``.

    Unlike k-means it follows the graph, so it can cut along the weak directions that separate subtypes and
    give clusters unequal sizes. Eigenvectors by LOBPCG: on a 20-NN graph of 20,000 cells in 5 groups, shift-invert
    ARPACK (sklearn's default) took 52.7 s on 2 otherwise idle cores, LOBPCG 0.2 s.
    """
    seed = int(random_state) % 2**31
    local = np.full(graph.indices.shape[0], -1, dtype=np.int64)

    def split(members: np.ndarray, k: int) -> np.ndarray:
        if members.size <= k + 1:  # too few cells for an eigendecomposition: one cluster each, in turn
            return np.arange(members.size) % k
        local[members] = np.arange(members.size)
        valid = np.arange(graph.indices.shape[1])[None, :] < graph.n_valid[members, None]
        rows = np.broadcast_to(np.arange(members.size)[:, None], valid.shape)[valid]
        connectivity = sp.csr_matrix(
            (np.ones(rows.size), (rows, local[graph.indices[members]][valid])), shape=(members.size,) * 2
        )
        clustering = SpectralClustering(
            k, affinity="precomputed", assign_labels="cluster_qr", eigen_solver="lobpcg", random_state=seed
        )
        with warnings.catch_warnings():  # separate components are clusters here, not a failure
            warnings.filterwarnings("ignore", "Graph is not fully connected", UserWarning)
            return clustering.fit_predict(0.5 * (connectivity + connectivity.T))

    return _split_each_class(coarse, relationship, split)


def joint_start(
    scores: torch.Tensor | np.ndarray,
    coarse: np.ndarray,
    proxy: np.ndarray,
    first: np.ndarray,
    coarse_blocks: tuple[int, ...],
    random_state: int,
    *,
    time_limit: float = 60.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The warm start of a run on several datasets: ``(M, labels)``.

    ``proxy`` gives every cell a class of the first dataset (its own label there, the nearest class's for the
    other datasets' cells) and ``first`` that dataset's M. The cells are split by k-means inside each proxy
    class under ``first`` (:func:`kmeans_within_classes`); each later dataset's M_l then gives every fine class
    the parent holding most of its cells there (solved exactly, so every class gets one), and a cell whose
    label M_l does not allow under its own coarse class takes the allowed fine class with the nearest centroid.
    """
    host = _on_host(scores)
    labels = kmeans_within_classes(host, proxy, first, random_state)
    n_fine = first.shape[0]
    relationships, offset = [first], coarse_blocks[0]
    for size in coarse_blocks[1:]:
        cells = np.flatnonzero((coarse >= offset) & (coarse < offset + size))
        shares = np.zeros((n_fine, size))
        np.add.at(shares, (labels[cells], coarse[cells] - offset), 1.0 / cells.size)
        relationships.append(solve_relationship(shares, 0.0, time_limit=time_limit))
        offset += size
    relationship = np.hstack(relationships)
    wrong = np.flatnonzero(relationship[labels, coarse] == 0)  # labels M does not allow under the cell's class
    if wrong.size:
        dist = _centroid_distances(host, labels, n_fine, wrong)
        labels[wrong] = np.where(relationship[:, coarse[wrong]].T > 0, dist, np.inf).argmin(1)
    return relationship, labels
