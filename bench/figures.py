"""Relationship graphs for the docs: pbmc3k (6 → 9) and a simulated 27-coarse → 83-fine run.

python bench/figures.py [--pbmc3k ../shared/data/pbmc3k_labeled.h5ad] [--out docs/_static]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import scanpy as sc

import falcon_sc as fs
from falcon_sc import metrics

warnings.filterwarnings("ignore", category=UserWarning)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pbmc3k", type=Path, default=Path("../shared/data/pbmc3k_labeled.h5ad"))
    parser.add_argument("--out", type=Path, default=Path("docs/_static"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    if args.pbmc3k.exists():
        adata = sc.read_h5ad(args.pbmc3k)
        fs.tl.discover_subtypes(adata, "cell_type_coarse", n_fine=9, random_state=0, progress=False)
        runs.append(("pbmc3k", adata, "cell_type_fine"))
    else:
        print(f"{args.pbmc3k} not found: skipping pbmc3k")
    sim = fs.datasets.simulate_hierarchy(8000, 2000, 27, 83, random_state=0)
    fs.tl.discover_subtypes(sim, "coarse", n_fine=83, random_state=0, progress=False)
    runs.append(("sim27x83", sim, "fine"))
    for name, adata, truth in runs:
        fig = fs.pl.relationship_graph(adata, compare_to=truth, return_fig=True)
        fig.savefig(args.out / f"relationship_{name}.png", dpi=90, bbox_inches="tight")
        acc = metrics.cluster_accuracy(adata.obs[truth], adata.obs["falcon"])
        print(f"{name}: ACC {100 * acc:.1f}, figure {args.out / f'relationship_{name}.png'}")


if __name__ == "__main__":
    main()
