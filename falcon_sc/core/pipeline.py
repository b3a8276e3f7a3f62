"""One FALCON run on arrays: neighbour search, then the alternating optimisation."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from .classifier import FineClassifier
from .config import FalconConfig
from .neighbors import within_group_neighbors
from .pca import fit_pca
from .trainer import FalconResult, train_falcon

logger = logging.getLogger(__name__)


def n_components(config: FalconConfig, n_fine: int) -> int:
    """PCs used with ``representation="pca"``: ``config.n_pcs``, or ``min(50, max(10, K_F + 1))`` if unset."""
    return config.n_pcs if config.n_pcs is not None else min(50, max(10, n_fine + 1))


def run_falcon(
    data: np.ndarray | torch.Tensor,
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
    progress: bool = True,
) -> FalconResult:
    """FALCON on a dense ``(n_cells, n_features)`` matrix and integer coarse labels in ``[0, n_coarse)``.

    ``data`` may already be a tensor on ``device`` (any float dtype); it is not copied then, and with
    ``representation="pca"`` only its principal-component scores are kept once they are computed.

    With ``config.representation == "pca"`` the matrix is first projected on its top principal components
    (:func:`n_components`; of z-scored features when ``config.standardize``), which the classifier then sees
    and in which neighbours are searched (by cosine similarity, within each coarse class). ``fixed`` (a
    ``(K_F, K_C)`` relationship) keeps M constant; otherwise M is learned. ``coarse_blocks`` splits the coarse
    labels into datasets with their own taxonomies (see :func:`~.trainer.train_falcon`); neighbours are then
    searched within each (dataset, coarse class), since every such pair has its own label.
    ``initial_fine_per_coarse`` seeds the initial M (see :func:`~.trainer.train_falcon`).

    With ``config.n_restarts > 1`` the alternating optimisation runs that many times from different seeds
    (the first is ``random_state``) and the run with the lowest final objective (λ3 =
    ``config.restart_lambda_reg``) is kept: the objective is FALCON's own, so the choice uses no fine labels.
    Above ``config.restart_max_cells`` cells a single run is made. ``restart_agreement`` of the result is the
    mean adjusted Rand index between the fine labels of every two restarts.
    """
    device = torch.device(device)
    t0 = time.perf_counter()
    x = torch.as_tensor(data).to(device)
    if not x.is_floating_point():
        x = x.float()
    # CUDA searches every class exactly; on the CPU very large classes are searched approximately.
    exact_max = None if device.type == "cuda" else config.knn_exact_max_cells
    knn = dict(device=device, exact_max_group=exact_max, random_state=random_state)
    pca = None
    if config.representation == "pca":
        pca = fit_pca(x, n_components(config, n_fine), standardize=config.standardize, max_value=config.max_value)
        scores = pca.transform(x)
        del x, data  # the gene matrix is no longer needed (frees it unless the caller holds it)
        graph = within_group_neighbors(scores, coarse, config.n_neighbors, **knn)
        # The classifier sees whitened scores: the weaker components carry the fine structure, and an MLP
        # whose inputs vary little along them keeps all cells of a coarse class at the same prediction.
        # (Neighbours stay on the unwhitened scores, where cosine similarity is far less noisy.)
        x = pca.whiten(scores)
    elif config.representation == "genes":
        graph = within_group_neighbors(x, coarse, config.n_neighbors, **knn)
    else:
        raise ValueError(f"Unknown representation {config.representation!r}; use 'genes' or 'pca'.")
    t_knn = time.perf_counter() - t0
    logger.info("within-class neighbours: %.2f s", t_knn)
    if config.n_restarts < 1:
        raise ValueError(f"n_restarts must be ≥ 1, got {config.n_restarts}.")
    n_restarts = config.n_restarts
    if config.restart_max_cells is not None and len(coarse) > config.restart_max_cells and n_restarts > 1:
        logger.info("%d cells > restart_max_cells=%d: one run, no restarts", len(coarse), config.restart_max_cells)
        n_restarts = 1
    seeds = [random_state] + [
        int(s.generate_state(1)[0]) for s in np.random.SeedSequence(random_state).spawn(n_restarts - 1)
    ]
    best = None
    objectives, labels = [], []
    timings: dict[str, float] = {}
    for restart, seed in enumerate(seeds):
        result = train_falcon(
            x,
            coarse,
            graph,
            n_fine=n_fine,
            n_coarse=n_coarse,
            fixed=fixed,
            coarse_blocks=coarse_blocks,
            initial_fine_per_coarse=initial_fine_per_coarse,
            config=config,
            random_state=seed,
            device=device,
            progress=progress,
        )
        objectives.append(result.objective["total"])
        labels.append(result.labels)
        logger.info("restart %d: final objective %.4f", restart, objectives[-1])
        for stage, seconds in result.timings.items():  # stage times summed over all restarts
            timings[stage] = timings.get(stage, 0.0) + seconds
        if best is None or objectives[-1] < best.objective["total"]:
            best = result
    best.classifier = FineClassifier(best.classifier.network, pca.to("cpu") if pca is not None else None)
    best.restart_objectives = objectives
    pairs = [adjusted_rand_score(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :]]
    best.restart_agreement = float(np.mean(pairs)) if pairs else None
    best.timings = {"neighbors": t_knn, **timings}
    best.neighbors = graph
    return best
