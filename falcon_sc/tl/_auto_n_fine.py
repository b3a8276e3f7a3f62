"""``n_fine="auto"``: FALCON's own check of the data estimate of K_F, and the estimate's evidence in ``uns``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scanpy import logging as logg

from .._adata.labels import CoarseGroups
from ..core import FalconResult
from ..core.estimate import FineCountEstimate


def refine_n_fine(run: Callable[..., FalconResult], n_fine: int, upper: int) -> tuple[FalconResult, pd.DataFrame]:
    """FALCON's own check of a data estimate of K_F, which misses subtypes that are not separate clusters.

    ``run(n_fine=k)`` trains FALCON with restarts. One more fine class is kept while the restarts agree on the
    fine labels at least as well as with one class fewer (mean pairwise ARI): a subtype the classifier can
    learn is found again from every seed, a spurious split lands somewhere else each time. Stops at the first
    class that is not kept, or at ``upper``.
    """
    result = run(n_fine=n_fine)
    trials = [(n_fine, result.restart_agreement, True)]
    while result.restart_agreement is not None and n_fine < upper:
        candidate = run(n_fine=n_fine + 1)
        kept = candidate.restart_agreement >= result.restart_agreement
        trials.append((n_fine + 1, candidate.restart_agreement, kept))
        logg.info(
            f"    n_fine = {n_fine + 1}: restarts agree {candidate.restart_agreement:.3f} "
            f"(vs {result.restart_agreement:.3f}) → {'kept' if kept else 'not kept'}"
        )
        if not kept:
            break
        result, n_fine = candidate, n_fine + 1
    table = pd.DataFrame(trials, columns=["n_fine", "restart_agreement", "kept"])
    return result, table.astype({"restart_agreement": float})


def estimate_summary(
    estimate: FineCountEstimate, refinement: pd.DataFrame, kept: np.ndarray, groups: CoarseGroups, bounds
) -> dict:
    """The K_F estimate and its evidence, per (dataset, coarse class), as stored in ``uns``: the data's count
    of subtypes (``data_estimate``) next to the count in the result that was kept (``n_subtypes``), which
    FALCON's refinement and M-step may have changed."""
    datasets = groups.datasets or [""]
    names = [(d, c) for d, coarse in zip(datasets, groups.coarse_names, strict=True) for c in coarse]
    best = np.where(np.isnan(estimate.excess).all(1), np.nan, np.nanmax(np.nan_to_num(estimate.excess, nan=-1), 1))
    table = pd.DataFrame(
        {
            "coarse": [c for _, c in names],
            "n_cells": estimate.n_cells,
            "data_estimate": estimate.per_group,
            "n_subtypes": np.asarray(kept, dtype=np.int64),
            "best_excess_silhouette": best,
        },
        index=[f"{d}: {c}" if d else c for d, c in names],
    )
    if groups.datasets:
        table.insert(0, "dataset", [d for d, _ in names])
    summary = {
        "n_fine": int(refinement["n_fine"][refinement["kept"]].max()),
        "data_estimate": int(estimate.n_fine),
        "unclipped": int(estimate.unclipped),
        "method": "k-means silhouette in excess of a Gaussian null, per coarse class (falcon_sc.core.estimate)",
        "per_coarse": table,
        # rows: groups as in per_coarse; columns: k = 2, 3, …; NaN where k was not tried
        "excess_silhouette": estimate.excess,
        "silhouette": estimate.silhouette,
        # FALCON runs at the data estimate and above: agreement between restarts, and whether K_F was kept
        "refinement": refinement,
    }
    if bounds is not None:
        summary["bounds"] = np.asarray(bounds, dtype=np.int64)
    return summary
