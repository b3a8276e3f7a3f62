"""``use_rep``: discovery, saved models and the CLI on an embedding (e.g. batch-corrected) instead of genes."""

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from conftest import FAST, FAST_OPTIONS
from scipy import sparse
from sklearn.metrics import adjusted_rand_score

import falcon_sc as fs


@pytest.fixture(scope="module")
def batched():
    """900 cells, 3 coarse → 6 fine, in two batches: batch 1 has 30 genes at 8× their expression (a batch effect
    stronger than the fine differences). ``obsm["X_corrected"]``: 20 PCs of the same cells without the batch
    effect, standing for a batch-corrected embedding (scVI, Harmony)."""
    adata = fs.datasets.simulate_hierarchy(900, 300, 3, 6, fine_separation=2.0, random_state=5)
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 2, adata.n_obs)
    clean = adata.copy()
    clean.X = clean.X.toarray()
    sc.pp.normalize_total(clean, target_sum=1e4)
    sc.pp.log1p(clean)
    sc.pp.scale(clean)
    sc.pp.pca(clean, n_comps=20)
    counts = adata.X.toarray()
    counts[np.ix_(batch == 1, rng.choice(adata.n_vars, 30, replace=False))] *= 8
    adata.X = sparse.csr_matrix(counts)
    adata.layers["counts"] = adata.X.copy()
    adata.obs["batch"] = batch.astype(str)
    adata.obsm["X_corrected"] = clean.obsm["X_pca"]
    return adata


def _batch_split(adata, labels) -> float:
    """Mean over coarse classes of the ARI between batch and subtype: 1 = subtypes are the batches."""
    coarse = adata.obs["coarse"]
    return float(
        np.mean(
            [adjusted_rand_score(adata.obs["batch"][coarse == c], labels[coarse == c]) for c in coarse.cat.categories]
        )
    )


def test_subtypes_split_by_batch_on_genes_and_not_on_a_corrected_embedding(batched):
    on_genes = fs.tl.discover_subtypes(batched, "coarse", n_fine=6, copy=True, **FAST)
    assert _batch_split(batched, on_genes.obs["falcon"]) > 0.5  # the batch effect wins inside the classes

    corrected = fs.tl.discover_subtypes(batched, "coarse", n_fine=6, use_rep="X_corrected", copy=True, **FAST)
    assert abs(_batch_split(batched, corrected.obs["falcon"])) < 0.05
    assert adjusted_rand_score(batched.obs["fine"], corrected.obs["falcon"]) > 0.95
    params = corrected.uns["falcon"]["params"]
    assert params["use_rep"] == "X_corrected" and params["input_kind"] == "embedding"
    assert params["config"]["standardize"] is False  # dimensions used as they are
    assert list(corrected.uns["falcon"]["genes"][:2]) == ["X_corrected[0]", "X_corrected[1]"]


def test_a_saved_model_reads_the_same_embedding(batched, tmp_path):
    out, model = fs.tl.discover_subtypes(
        batched, "coarse", n_fine=6, use_rep="X_corrected", copy=True, return_model=True, **FAST
    )
    model.save(tmp_path / "model")
    loaded = fs.FalconModel.load(tmp_path / "model")
    assert loaded.use_rep == "X_corrected"
    predicted = loaded.predict(batched, coarse_key="coarse", copy=True)
    np.testing.assert_array_equal(predicted.obs["falcon"].to_numpy(), out.obs["falcon"].to_numpy())

    without = ad.AnnData(batched.X.copy(), obs=batched.obs.copy())
    with pytest.raises(KeyError, match="X_corrected"):
        loaded.predict(without)
    narrower = without.copy()
    narrower.obsm["X_corrected"] = batched.obsm["X_corrected"][:, :10]
    with pytest.raises(ValueError, match="10 dimensions, but the model was trained on 20"):
        loaded.predict(narrower)
    with pytest.raises(ValueError, match="leave layer out"):
        loaded.predict(batched, layer="counts")
    assert "falcon" not in narrower.obs and "falcon" not in without.obs


def test_use_rep_errors_name_the_fix_and_leave_adata_unchanged(batched):
    adata = batched.copy()
    with pytest.raises(KeyError, match=r"not a key of adata.obsm \(available: \['X_corrected'\]\)"):
        fs.tl.discover_subtypes(adata, "coarse", n_fine=6, use_rep="X_scVI", **FAST)
    with pytest.raises(ValueError, match=r"\['layer', 'batch_key'\] would have no effect"):
        fs.tl.discover_subtypes(adata, "coarse", n_fine=6, use_rep="X_corrected", layer="counts", batch_key="batch")
    adata.obsm["X_bad"] = adata.obsm["X_corrected"].copy()
    adata.obsm["X_bad"][3, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite values in 1 cells"):
        fs.tl.discover_subtypes(adata, "coarse", n_fine=6, use_rep="X_bad", **FAST)
    with pytest.raises(ValueError, match=r"anndata\.concat"):
        fs.tl.discover_subtypes([adata, adata.copy()], "coarse", n_fine=6, use_rep="X_corrected", **FAST)
    assert "falcon" not in adata.obs and "falcon" not in adata.uns


def test_cli_discover_takes_use_rep(batched, tmp_path):
    from falcon_sc import cli

    batched.write_h5ad(tmp_path / "in.h5ad")
    arguments = ["discover", tmp_path / "in.h5ad", "-o", tmp_path / "out.h5ad", "--coarse-key", "coarse"]
    arguments += ["--n-fine", "6", "--use-rep", "X_corrected", "--quiet", *FAST_OPTIONS]
    assert cli.main([str(a) for a in arguments]) == 0
    assert ad.read_h5ad(tmp_path / "out.h5ad").uns["falcon"]["params"]["use_rep"] == "X_corrected"
