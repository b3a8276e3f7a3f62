"""λ3 after the soft-target phase (``lambda_reg_hard``): its effect on few and on many fine classes.

Default preset, seeds 0, 1, 2, for each value: pbmc3k (6 → 9; skipped if the file is absent), pbmc68k
(6 → 10) and simulated data of the paper's PBMC COVID shape (8,000 cells, 27 → 83). Prints ACC / ARI.

    python bench/experiments/lambda_reg_hard.py [--values 0.2 1.0] [--pbmc3k ../shared/data/pbmc3k_labeled.h5ad]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import scanpy as sc

import falcon_sc as fs
from falcon_sc import metrics

warnings.filterwarnings("ignore", category=UserWarning)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", type=float, nargs="+", default=[0.2, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pbmc3k", type=Path, default=Path("../shared/data/pbmc3k_labeled.h5ad"))
    args = parser.parse_args()
    datasets = {
        "pbmc68k": (fs.datasets.pbmc68k_hierarchy, "coarse", "fine", 10, {"n_top_genes": 765}),
        "sim27x83": (
            lambda: fs.datasets.simulate_hierarchy(8000, 2000, 27, 83, random_state=0),
            "coarse",
            "fine",
            83,
            {},
        ),
    }
    if args.pbmc3k.exists():
        datasets = {
            "pbmc3k": (lambda: sc.read_h5ad(args.pbmc3k), "cell_type_coarse", "cell_type_fine", 9, {}),
            **datasets,
        }
    print("| dataset | lambda_reg_hard | ACC | ARI |\n|---|---|---|---|")
    for name, (load, coarse_key, fine_key, n_fine, extra) in datasets.items():
        adata = load()
        for value in args.values:
            scores = []
            for seed in args.seeds:
                fs.tl.discover_subtypes(
                    adata, coarse_key, n_fine=n_fine, random_state=seed, progress=False, lambda_reg_hard=value, **extra
                )
                truth, found = adata.obs[fine_key], adata.obs["falcon"]
                scores.append((metrics.cluster_accuracy(truth, found), metrics.adjusted_rand_index(truth, found)))
            acc, ari = 100 * np.array(scores).T
            print(f"| {name} | {value} | {acc.mean():.1f} ± {acc.std():.1f} | {ari.mean():.1f} ± {ari.std():.1f} |")


if __name__ == "__main__":
    main()
