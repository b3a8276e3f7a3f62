"""Build ``falcon_sc/datasets/pbmc3k_hierarchy.h5ad``, the labeled dataset bundled for the demo.

    python data-raw/pbmc3k_hierarchy.py ../shared/data/pbmc3k_labeled.h5ad

Input: 10x Genomics' public pbmc3k counts (2,638 cells) with the labels of the Seurat guided-clustering tutorial,
as distributed in the data-raw folder of the MIT-licensed clustifyr R package. Kept: the 2,000 most variable
genes (scanpy's seurat_v3 flavour on the counts), integer counts as sparse CSR, ``obs["cell_type_coarse"]`` and
``obs["cell_type_fine"]``, and each cell's total over all 13,714 genes (``obs["n_counts"]``).
"""

from __future__ import annotations

import sys

import anndata as ad
import numpy as np
import scanpy as sc
from scipy import sparse


def main(path: str, out: str = "falcon_sc/datasets/pbmc3k_hierarchy.h5ad") -> None:
    full = ad.read_h5ad(path)
    sc.pp.highly_variable_genes(full, n_top_genes=2000, flavor="seurat_v3")
    reduced = full[:, full.var["highly_variable"].to_numpy()]
    counts = sparse.csr_matrix(reduced.X, dtype=np.float32)
    obs = reduced.obs[["cell_type_coarse", "cell_type_fine", "n_counts"]].copy()
    for key in ("cell_type_coarse", "cell_type_fine"):
        obs[key] = obs[key].astype("category")
    bundled = ad.AnnData(counts, obs=obs, var=reduced.var[[]].copy())
    bundled.uns["source"] = (
        "10x Genomics pbmc3k counts with the Seurat guided-clustering tutorial labels, as distributed in the "
        "data-raw folder of the clustifyr R package (MIT licence); reduced to its 2,000 seurat_v3 highly "
        "variable genes by data-raw/pbmc3k_hierarchy.py"
    )
    bundled.write_h5ad(out, compression="gzip")


if __name__ == "__main__":
    main(*sys.argv[1:])
