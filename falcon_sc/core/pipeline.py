"""One FALCON run on arrays: neighbour search, then the alternating optimisation."""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from . import distributed
from .allocation import (
    Allocation,
    initial_counts,
    joint_start,
    kmeans_within_classes,
    reseed_empty,
    spectral_within_classes,
)
from .classifier import FineClassifier
from .config import FalconConfig
from .initial_relationship import first_dataset_classes, fixed_relationship, proportional_relationship
from .label_check import neighbor_coarse_mass
from .neighbors import fewer_neighbors, subtype_neighbor_counts, within_group_neighbors
from .pca import class_pca_scores, combined_scores, fit_pca, fit_within_class_pca
from .progress import EpochProgress, epoch_progress
from .row_blocks import RowBlocks
from .support import separation_test
from .threads import cpu_threads, feature_threads
from .trainer import FalconResult, train_falcon

logger = logging.getLogger(__name__)


def n_components(config: FalconConfig, n_fine: int) -> int:
    """PCs used with ``representation="pca"``: ``config.n_pcs``, or ``max(10, K_F + 1)`` if unset."""
    return config.n_pcs if config.n_pcs is not None else max(10, n_fine + 1)


def _reseeded(best, x, coarse, graph, scores, timings, config: FalconConfig, n_coarse, random_state, device, progress):
    """Up to ``config.reseed_rounds`` further runs in which the fine classes that ended with fewer than
    ``max(5, min_subtype_share · n)`` cells are re-seeded where a subtype splits most clearly
    (:func:`~.allocation.reseed_empty`): warm-started from that partition and kept if FALCON's objective is
    lower. This is the move of a fine class from where it is redundant to where it splits real structure, which
    the M-step alone almost never makes."""
    min_cells = config.min_subtype_cells(coarse.size)
    for round_ in range(config.reseed_rounds):
        plan = reseed_empty(scores, best.labels, best.relationship, min_cells, random_state + round_)
        if plan is None:
            break
        labels, parents = plan
        order = np.argsort(parents, kind="stable")  # the trainer's initial M lists fine classes by parent
        new_index = np.empty_like(order)
        new_index[order] = np.arange(order.size)
        result = train_falcon(
            x,
            coarse,
            graph,
            n_fine=parents.size,
            n_coarse=n_coarse,
            initial_fine_per_coarse=np.bincount(parents, minlength=n_coarse),
            initial_labels=new_index[labels],
            config=config,
            random_state=random_state + round_ + 1,
            device=device,
            progress=progress,
        )
        for stage, seconds in result.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
        kept = result.objective["total"] < best.objective["total"]
        logger.info(
            "re-seeded %d subtype(s) with < %d cells: objective %.4f vs %.4f (%s)",
            int((np.bincount(best.labels, minlength=parents.size) < min_cells).sum()),
            min_cells,
            result.objective["total"],
            best.objective["total"],
            "kept" if kept else "not kept",
        )
        if not kept:
            break
        best = result
    return best


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


def _check_streamable(config: FalconConfig, *, n_features: int, n_cells: int) -> None:
    """A row-block source is only ever read through its PCs: refuse settings that need the matrix itself."""
    if not config.reads_genes_through_pcs(n_features, n_cells):
        space = config.resolved_neighbor_space(n_features, n_cells)
        raise ValueError(
            f"A matrix read in row blocks is used through its principal components, but representation="
            f"{config.representation!r} and neighbor_space={space!r} need it whole. Use representation='pca' "
            "with neighbor_space='representation', or pass the matrix in memory."
        )


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

    ``data`` may already be a tensor on ``device`` (any float dtype); it is not copied then, and with
    ``representation="pca"`` only its principal-component scores are kept once they are computed. It may also be
    a :class:`~falcon_sc.core.row_blocks.RowBlocks` source, a matrix never held whole (``representation="pca"`` and
    neighbours on those PCs): PCs are fitted and every cell projected in passes over its blocks, and the rest of
    the run holds only per-cell arrays (scores, neighbours, probabilities).

    With ``config.representation == "pca"`` the matrix is first projected on its top principal components
    (``n_components``; of z-scored features when ``config.standardize``), which the classifier then sees
    and in which neighbours are searched (by cosine similarity, within each coarse class). ``fixed`` (a
    ``(K_F, K_C)`` relationship) keeps M constant; otherwise M is learned. ``coarse_blocks`` splits the coarse
    labels into datasets with their own taxonomies (see :func:`~falcon_sc.core.train_falcon`); neighbours are then
    searched within each (dataset, coarse class), since every such pair has its own label.
    ``initial_fine_per_coarse`` seeds the initial M (see :func:`~falcon_sc.core.train_falcon`).

    With ``config.n_restarts > 1`` the alternating optimisation runs that many times from different seeds
    (the first is ``random_state``) and the run with the lowest final objective (λ3 =
    ``config.restart_lambda_reg``) is kept: the objective is FALCON's own, so the choice uses no fine labels.
    Above ``config.restart_max_cells`` cells a single run is made. ``restart_agreement`` of the result is the
    mean adjusted Rand index between the fine labels of every two restarts.

    ``n_jobs`` threads (``None``: one below ``core.threads.PARALLEL_MIN_CELLS`` cells, torch's current setting
    above; ``-1``: every core) compute the PCA and the neighbour search on the CPU; k-means and training run on
    ``config.training_threads`` (one by default, see ``core.threads``). The caller's thread settings are restored
    afterwards. ``progress`` shows one bar over the epochs of every run (``True``), none (``False``), or adds them
    to a caller's :class:`~falcon_sc.core.progress.EpochProgress`.
    """
    threads = feature_threads(n_jobs, len(coarse))
    # one bar over every run of this call (restarts, re-seeded runs) unless the caller shares one
    main_process = distributed.world()[0] == 0
    with cpu_threads(config.training_threads), epoch_progress(progress, main_process=main_process) as bar:
        device = torch.device(device)
        t0 = time.perf_counter()
        # PCA and the neighbour search: large matrix products, which gain from the threads the caller allows
        with cpu_threads(threads):
            if isinstance(data, RowBlocks):
                _check_streamable(config, n_features=data.shape[1], n_cells=len(coarse))
                x = data
            else:
                x = torch.as_tensor(data).to(device)
                if not x.is_floating_point():
                    x = x.float()
            # CUDA searches every class exactly; on the CPU very large classes are searched approximately.
            exact_max = None if device.type == "cuda" else config.knn_exact_max_cells
            knn = dict(device=device, exact_max_group=exact_max, random_state=random_state)
            pca = None
            # Global PCs spend most of their variance on what tells the coarse classes apart, so neighbours may
            # also be searched on PCs computed inside each class (neighbor_space, see config).
            n_features = x.shape[1]
            space = config.resolved_neighbor_space(n_features, len(coarse))
            clustering = config.resolved_warm_start_clustering(n_features, len(coarse))
            class_scores = None
            if space in ("class_pca", "combined"):
                class_scores = class_pca_scores(x, coarse, config.class_pcs, max_value=config.max_value)
                logger.info(
                    "neighbours searched on %d PCs computed inside each coarse class%s",
                    config.class_pcs,
                    " next to the global ones" if space == "combined" else "",
                )
            if config.representation == "pca":
                pca = fit_pca(
                    x, n_components(config, n_fine), standardize=config.standardize, max_value=config.max_value
                )
                scores = pca.transform(x)
                del x, data  # the gene matrix is no longer needed (frees it unless the caller holds it)
                # The classifier sees whitened scores: the weaker components carry the fine structure, and an MLP
                # whose inputs vary little along them keeps all cells of a coarse class at the same prediction.
                # (Neighbours stay on the unwhitened scores, where cosine similarity is far less noisy.)
                x = pca.whiten(scores)
            elif config.representation == "within":
                fit = fit_within_class_pca(
                    x,
                    torch.as_tensor(coarse),
                    n_components(config, n_fine),
                    standardize=config.standardize,
                    max_value=config.max_value,
                )
                pca, scores = fit.projection, fit.within_scores
                x = pca.whiten(pca.transform(x))  # drops the gene matrix (unless the caller holds it)
                del data
            else:  # "genes"
                scores = x
            if space == "combined":
                search = combined_scores(torch.as_tensor(scores), class_scores, coarse)
            else:
                search = scores if class_scores is None else class_scores
            metric = config.resolved_neighbor_metric(n_features)
            offset_axis = config.resolved_neighbor_offset_axis(n_features)
            graph = within_group_neighbors(
                search, coarse, config.n_neighbors, metric=metric, offset_axis=offset_axis, **knn
            )
            del search, class_scores
        t_knn = time.perf_counter() - t0
        logger.info("within-class neighbours: %.2f s", t_knn)
        single = coarse_blocks is None or len(coarse_blocks) == 1
        warm = config.warm_start != "none" and (single or fixed is None)
        if warm and fixed is None and config.relationship_init != "proportional":
            raise ValueError("warm_start needs relationship_init='proportional' (the M it starts from).")
        # Several datasets: allocation and k-means run on the first dataset's taxonomy, into which every other
        # dataset's cells are placed by their nearest class (joint_start derives the other datasets' M from that).
        n_first = n_coarse if single else coarse_blocks[0]
        proxy = (
            coarse if single or not warm else first_dataset_classes(x, torch.as_tensor(coarse), n_first).cpu().numpy()
        )
        warm_counts = initial_fine_per_coarse
        allocation = None
        t0 = time.perf_counter()
        if fixed is None and (warm or (single and config.allocation != "size")):
            allocation = initial_counts(scores, proxy, n_first, n_fine, config, initial_fine_per_coarse, random_state)
            warm_counts = allocation.counts
            logger.info("initial fine classes per coarse class (%s): %s", config.allocation, warm_counts.tolist())
        elif fixed is not None:
            allocation = Allocation.given(np.asarray(fixed).astype(bool).sum(0)[:n_first])
        if config.neighbor_share is not None:
            sizes = np.bincount(coarse, minlength=n_coarse)
            fine_per_group = _fine_per_group(sizes, n_fine, fixed, warm_counts, coarse_blocks)
            counts = subtype_neighbor_counts(
                sizes, fine_per_group, config.n_neighbors, config.neighbor_share, config.n_sampled_neighbors
            )
            graph = fewer_neighbors(graph, coarse, counts)
            logger.info("neighbours per cell in each coarse class: %s", counts.tolist())
        start_relationship = fixed if fixed is not None else (fixed_relationship(warm_counts) if warm else None)
        # "start": the allocation and the warm starts' partitions (summed over restarts)
        timings: dict[str, float] = {"start": time.perf_counter() - t0}

        def start(restart: int, seed: int) -> dict:
            """How a restart starts: warm (k-means under the allocated M) or cold (random classifier, M from
            class sizes); "alternate" makes every second restart cold and lets the objective choose."""
            if not warm or (config.warm_start == "alternate" and restart % 2 == 1):
                counts = warm_counts if config.warm_start == "none" else initial_fine_per_coarse
                return {"initial_fine_per_coarse": counts, "initial_labels": None}
            if not single:
                relationship, labels = joint_start(
                    scores, coarse, proxy, start_relationship, tuple(coarse_blocks), seed,
                    time_limit=config.solver_time_limit,
                )  # fmt: skip
                return {"start_relationship": relationship, "initial_labels": labels}
            if clustering == "spectral":
                labels = spectral_within_classes(graph, coarse, start_relationship, seed)
            else:
                labels = kmeans_within_classes(scores, coarse, start_relationship, seed)
            return {"initial_fine_per_coarse": warm_counts, "initial_labels": labels}

        n_restarts = config.n_restarts
        if config.restart_max_cells is not None and len(coarse) > config.restart_max_cells and n_restarts > 1:
            logger.info("%d cells > restart_max_cells=%d: one run, no restarts", len(coarse), config.restart_max_cells)
            n_restarts = 1
        seeds = [random_state] + [
            int(s.generate_state(1)[0]) for s in np.random.SeedSequence(random_state).spawn(n_restarts - 1)
        ]
        best = None
        objectives, labels = [], []
        for restart, seed in enumerate(seeds):
            t0 = time.perf_counter()
            how = start(restart, seed)
            timings["start"] += time.perf_counter() - t0
            result = train_falcon(
                x,
                coarse,
                graph,
                n_fine=n_fine,
                n_coarse=n_coarse,
                fixed=fixed,
                coarse_blocks=coarse_blocks,
                **how,
                config=config,
                random_state=seed,
                device=device,
                progress=bar,
            )
            objectives.append(result.objective["total"])
            labels.append(result.labels)
            logger.info("restart %d: final objective %.4f", restart, objectives[-1])
            for stage, seconds in result.timings.items():  # stage times summed over all restarts
                timings[stage] = timings.get(stage, 0.0) + seconds
            if best is None or objectives[-1] < best.objective["total"]:
                best, kept = result, restart
        if config.reseed_rounds > 0 and single and fixed is None:
            reseeded = _reseeded(best, x, coarse, graph, scores, timings, config, n_coarse, random_state, device, bar)
            kept = kept if reseeded is best else None  # a re-seeded run is none of the restarts
            best = reseeded
        pairs = [adjusted_rand_score(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :]]
        mass = None
        if config.coarse_check_neighbors > 0:
            t0 = time.perf_counter()
            with cpu_threads(threads):
                dataset_of_cell = np.searchsorted(np.cumsum(coarse_blocks or [n_coarse]), coarse, side="right")
                mass = neighbor_coarse_mass(
                    scores,
                    best.probs,
                    best.relationship,
                    coarse,
                    dataset_of_cell,
                    config.coarse_check_neighbors,
                    random_state,
                )
            timings["coarse_check"] = time.perf_counter() - t0
        separation = None
        if config.support_null_draws > 0:
            t0 = time.perf_counter()
            statistic, p_value = separation_test(
                torch.as_tensor(scores).float().cpu().numpy(),
                best.labels,
                best.relationship.argmax(1),
                n_null=config.support_null_draws,
                random_state=random_state,
            )
            separation = np.column_stack([statistic, p_value])
            timings["separation_test"] = time.perf_counter() - t0
        return dataclasses.replace(
            best,
            classifier=FineClassifier(best.classifier.network, pca.to("cpu") if pca is not None else None),
            restart_objectives=objectives,
            restart_agreement=float(np.mean(pairs)) if pairs else None,
            other_restart_labels=[other for i, other in enumerate(labels) if i != kept],
            neighbor_coarse_mass=mass,
            separation=separation,
            allocation=allocation,
            timings={"neighbors": t_knn, **timings},
        )
