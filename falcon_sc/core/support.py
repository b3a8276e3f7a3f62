"""How well the data support each discovered subtype: reproducibility across independent runs."""

from __future__ import annotations

import numpy as np


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
