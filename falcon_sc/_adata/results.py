"""Reading a stored FALCON result back from an AnnData."""

from __future__ import annotations

import anndata as ad
import numpy as np


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
