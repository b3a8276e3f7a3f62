"""Reading a stored FALCON result back from an AnnData."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd


def stored_result(adata: ad.AnnData, key: str) -> dict:
    """``adata.uns[key]`` of a discover_subtypes run, or a KeyError saying how to get one."""
    if key not in adata.uns or "relationship" not in adata.uns[key] or key not in adata.obs:
        raise KeyError(f"adata holds no FALCON result under {key!r}; run falcon_sc.tl.discover_subtypes first.")
    return adata.uns[key]


def parent_of_cells(adata: ad.AnnData, key: str) -> np.ndarray:
    """Each cell's coarse class as the parent of its subtype in ``uns[key]["relationship"]``.

    For one dataset this is the cell's own coarse label; after a run on several datasets it is the parent in
    the dataset the top-level relationship describes, so every cell is grouped under one taxonomy."""
    parent = stored_result(adata, key)["relationship"]["coarse"].astype(str)
    return parent.reindex(adata.obs[key].astype(str)).to_numpy()


def suspect_table(adata: ad.AnnData, key: str, threshold: float) -> pd.DataFrame:
    """The cells whose ``obs[f"{key}_coarse_agreement"]`` is below ``threshold`` (see
    :func:`falcon_sc.tl.suspect_labels`): their label, the suggested class and the agreement, lowest first."""
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
