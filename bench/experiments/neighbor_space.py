"""Where the within-class neighbours are searched: the classifier's PCs (``"representation"``) or PCs computed
inside each coarse class (``"class_pca"``), on few-gene simulations. For a while ``"auto"`` took class PCs for
inputs of at most 100 genes, a limit read from this benchmark, and was the default until check-panel-33 reversed
it; ``"auto"`` now means the combined space on whole transcriptomes and the representation on panels, so every
setting here runs both spaces with the default's k-means warm starts.

sim-panel is the panel setting of ``bench/accuracy.py``, where the option was found; the ``check-*`` settings
were made afterwards to see whether it carries over (other seeds, 60 to 300 genes, with and without cell-size
effects, and two small 150/300-gene settings like those of the test suite); check-panel-33 (7 → 31) was added
after that. Default preset otherwise; prints ACC / ARI per setting and seed, and the mean
change.

    python bench/experiments/neighbor_space.py [--seeds 0] [--only NAME ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: accuracy, simulations

import argparse
import warnings

import numpy as np
import pandas as pd
from simulations import PANEL_CHECKS, SETTINGS, scored_run, simulate

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)

#: sim-panel, where the option was found, and the panel checks
CHECKS = {"sim-panel": SETTINGS["sim-panel"], **PANEL_CHECKS}
SPACES = ("representation", "class_pca")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="+", default=list(CHECKS), choices=list(CHECKS))
    args = parser.parse_args()
    rows = []
    for name in args.only:
        adata = simulate(name)
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
