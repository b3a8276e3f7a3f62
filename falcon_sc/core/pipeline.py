"""One FALCON run on arrays, in phases: the input's representation, where training starts (the allocation),
the within-class neighbours, the training runs, and the checks of the result."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from . import distributed
from .allocation import Allocation, initial_counts, joint_start, kmeans_within_classes, spectral_within_classes
from .classifier import FineClassifier
from .config import FalconConfig
from .initial_relationship import first_dataset_classes, fixed_relationship, proportional_relationship
from .label_check import neighbor_coarse_mass
from .neighbors import NeighborGraph, training_neighbors
from .pca import PCAProjection, class_pca_scores, combined_scores, fit_pca
from .progress import EpochProgress, epoch_progress
from .row_blocks import RowBlocks
from .support import separation_test
from .threads import cpu_threads, feature_threads
from .trainer import FalconResult, train_falcon

logger = logging.getLogger(__name__)


def n_components(config: FalconConfig, n_fine: int) -> int:
    """PCs used with ``representation="pca"``: ``config.n_pcs``, or ``max(10, K_F + 1)`` if unset."""
    return config.n_pcs if config.n_pcs is not None else max(10, n_fine + 1)


@dataclass
class _Representation:
    """What the classifier sees (``x``), the scores the allocation and warm starts work on, where neighbours are
    searched, and the PCA that maps genes to ``x`` (None when the classifier sees the input itself)."""

    x: torch.Tensor | RowBlocks
    scores: torch.Tensor | RowBlocks
    search: torch.Tensor | RowBlocks
    pca: PCAProjection | None


@dataclass(frozen=True)
class _Start:
    """Where training starts: the allocation (first dataset) as recorded, the counts the first M starts from
    (the allocation's, else the caller's base), the fine classes of every (dataset, class) group, the M the warm
    starts partition under, the proxy classes they partition, and whether starts are warm."""

    allocation: Allocation | None
    counts: np.ndarray | None
    fine_per_group: np.ndarray
    relationship: np.ndarray | None
    proxy: np.ndarray
    warm: bool
    single: bool


def _starts(config: FalconConfig, fixed, coarse_blocks) -> tuple[bool, bool]:
    """Whether the run is on one dataset, and whether its restarts start warm (several datasets: only with M
    learned)."""
    single = coarse_blocks is None or len(coarse_blocks) == 1
    return single, config.warm_start != "none" and (single or fixed is None)


def _check_config(config: FalconConfig, fixed, coarse_blocks) -> None:
    """Refuse a config the engine cannot run: unresolved ``"auto"`` options, or a warm start without the M it
    starts from."""
    if config.unresolved():
        raise ValueError(
            f"The config still says 'auto' for {config.unresolved()}: decide them for your input with "
            "config.resolved(n_genes=..., n_cells=...) (n_genes=None for an embedding) before calling the engine."
        )
    _, warm = _starts(config, fixed, coarse_blocks)
    if warm and fixed is None and config.relationship_init != "proportional":
        raise ValueError("warm_start needs relationship_init='proportional' (the M it starts from).")


def _check_streamable(config: FalconConfig) -> None:
    """A row-block source is only ever read through its PCs: refuse settings that need the matrix itself."""
    if not config.reads_genes_through_pcs():
        raise ValueError(
            f"A matrix read in row blocks is used through its principal components, but representation="
            f"{config.representation!r} and neighbor_space={config.neighbor_space!r} need it whole. Use "
            "representation='pca' with neighbor_space='representation', or pass the matrix in memory."
        )


def _representation(data, coarse: np.ndarray, n_fine: int, config: FalconConfig, device) -> _Representation:
    """The classifier's input and the neighbour search space (``config.representation``,
    ``config.neighbor_space``). With PCA, the gene matrix is dropped once projected (unless the caller holds it)."""
    if isinstance(data, RowBlocks):
        _check_streamable(config)
        x = data
    else:
        x = torch.as_tensor(data).to(device)
        if not x.is_floating_point():
            x = x.float()
    # Global PCs spend most of their variance on what tells the coarse classes apart, so neighbours may also be
    # searched on PCs computed inside each class.
    class_scores = None
    if config.neighbor_space in ("class_pca", "combined"):
        class_scores = class_pca_scores(x, coarse, config.class_pcs, max_value=config.max_value)
        logger.info("neighbours searched on %d PCs computed inside each coarse class", config.class_pcs)
    pca = None
    scores = x
    if config.representation == "pca":
        pca = fit_pca(x, n_components(config, n_fine), standardize=config.standardize, max_value=config.max_value)
        scores = pca.transform(x)
        # The classifier sees whitened scores: the weaker components carry the fine structure, and an MLP whose
        # inputs vary little along them keeps all cells of a coarse class at the same prediction. (Neighbours
        # stay on the unwhitened scores, where cosine similarity is far less noisy.)
        x = pca.whiten(scores)
    if config.neighbor_space == "combined":
        search = combined_scores(torch.as_tensor(scores), class_scores, coarse)
    else:
        search = scores if class_scores is None else class_scores
    return _Representation(x, scores, search, pca)


def _fine_per_group(
    sizes: np.ndarray, n_fine: int, fixed: np.ndarray | None, allocated: np.ndarray | None, coarse_blocks
) -> np.ndarray:
    """Fine classes of each (dataset, coarse class) group where training starts: those of a fixed M, else the
    allocation's for the groups it covers (the first dataset's), else in proportion to class size within each
    dataset (the other datasets' M follow from the warm start)."""
    if fixed is not None:
        return np.asarray(fixed).astype(bool).sum(0)
    blocks = np.split(sizes, np.cumsum(coarse_blocks or [sizes.size])[:-1])
    counts = np.concatenate([proportional_relationship(block, n_fine).sum(0) for block in blocks])
    if allocated is not None:
        counts[: len(allocated)] = allocated
    return counts


def _start(rep: _Representation, coarse, n_coarse, n_fine, fixed, coarse_blocks, base, config, random_state) -> _Start:
    """How many fine classes each coarse class starts with (the allocation, or a fixed M's counts).

    Several datasets: the allocation and the warm starts run on the first dataset's taxonomy, into which every
    other dataset's cells are placed by their nearest class (:func:`~.allocation.joint_start` derives the other
    datasets' M from that)."""
    single, warm = _starts(config, fixed, coarse_blocks)
    n_first = n_coarse if single else coarse_blocks[0]
    proxy = coarse
    if not single and warm:
        proxy = first_dataset_classes(rep.x, torch.as_tensor(coarse), n_first).cpu().numpy()
    allocation, counts = None, base
    if fixed is not None:
        allocation = Allocation.given(np.asarray(fixed).astype(bool).sum(0)[:n_first])
    elif warm or (single and config.allocation != "size"):
        allocation = initial_counts(rep.scores, proxy, n_first, n_fine, config, base, random_state)
        counts = allocation.counts
        logger.info("initial fine classes per coarse class (%s): %s", config.allocation, counts.tolist())
    fine_per_group = _fine_per_group(np.bincount(coarse, minlength=n_coarse), n_fine, fixed, counts, coarse_blocks)
    relationship = fixed if fixed is not None else (fixed_relationship(counts) if warm else None)
    return _Start(allocation, counts, fine_per_group, relationship, proxy, warm, single)


def _initial(
    start: _Start, rep: _Representation, graph: NeighborGraph, coarse, coarse_blocks, base, restart, seed, config
) -> dict:
    """How one restart starts: warm (a partition of each class under the allocated M) or cold (random classifier,
    M from class sizes); ``warm_start="alternate"`` makes every second restart cold."""
    if not start.warm or (config.warm_start == "alternate" and restart % 2 == 1):
        counts = start.counts if config.warm_start == "none" else base
        return {"initial_fine_per_coarse": counts, "initial_labels": None}
    if not start.single:
        relationship, labels = joint_start(
            rep.scores, coarse, start.proxy, start.relationship, tuple(coarse_blocks), seed,
            time_limit=config.solver_time_limit,
        )  # fmt: skip
        return {"start_relationship": relationship, "initial_labels": labels}
    if config.warm_start_clustering == "spectral":
        labels = spectral_within_classes(graph, coarse, start.relationship, seed)
    else:
        labels = kmeans_within_classes(rep.scores, coarse, start.relationship, seed)
    return {"initial_fine_per_coarse": start.counts, "initial_labels": labels}


def _checks(best: FalconResult, rep: _Representation, coarse, coarse_blocks, n_coarse, config, threads, seed) -> dict:
    """The checks of the kept run: each cell's neighbours' coarse mass (the coarse-label check) and each subtype's
    split against a structure-free null, with their times."""
    found, timings = {"neighbor_coarse_mass": None, "separation": None}, {}
    if config.coarse_check_neighbors > 0:
        t0 = time.perf_counter()
        with cpu_threads(threads):
            dataset_of_cell = np.searchsorted(np.cumsum(coarse_blocks or [n_coarse]), coarse, side="right")
            found["neighbor_coarse_mass"] = neighbor_coarse_mass(
                rep.scores, best.probs, best.relationship, coarse, dataset_of_cell, config.coarse_check_neighbors, seed
            )
        timings["coarse_check"] = time.perf_counter() - t0
    if config.support_null_draws > 0:
        t0 = time.perf_counter()
        statistic, p_value = separation_test(
            torch.as_tensor(rep.scores).float().cpu().numpy(),
            best.labels,
            best.relationship.argmax(1),
            n_null=config.support_null_draws,
            random_state=seed,
        )
        found["separation"] = np.column_stack([statistic, p_value])
        timings["separation_test"] = time.perf_counter() - t0
    return {**found, "timings": timings}


def run_falcon(
    data: np.ndarray | torch.Tensor | RowBlocks,
    coarse: np.ndarray,
    *,
    n_coarse: int,
    n_fine: int,
    fixed: np.ndarray | None = None,
    coarse_blocks: list[int] | None = None,
    initial_fine_per_coarse: np.ndarray | None = None,
    config: FalconConfig,
    random_state: int = 0,
    device: str | torch.device = "cpu",
    progress: bool | EpochProgress = True,
    n_jobs: int | None = None,
) -> FalconResult:
    """FALCON on a dense ``(n_cells, n_features)`` matrix and integer coarse labels in ``[0, n_coarse)``.

    ``config`` must be resolved for the input (:meth:`~falcon_sc.core.FalconConfig.resolved`). ``data`` may
    already be a tensor on ``device`` (any float dtype); it is not copied then, and with ``representation="pca"``
    only its principal-component scores are kept once they are computed. It may also be a
    :class:`~falcon_sc.core.row_blocks.RowBlocks` source, a matrix never held whole (``representation="pca"`` and
    neighbours on those PCs): PCs are fitted and every cell projected in passes over its blocks, and the rest of
    the run holds only per-cell arrays (scores, neighbours, probabilities).

    With ``config.representation == "pca"`` the matrix is first projected on its top principal components
    (``n_components``; of z-scored features when ``config.standardize``), which the classifier then sees
    and in which neighbours are searched (within each coarse class). ``fixed`` (a ``(K_F, K_C)`` relationship)
    keeps M constant; otherwise M is learned. ``coarse_blocks`` splits the coarse labels into datasets with their
    own taxonomies (see :func:`~falcon_sc.core.train_falcon`); neighbours are then searched within each (dataset,
    coarse class), since every such pair has its own label. ``initial_fine_per_coarse`` seeds the allocation.

    With ``config.n_restarts > 1`` the alternating optimisation runs that many times from different seeds
    (the first is ``random_state``) and the run with the lowest final objective is kept: the objective is FALCON's
    own, so the choice uses no fine labels. ``restart_agreement`` of the result is the mean adjusted Rand index
    between the fine labels of every two restarts.

    ``n_jobs`` threads (``None``: one below ``core.threads.PARALLEL_MIN_CELLS`` cells, torch's current setting
    above; ``-1``: every core) compute the PCA and the neighbour search on the CPU; k-means and training run on
    ``config.training_threads`` (one by default, see ``core.threads``). The caller's thread settings are restored
    afterwards. ``progress`` shows one bar over the epochs of every run (``True``), none (``False``), or adds them
    to a caller's :class:`~falcon_sc.core.progress.EpochProgress`.
    """
    _check_config(config, fixed, coarse_blocks)
    threads = feature_threads(n_jobs, len(coarse))
    main_process = distributed.world()[0] == 0
    with cpu_threads(config.training_threads), epoch_progress(progress, main_process=main_process) as bar:
        device = torch.device(device)
        t0 = time.perf_counter()
        with cpu_threads(threads):  # PCA: large matrix products, which gain from the threads the caller allows
            rep = _representation(data, coarse, n_fine, config, device)
        del data  # the gene matrix is no longer needed (frees it unless the caller holds it)
        t_representation = time.perf_counter() - t0

        t0 = time.perf_counter()
        base = initial_fine_per_coarse
        start = _start(rep, coarse, n_coarse, n_fine, fixed, coarse_blocks, base, config, random_state)
        timings: dict[str, float] = {"start": time.perf_counter() - t0}  # the allocation and every restart's start

        t0 = time.perf_counter()
        with cpu_threads(threads):
            # CUDA searches every class exactly; on the CPU very large classes are searched approximately.
            exact_max = None if device.type == "cuda" else config.knn_exact_max_cells
            graph = training_neighbors(
                rep.search, coarse, config, start.fine_per_group,
                device=device, exact_max_group=exact_max, random_state=random_state,
            )  # fmt: skip
        rep.search = None
        t_knn = t_representation + time.perf_counter() - t0
        logger.info("within-class neighbours: %.2f s", t_knn)

        seeds = [random_state] + [
            int(s.generate_state(1)[0]) for s in np.random.SeedSequence(random_state).spawn(config.n_restarts - 1)
        ]
        best, kept, objectives, labels = None, 0, [], []
        for restart, seed in enumerate(seeds):
            t0 = time.perf_counter()
            how = _initial(start, rep, graph, coarse, coarse_blocks, base, restart, seed, config)
            timings["start"] += time.perf_counter() - t0
            result = train_falcon(
                rep.x, coarse, graph,
                n_fine=n_fine, n_coarse=n_coarse, fixed=fixed, coarse_blocks=coarse_blocks, **how,
                config=config, random_state=seed, device=device, progress=bar,
            )  # fmt: skip
            objectives.append(result.objective["total"])
            labels.append(result.labels)
            logger.info("restart %d: final objective %.4f", restart, objectives[-1])
            for stage, seconds in result.timings.items():  # stage times summed over all restarts
                timings[stage] = timings.get(stage, 0.0) + seconds
            if best is None or objectives[-1] < best.objective["total"]:
                best, kept = result, restart

        checks = _checks(best, rep, coarse, coarse_blocks, n_coarse, config, threads, random_state)
        pairs = [adjusted_rand_score(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :]]
        return dataclasses.replace(
            best,
            classifier=FineClassifier(best.classifier.network, rep.pca.to("cpu") if rep.pca is not None else None),
            restart_objectives=objectives,
            restart_agreement=float(np.mean(pairs)) if pairs else None,
            other_restart_labels=[other for i, other in enumerate(labels) if i != kept],
            neighbor_coarse_mass=checks["neighbor_coarse_mass"],
            separation=checks["separation"],
            allocation=start.allocation,
            timings={"neighbors": t_knn, **timings, **checks["timings"]},
        )
