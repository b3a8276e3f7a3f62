import numpy as np
import pytest
import scanpy as sc

from falcon_sc import datasets, metrics


def test_simulation_is_seeded_and_hierarchical():
    a = datasets.simulate_hierarchy(400, 300, 3, 7, random_state=5)
    b = datasets.simulate_hierarchy(400, 300, 3, 7, random_state=5)
    assert (a.X != b.X).nnz == 0
    assert a.shape == (400, 300)
    assert a.obs["fine"].nunique() == 7 and a.obs["coarse"].nunique() == 3
    tree = metrics.true_relationship(a.obs["fine"], a.obs["coarse"])  # raises unless a strict hierarchy
    assert tree.to_numpy().sum() == 7
    assert a.obs["fine"].value_counts().min() >= 5
    values = a.X.data
    assert np.all(values == np.round(values)) and values.min() > 0


def test_simulation_validates_arguments():
    with pytest.raises(ValueError, match="at least n_coarse"):
        datasets.simulate_hierarchy(100, 50, 5, 3)


def test_pbmc68k_counts_reproduce_the_stored_log_values():
    adata = datasets.pbmc68k_hierarchy()
    assert adata.shape == (700, 765)
    assert adata.obs["coarse"].nunique() == 6 and adata.obs["fine"].nunique() == 10
    assert set(adata.obs.loc[adata.obs["coarse"] == "T", "fine"].unique()) == {
        k for k, v in datasets.PBMC68K_COARSE.items() if v == "T"
    }
    reduced = sc.datasets.pbmc68k_reduced()
    counts = adata.X.toarray()
    assert np.all(counts == np.round(counts))
    # log1p(counts / n_counts · 1e4) recovers the stored values up to the rounding of counts
    relog = np.log1p(counts / reduced.obs["n_counts"].to_numpy()[:, None] * 1e4)
    assert np.corrcoef(relog.ravel(), reduced.raw.X.toarray().ravel())[0, 1] > 0.99
