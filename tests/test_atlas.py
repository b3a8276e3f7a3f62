"""Atlases larger than memory: backed or lazy matrices read in row blocks, never densified whole."""

import anndata as ad
import numpy as np
import pytest
import torch
from conftest import FAST

import falcon_sc as fs
from falcon_sc._adata.preprocess import PreparedInput
from falcon_sc.core import get_config, run_falcon
from falcon_sc.core.pca import fit_pca
from falcon_sc.core.row_blocks import RowBlocks

# Above this many cells the class PCs are skipped, and a backed matrix is streamed: lowered so that 300 cells stream.
STREAM = dict(class_pcs_max_cells=100, **FAST)


@pytest.mark.parametrize("batch_key", [None, "batch"])
def test_streamed_seurat_v3_ranks_are_scanpys(batch_key):
    import scanpy as sc

    from falcon_sc._adata.hvg import seurat_v3_ranks
    from falcon_sc._adata.preprocess import row_blocks

    adata = fs.datasets.simulate_hierarchy(1200, 600, 3, 6, random_state=1)
    adata.obs["batch"] = np.random.default_rng(0).integers(3, size=adata.n_obs).astype(str)
    expected = sc.pp.highly_variable_genes(
        adata, n_top_genes=200, flavor="seurat_v3", batch_key=batch_key, inplace=False
    )["highly_variable_rank"].to_numpy()
    batches = np.zeros(adata.n_obs) if batch_key is None else adata.obs["batch"].astype("category").cat.codes.to_numpy()
    ranks = seurat_v3_ranks(lambda: row_blocks(adata.X, 100), adata.n_vars, batches, 200)  # 12 blocks, two passes
    np.testing.assert_array_equal(ranks, expected.astype(ranks.dtype))


def test_pca_over_row_blocks_equals_pca_of_the_tensor():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.gamma(0.5, 2.0, size=(500, 30)), dtype=torch.float32)
    source = RowBlocks(lambda: iter(x.split(64)), tuple(x.shape), x.device)
    streamed = fit_pca(source, 6, standardize=True, max_value=10.0)
    whole = fit_pca(x, 6, standardize=True, max_value=10.0, chunk_size=64)  # the same blocks
    for name in ("mean", "components", "scale", "feature_mean", "feature_scale"):
        torch.testing.assert_close(getattr(streamed, name), getattr(whole, name), rtol=0, atol=0)
    torch.testing.assert_close(streamed.transform(source), whole.transform(x, chunk_size=64), rtol=0, atol=0)


@pytest.fixture
def backed_file(small, tmp_path):
    path = tmp_path / "atlas.h5ad"
    small.write_h5ad(path)
    return path


def test_backed_matrix_is_streamed_in_passes_and_gives_the_in_memory_result(small, backed_file, monkeypatch):
    in_memory = small.copy()
    fs.tl.discover_subtypes(in_memory, "coarse", n_fine=5, n_top_genes=120, **STREAM)

    passes = []
    blocks = PreparedInput.blocks

    def counted(self, *args, **kwargs):
        passes.append(0)
        for block in blocks(self, *args, **kwargs):
            passes[-1] += block.shape[0]
            yield block

    def refused(self, *args, **kwargs):
        raise AssertionError("a backed matrix above class_pcs_max_cells must not be densified whole")

    monkeypatch.setattr(PreparedInput, "blocks", counted)
    monkeypatch.setattr(PreparedInput, "to_tensor", refused)
    backed = ad.read_h5ad(backed_file, backed="r")
    fs.tl.discover_subtypes(backed, "coarse", n_fine=5, n_top_genes=120, **STREAM)
    # two passes for the genes' moments, one for the mean, one for the covariance, one to project every cell
    assert passes == [small.n_obs] * 5
    np.testing.assert_array_equal(backed.obs["falcon"], in_memory.obs["falcon"])
    np.testing.assert_array_equal(backed.obsm["falcon_probs"], in_memory.obsm["falcon_probs"])


def test_dask_matrix_is_streamed_too(small):
    da = pytest.importorskip("dask.array")
    in_memory = small.copy()
    fs.tl.discover_subtypes(in_memory, "coarse", n_fine=5, n_top_genes=120, **STREAM)
    lazy = ad.AnnData(X=da.from_array(small.X.toarray(), chunks=(64, -1)), obs=small.obs.copy(), var=small.var.copy())
    fs.tl.discover_subtypes(lazy, "coarse", n_fine=5, n_top_genes=120, **STREAM)
    assert isinstance(lazy.X, da.Array)  # the input is left as it was
    np.testing.assert_array_equal(lazy.obs["falcon"], in_memory.obs["falcon"])


def test_zarr_store_read_lazily_is_streamed(small, tmp_path):
    pytest.importorskip("dask.array")
    zarr = pytest.importorskip("zarr")
    in_memory = small.copy()
    fs.tl.discover_subtypes(in_memory, "coarse", n_fine=5, n_top_genes=120, **STREAM)
    small.write_zarr(tmp_path / "atlas.zarr")
    store = zarr.open(tmp_path / "atlas.zarr", mode="r")
    # annotations in memory, the matrix as anndata's lazy (dask) reader gives it: chunks of CSR rows
    lazy = ad.AnnData(
        X=ad.experimental.read_elem_lazy(store["X"], chunks=(64, -1)),
        obs=ad.io.read_elem(store["obs"]),
        var=ad.io.read_elem(store["var"]),
    )
    fs.tl.discover_subtypes(lazy, "coarse", n_fine=5, n_top_genes=120, **STREAM)
    np.testing.assert_array_equal(lazy.obs["falcon"], in_memory.obs["falcon"])
    np.testing.assert_array_equal(lazy.obsm["falcon_probs"], in_memory.obsm["falcon_probs"])


def test_streamed_input_refuses_what_needs_the_whole_matrix(backed_file):
    backed = ad.read_h5ad(backed_file, backed="r")
    with pytest.raises(ValueError, match="n_fine='auto' reads every cell's genes at once"):
        fs.tl.discover_subtypes(backed, "coarse", n_fine="auto", n_top_genes=120, **STREAM)
    assert "falcon" not in backed.obs  # nothing written
    # the engine reads a row-block source only through its PCs
    x = torch.ones(10, 4)
    source = RowBlocks(lambda: iter([x]), (10, 4), x.device)
    config = get_config("default", representation="genes").resolved(n_genes=4, n_cells=10)
    with pytest.raises(ValueError, match="used through its principal components"):
        run_falcon(source, np.zeros(10, dtype=np.int64), n_coarse=1, n_fine=2, config=config, progress=False)


_MEASURE = """
import os, sys, threading, time, warnings
warnings.filterwarnings("ignore")
import anndata as ad, falcon_sc as fs

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

adata = ad.read_h5ad(sys.argv[1], backed="r")
before, peak, done = rss(), [0], threading.Event()
def sample():
    while not done.wait(0.005):
        peak[0] = max(peak[0], rss())
thread = threading.Thread(target=sample); thread.start()
fs.tl.discover_subtypes(adata, "coarse", n_fine=int(sys.argv[2]), class_pcs_max_cells=1000, progress=False)
done.set(); thread.join()
print(before, max(peak[0], rss()))
"""


def streamed_bound(n_cells: int, n_genes: int, n_fine: int, n_coarse: int, largest_class: int, k: int = 20) -> int:
    """The bound on the RSS a streamed run adds, in bytes, as docs/scale.md states it ("Atlases larger than
    memory")."""
    q = max(10, n_fine + 1)
    blocks = 16 * 8192 * n_genes + 16 * n_genes**2
    search = 8 * min(4096 * largest_class, 1 << 26)
    per_cell = 12 * q + 16 * n_fine + 8 * k + 8 * n_coarse
    return blocks + search + n_cells * per_cell + 100 * 2**20


def test_streamed_run_stays_under_the_stated_memory_bound(tmp_path):
    import subprocess
    import sys

    adata = fs.datasets.simulate_hierarchy(30_000, 2000, 10, 30, random_state=0, counts_layer=False)
    adata.write_h5ad(tmp_path / "atlas.h5ad")
    largest = int(adata.obs["coarse"].value_counts().max())
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tmp_path / "atlas.h5ad"), "30"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    before, peak = map(int, done.stdout.split()[-2:])
    bound = streamed_bound(30_000, 2000, 30, 10, largest)
    assert peak - before <= bound, (peak - before, bound)
