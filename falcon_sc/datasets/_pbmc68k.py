from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse

#: Coarse class of each ``bulk_labels`` type: the five CD4/CD8 T subsets form "T"; the rest stand alone.
PBMC68K_COARSE = {
    "CD4+/CD25 T Reg": "T",
    "CD4+/CD45RA+/CD25- Naive T": "T",
    "CD4+/CD45RO+ Memory": "T",
    "CD8+ Cytotoxic T": "T",
    "CD8+/CD45RA+ Naive Cytotoxic": "T",
    "CD14+ Monocyte": "Monocyte",
    "CD19+ B": "B",
    "CD34+": "CD34+",
    "CD56+ NK": "NK",
    "Dendritic": "Dendritic",
}


def pbmc68k_hierarchy() -> ad.AnnData:
    """scanpy's bundled ``pbmc68k_reduced`` with raw counts restored and a two-level label hierarchy.

    How it is made: ``sc.datasets.pbmc68k_reduced()`` (700 cells; its ``raw`` holds 765 genes,
    log1p-normalised to 10,000 counts per cell) is read from scanpy's package data, no download needed.
    Counts are recovered as ``round(expm1(raw.X) * n_counts / 1e4)`` with ``obs["n_counts"]`` the cell's
    total over all genes of the original data, and stored as CSR float32 in ``X`` and ``layers["counts"]``;
    ``layers["log1p"]`` keeps the stored values, normalised on all genes before they were reduced to these 765
    (what FALCON should read here: normalising the 765 genes' own counts lets a few genes set each cell's scale,
    and ``discover_subtypes`` warns about it). ``obs["fine"]`` is ``bulk_labels``
    (10 types); ``obs["coarse"]`` maps the five CD4/CD8 T subsets to ``"T"`` and keeps the other five types
    as their own class (``PBMC68K_COARSE``), giving 6 coarse and 10 fine classes. The ``umap``/``pca``
    embeddings and ``bulk_labels`` colours of the original object are kept.
    """
    reduced = sc.datasets.pbmc68k_reduced()
    raw = reduced.raw.to_adata()
    log_values = raw.X.toarray() if sparse.issparse(raw.X) else np.asarray(raw.X)
    totals = reduced.obs["n_counts"].to_numpy(dtype=np.float64)[:, None]
    counts = np.round(np.expm1(log_values) * totals / 1e4).astype(np.float32)
    fine = reduced.obs["bulk_labels"].astype(str)
    obs = pd.DataFrame(
        {
            "coarse": pd.Categorical(fine.map(PBMC68K_COARSE)),
            "fine": pd.Categorical(fine),
            "n_counts": reduced.obs["n_counts"].to_numpy(),
        },
        index=reduced.obs_names,
    )
    adata = ad.AnnData(X=sparse.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=raw.var_names))
    adata.layers["counts"] = adata.X.copy()
    adata.layers["log1p"] = sparse.csr_matrix(log_values.astype(np.float32))
    for key in ("X_umap", "X_pca"):
        if key in reduced.obsm:
            adata.obsm[key] = reduced.obsm[key]
    return adata
