"""Where the within-class neighbours are searched: the classifier's PCs (``"representation"``) or PCs computed
inside each coarse class (``"class_pca"``), on few-gene simulations. The default ``"auto"`` takes class PCs for
inputs of at most 100 genes, a limit read from this benchmark.

sim-panel is the panel setting of ``bench/accuracy.py``, where the option was found; the ``check-*`` settings
were made afterwards to see whether it carries over (other seeds, 60 to 300 genes, with and without cell-size
effects, and two small 150/300-gene settings like those of the test suite); check-panel-33 (7 → 31) was added
after "auto" became the default. Default preset otherwise; prints ACC / ARI per setting and seed, and the mean
change.

    python bench/neighbor_space.py [--seeds 0] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd
from simulations import SETTINGS, scored_run

import falcon_sc as fs

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)

_PANEL = dict(de_fraction=0.25, fine_separation=0.4, library_size_effect=0.5)
#: name → keyword arguments of simulate_hierarchy
CHECKS = {
    "sim-panel": SETTINGS["sim-panel"],
    "check-panel-40": dict(n_cells=6000, n_genes=40, n_coarse=6, n_fine=18, **_PANEL, random_state=6),
    "check-panel-100": dict(
        n_cells=6000, n_genes=100, n_coarse=6, n_fine=18, **{**_PANEL, "de_fraction": 0.2}, random_state=7
    ),
    "check-panel-300": dict(
        n_cells=6000,
        n_genes=300,
        n_coarse=5,
        n_fine=20,
        de_fraction=0.1,
        fine_separation=0.5,
        imbalance=1.0,
        random_state=8,
    ),
    # added after "auto" became the default, to check it at the shape of a small tissue panel (7 → 31, 33 genes)
    "check-panel-33": dict(n_cells=5000, n_genes=33, n_coarse=7, n_fine=31, **_PANEL, imbalance=1.0, random_state=10),
    "check-60-no-size": dict(
        n_cells=4000, n_genes=60, n_coarse=4, n_fine=12, de_fraction=0.25, fine_separation=0.5, random_state=9
    ),
    "check-150": dict(n_cells=1500, n_genes=150, n_coarse=3, n_fine=9, fine_separation=1.0, random_state=4),
    "check-300": dict(
        n_cells=1500, n_genes=300, n_coarse=4, n_fine=12, fine_separation=1.5, imbalance=1.0, random_state=2
    ),
}
SPACES = ("representation", "class_pca")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="+", default=list(CHECKS), choices=list(CHECKS))
    args = parser.parse_args()
    rows = []
    for name in args.only:
        adata = fs.datasets.simulate_hierarchy(**CHECKS[name])
        for seed in args.seeds:
            for space in SPACES:
                rows.append(scored_run(name, adata, seed, "space", neighbor_space=space))
    table = pd.DataFrame(rows).pivot_table(index=["setting", "genes", "seed"], columns="space", values=["ACC", "ARI"])
    print("\n| setting | genes | seed | ACC representation | ACC class PCs | ARI representation | ARI class PCs |")
    print("|---|---|---|---|---|---|---|")
    for (name, genes, seed), r in table.iterrows():
        cells = " | ".join(f"{r[(m, s)]:.1f}" for m in ("ACC", "ARI") for s in SPACES)
        print(f"| {name} | {genes} | {seed} | {cells} |")
    change = {m: np.mean(table[(m, "class_pca")] - table[(m, "representation")]) for m in ("ACC", "ARI")}
    print(f"\nmean change with class PCs: ACC {change['ACC']:+.1f}, ARI {change['ARI']:+.1f}")


if __name__ == "__main__":
    main()
