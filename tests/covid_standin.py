"""A small AnnData with the schema of the COVID challenge file (cellxgene layout), for tests and CI."""

import numpy as np
import pandas as pd
import scanpy as sc

import falcon_sc as fs


def write_covid_standin(path, n_cells: int = 800, random_state: int = 0) -> None:
    """Simulated counts (6 coarse → 14 fine) under the real file's obs names; normalised X, counts in raw."""
    adata = fs.datasets.simulate_hierarchy(n_cells, 600, 6, 14, fine_separation=1.5, random_state=random_state)
    rng = np.random.default_rng(random_state)
    adata.obs = pd.DataFrame(
        {
            "cell_type": adata.obs["coarse"].cat.rename_categories(lambda c: f"type {c}"),
            "cell_state": adata.obs["fine"].cat.rename_categories(lambda f: f"state {f}"),
            "cell_compartment": pd.Categorical(np.where(adata.obs["coarse"].cat.codes < 3, "lymphoid", "myeloid")),
            "patient_id": pd.Categorical(rng.choice(["p1", "p2", "p3", "p4"], adata.n_obs)),
        },
        index=adata.obs_names,
    )
    del adata.layers["counts"]
    adata.uns = {}
    adata.raw = adata.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    adata.write_h5ad(path)
