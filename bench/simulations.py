"""The simulated benchmark settings shared by the bench scripts (``falcon_sc.datasets.simulate_hierarchy``), and
the scored run of the scripts that compare one option's values on them."""

from __future__ import annotations

import time

import anndata as ad

import falcon_sc as fs
from falcon_sc import metrics

#: name → keyword arguments of simulate_hierarchy
SETTINGS = {
    "sim-4x10": dict(n_cells=3000, n_genes=2000, n_coarse=4, n_fine=10, random_state=1),
    "sim-8x20": dict(n_cells=6000, n_genes=2000, n_coarse=8, n_fine=20, imbalance=1.0, random_state=2),
    # The paper's shape: 27 coarse → 83 fine, 20,000 cells, imbalanced subtypes. random_state 4 is the first
    # seed (of 0–7) with subtypes below 1 % of their coarse class (two); every subtype has ≥ 15 cells.
    "sim-27x83": dict(
        n_cells=20000, n_genes=2000, n_coarse=27, n_fine=83, imbalance=1.5, min_cells_per_fine=15, random_state=4
    ),
    # Fine differences small against the noise: k-means with the true counts reaches ACC ≈ 70.
    "sim-hard": dict(n_cells=6000, n_genes=2000, n_coarse=6, n_fine=18, fine_separation=0.45, random_state=4),
    # A targeted panel: 40 genes, fine types differing in cell size (total counts).
    "sim-panel": dict(
        n_cells=6000,
        n_genes=40,
        n_coarse=6,
        n_fine=18,
        de_fraction=0.25,
        fine_separation=0.4,
        library_size_effect=0.5,
        random_state=5,
    ),
}


def simulate(name: str) -> ad.AnnData:
    """The simulated dataset ``name`` (a key of :data:`SETTINGS`), with ``obs["coarse"]`` and ``obs["fine"]``."""
    return fs.datasets.simulate_hierarchy(**SETTINGS[name])


def scored_run(name: str, adata: ad.AnnData, seed: int, column: str, **option) -> dict:
    """A default-preset run on a copy of the simulated ``adata`` (setting ``name``) with one ``option`` set, e.g.
    ``neighbor_metric="euclidean"``: its row (setting, genes, seed, the option's value under ``column``, ACC,
    ARI, seconds), printed as it finishes."""
    ((_, value),) = option.items()
    work = adata.copy()
    start = time.perf_counter()
    n_fine = adata.obs["fine"].nunique()
    fs.tl.discover_subtypes(work, "coarse", n_fine=n_fine, random_state=seed, progress=False, **option)
    fine, labels = work.obs["fine"], work.obs["falcon"]
    row = {
        "setting": name,
        "genes": adata.n_vars,
        "seed": seed,
        column: value,
        "ACC": 100 * metrics.cluster_accuracy(fine, labels),
        "ARI": 100 * metrics.adjusted_rand_index(fine, labels),
        "seconds": time.perf_counter() - start,
    }
    print(f"  {name} seed {seed} {value}: ACC {row['ACC']:.1f} ARI {row['ARI']:.1f}", flush=True)
    return row
