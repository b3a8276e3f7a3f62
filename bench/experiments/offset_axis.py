"""Cosine neighbours with each coarse class's offset on an axis of its own (option ``neighbor_offset_axis``), on
real cells: the gene inputs that search by cosine (pbmc3k as 40-, 100- and 300-gene panels, Zeisel's 200 genes)
and embeddings (``use_rep``) of two kinds: 50 PCs of the z-scored log data ("X_pca scaled", as
``bench/accuracy.py``'s baselines see them) and 50 PCs of the log data as it is ("X_pca log", ``sc.pp.pca``
without ``sc.pp.scale``, as the quick-start tutorial makes them), for pbmc3k, its panels, Zeisel and pbmc68k.
Whole transcriptomes search their genes by Euclidean distance, which the option does not change. Default preset
otherwise; prints ACC / ARI, macro ACC and populated subtypes (mean over seeds) with the option off and on.

    python bench/experiments/offset_axis.py [--pbmc3k PATH] [--zeisel PATH] [--seeds 0 1 2] [--datasets ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: accuracy, simulations

import argparse
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import torch
from accuracy import baseline_representation, load_datasets

import falcon_sc as fs
from falcon_sc import metrics
from falcon_sc._adata.preprocess import prepare_input

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)

DATASETS = ["pbmc3k-panel-40", "pbmc3k-panel-100", "pbmc3k-panel-300", "zeisel", "pbmc3k", "pbmc68k"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pbmc3k", type=Path, default=Path("../shared/data/pbmc3k_labeled.h5ad"))
    parser.add_argument("--zeisel", type=Path, default=Path("../shared/data/zeisel_cortex_200genes.h5ad"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=DATASETS, choices=DATASETS)
    args = parser.parse_args()
    rows = []
    for name, (adata, coarse_key, fine_key) in load_datasets(
        args.datasets, args.pbmc3k, {"zeisel": args.zeisel}
    ).items():
        adata = adata.copy()
        adata.obsm["X_pca_scaled"], _ = baseline_representation(adata, coarse_key, 50)
        adata.obsm["X_pca_log"] = log_pcs(adata, 50)
        embeddings = {"X_pca scaled": {"use_rep": "X_pca_scaled"}, "X_pca log": {"use_rep": "X_pca_log"}}
        # whole transcriptomes search their genes by Euclidean distance: only their embeddings search by cosine
        inputs = embeddings if name in ("pbmc3k", "pbmc68k") else {"genes": {}, **embeddings}
        for kind, kwargs in inputs.items():
            for flag in (False, True):
                for seed in args.seeds:
                    rows.append(run(name, kind, adata, coarse_key, fine_key, seed, flag, kwargs))
    table = pd.DataFrame(rows).groupby(["data", "input", "offset_axis"], sort=False).mean(numeric_only=True)
    print("\n| data | input | offset axis | ACC / ARI | macro ACC | populated |")
    print("|---|---|---|---|---|---|")
    for (data, kind, flag), r in table.iterrows():
        print(f"| {data} | {kind} | {flag} | {r.ACC:.1f} / {r.ARI:.1f} | {r.macro:.1f} | {r.populated:.1f} |")


def log_pcs(adata: ad.AnnData, n_pcs: int) -> np.ndarray:
    """50 PCs of the log-normalised data FALCON reads (its 2,000 genes), not z-scored first."""
    prepared = prepare_input(adata, layer=None, n_top_genes=2000, batch_key=None)
    log_data = ad.AnnData(X=prepared.to_tensor(torch.device("cpu")).numpy())
    sc.pp.pca(log_data, n_comps=min(n_pcs, log_data.n_vars - 1), random_state=0)
    return log_data.obsm["X_pca"]


def run(name, kind, adata, coarse_key, fine_key, seed, flag, kwargs) -> dict:
    fine = adata.obs[fine_key].astype(str).to_numpy()
    work = fs.tl.discover_subtypes(
        adata,
        coarse_key,
        n_fine=len(np.unique(fine)),
        random_state=seed,
        progress=False,
        copy=True,
        neighbor_offset_axis=flag,
        **kwargs,
    )
    labels = work.obs["falcon"].astype(str).to_numpy()
    row = {
        "data": name,
        "input": kind,
        "offset_axis": flag,
        "seed": seed,
        "ACC": 100 * metrics.cluster_accuracy(fine, labels),
        "ARI": 100 * metrics.adjusted_rand_index(fine, labels),
        "macro": 100 * metrics.macro_accuracy(fine, labels),
        "populated": len(np.unique(labels)),
    }
    print(f"  {name} {kind} seed {seed} offset_axis={flag}: ACC {row['ACC']:.1f} ARI {row['ARI']:.1f}", flush=True)
    return row


if __name__ == "__main__":
    main()
