"""Cells whose coarse label the data contradict, from the check ``discover_subtypes`` stores."""

from __future__ import annotations

import anndata as ad
import pandas as pd

from .._adata.results import stored_result
from .._docs import doc_adata_result, doc_key, doc_params


@doc_params(doc_adata_result=doc_adata_result, doc_key=doc_key)
def suspect_labels(adata: ad.AnnData, *, key: str = "falcon", threshold: float = 0.5) -> pd.DataFrame:
    """Cells whose coarse label looks wrong: their neighbours put less than ``threshold`` of the classifier's
    mass on the cell's own coarse class.

    The classifier is trained on every cell's coarse label, so its prediction for a mislabelled cell follows
    the wrong label; the check therefore reads the predictions of the cell's nearest cells over all coarse
    classes (``obs[f"{key}_coarse_agreement"]``, written by :func:`~falcon_sc.tl.discover_subtypes`). On
    simulated data with 5 % of the coarse labels flipped, the default threshold finds them with the recall and
    precision given in the README.

    Parameters
    ----------
    {doc_adata_result}
    {doc_key}
    threshold
        Largest agreement, in [0, 1], at which a cell is listed.

    Returns
    -------
    One row per suspected cell (indexed like ``adata.obs``), lowest agreement first: ``coarse`` (its label),
    ``suggested`` (the coarse class its neighbours point to) and ``agreement``.
    """
    params = stored_result(adata, key)["params"]
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}.")
    column = f"{key}_coarse_agreement"
    if column not in adata.obs:
        raise KeyError(
            f"adata.obs has no {column!r}: the run under {key!r} made no coarse-label check (a transferred result, "
            "or coarse_check_neighbors=0). Run falcon_sc.tl.discover_subtypes with the default options."
        )
    coarse_key = params["coarse_key"]
    table = pd.DataFrame(
        {
            "coarse": adata.obs[coarse_key] if isinstance(coarse_key, str) and coarse_key in adata.obs else pd.NA,
            "suggested": adata.obs[f"{key}_suggested_coarse"],
            "agreement": adata.obs[column],
        },
        index=adata.obs_names,
    )
    return table[table["agreement"] < threshold].sort_values("agreement", kind="stable")
