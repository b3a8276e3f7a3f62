"""The simulated benchmark settings shared by the bench scripts (``falcon_sc.datasets.simulate_hierarchy``), and
the scored run of the scripts that compare one option's values on them."""

from __future__ import annotations

import time

import anndata as ad

import falcon_sc as fs
from falcon_sc import metrics

# A targeted panel's fine types: a quarter of the genes shifted, weakly, and cell size (total counts) differing.
_PANEL = dict(de_fraction=0.25, fine_separation=0.4, library_size_effect=0.5)
# Depth of real panels of droplet data: the median cell's molecules of the real panel named, and the share of
# zeros of those panels (pbmc3k's 40, 100 and 300 most variable genes: 79, 84 and 86 %; Zeisel's 200 genes 82 %)
# from counts spread over genes as unevenly as theirs. Uncalibrated (5,000 molecules per cell, 1–4 % zeros), the
# simulated twin of a real 33-gene panel scored ACC 71 where the real panel scored 40.
_DEPTH = dict(gene_mean_spread=2.0, dispersion=0.5)
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
    # A targeted panel: 40 genes, fine types differing in cell size (total counts), as deep as pbmc3k's 40-gene one.
    "sim-panel": dict(
        n_cells=6000, n_genes=40, n_coarse=6, n_fine=18, **_PANEL, **_DEPTH, mean_library_size=36, random_state=5
    ),
}
#: Panel settings made to check options found on sim-panel (none used for tuning).
PANEL_CHECKS = {
    "check-panel-40": dict(
        n_cells=6000, n_genes=40, n_coarse=6, n_fine=18, **_PANEL, **_DEPTH, mean_library_size=36, random_state=6
    ),
    "check-panel-100": dict(
        n_cells=6000,
        n_genes=100,
        n_coarse=6,
        n_fine=18,
        **{**_PANEL, "de_fraction": 0.2},
        **_DEPTH,
        mean_library_size=55,
        random_state=7,
    ),
    "check-panel-300": dict(
        n_cells=6000,
        n_genes=300,
        n_coarse=5,
        n_fine=20,
        de_fraction=0.1,
        fine_separation=0.5,
        imbalance=1.0,
        **_DEPTH,
        mean_library_size=102,
        random_state=8,
    ),
    # the shape and depth of a small imaging panel of tissue (7 → 31, 33 genes, 163 molecules in the median cell):
    # above 0.7 molecules per gene, where target_sum="auto" takes the median total
    "check-panel-33": dict(
        n_cells=5000,
        n_genes=33,
        n_coarse=7,
        n_fine=31,
        **_PANEL,
        **_DEPTH,
        mean_library_size=163,
        imbalance=1.0,
        random_state=10,
    ),
    "check-60-no-size": dict(
        n_cells=4000,
        n_genes=60,
        n_coarse=4,
        n_fine=12,
        de_fraction=0.25,
        fine_separation=0.5,
        **_DEPTH,
        mean_library_size=45,
        random_state=9,
    ),
    "check-150": dict(
        n_cells=1500,
        n_genes=150,
        n_coarse=3,
        n_fine=9,
        fine_separation=1.0,
        **_DEPTH,
        mean_library_size=70,
        random_state=4,
    ),
    "check-300": dict(
        n_cells=1500,
        n_genes=300,
        n_coarse=4,
        n_fine=12,
        fine_separation=1.5,
        imbalance=1.0,
        **_DEPTH,
        mean_library_size=102,
        random_state=2,
    ),
}
#: Whole-transcriptome settings made to check options found on sim-hard and pbmc3k (none used for tuning).
WHOLE_TRANSCRIPTOME_CHECKS = {
    "check-wt-hard": dict(
        n_cells=5000, n_genes=2000, n_coarse=5, n_fine=15, fine_separation=0.5, imbalance=1.0, random_state=11
    ),
    "check-wt-10x30": dict(
        n_cells=8000, n_genes=2000, n_coarse=10, n_fine=30, fine_separation=0.6, imbalance=1.0, random_state=12
    ),
    "check-wt-size": dict(
        n_cells=4000,
        n_genes=2000,
        n_coarse=4,
        n_fine=12,
        fine_separation=0.5,
        library_size_effect=0.3,
        random_state=13,
    ),
    "check-wt-20x60": dict(
        n_cells=12000, n_genes=2000, n_coarse=20, n_fine=60, imbalance=1.5, min_cells_per_fine=15, random_state=14
    ),
}
#: Every check setting, name → keyword arguments of simulate_hierarchy.
CHECKS = {**PANEL_CHECKS, **WHOLE_TRANSCRIPTOME_CHECKS}


def setting(name: str) -> dict:
    """The keyword arguments of simulate_hierarchy for ``name``, a key of :data:`SETTINGS` or :data:`CHECKS`."""
    return SETTINGS[name] if name in SETTINGS else CHECKS[name]


def simulate(name: str) -> ad.AnnData:
    """The simulated dataset ``name`` (a key of :data:`SETTINGS` or :data:`CHECKS`), with ``obs["coarse"]`` and
    ``obs["fine"]``."""
    return fs.datasets.simulate_hierarchy(**setting(name))


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
