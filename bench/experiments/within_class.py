"""How much fine structure each coarse class holds for a method to find: ARI inside each coarse class.

For one real dataset (default Zeisel, 7 → 47, 200 genes), the adjusted Rand index of the fine labels within each
coarse class, for FALCON (default preset, ``n_fine`` = the true total; and given the true per-class counts),
k-means inside each class with the true counts, and the supervised ceiling (5-fold cross-validated logistic
regression on the fine labels, as in ``bench/accuracy.py``). A class whose ceiling is low holds subtypes that
its genes barely tell apart; splitting it lowers the overall ARI below the coarse labels' whatever the method.

    python bench/experiments/within_class.py [--zeisel PATH] [--seed 0]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: accuracy, simulations

import argparse
from pathlib import Path

import anndata as ad
import numpy as np
from accuracy import baseline_representation, kmeans_within, supervised_ceiling
from sklearn.metrics import adjusted_rand_score

import falcon_sc as fs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zeisel", type=Path, default=Path("../shared/data/zeisel_cortex_200genes.h5ad"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    adata = ad.read_h5ad(args.zeisel)
    coarse = adata.obs["level1class"].astype(str).to_numpy()
    fine = adata.obs["level2class"].astype(str).to_numpy()
    true_counts = {c: len(np.unique(fine[coarse == c])) for c in np.unique(coarse)}
    labels = {}
    for name, n_fine in (("FALCON", len(np.unique(fine))), ("FALCON (true counts)", true_counts)):
        work = adata.copy()
        fs.tl.discover_subtypes(work, "level1class", n_fine=n_fine, random_state=args.seed, progress=False)
        labels[name] = work.obs["falcon"].astype(str).to_numpy()
    pcs, _ = baseline_representation(adata, "level1class", 50)
    labels["k-means per class, true K"] = kmeans_within(pcs, coarse, true_counts, args.seed).astype(str)
    labels["supervised ceiling"] = supervised_ceiling(pcs, coarse, fine, args.seed).astype(str)
    labels["coarse labels alone"] = coarse
    print(f"seed {args.seed}; ARI × 100 inside each coarse class, and over all cells")
    print()
    print("| coarse class | cells | true subtypes | " + " | ".join(labels) + " |")
    print("|---|---|---|" + "---|" * len(labels))
    for c in np.unique(coarse):
        inside = coarse == c
        scores = [f"{100 * adjusted_rand_score(fine[inside], found[inside]):.1f}" for found in labels.values()]
        print(f"| {c} | {inside.sum()} | {true_counts[c]} | " + " | ".join(scores) + " |")
    overall = [f"{100 * adjusted_rand_score(fine, found):.1f}" for found in labels.values()]
    print(f"| all cells | {coarse.size} | {len(np.unique(fine))} | " + " | ".join(overall) + " |")


if __name__ == "__main__":
    main()
