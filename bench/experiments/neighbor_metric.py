"""How within-class neighbours are ranked: cosine similarity or Euclidean distance (option ``neighbor_metric``).

The default ``"auto"`` takes cosine for targeted panels (at most ``PANEL_MAX_GENES`` genes) and Euclidean
otherwise, as read from this benchmark. The panel settings are ``bench/neighbor_space.py``'s (sim-panel and the
``check-*`` panels made to check options found on it); the ``check-wt-*`` settings are whole-transcriptome
simulations (2,000 genes) made to check the Euclidean gain found on sim-hard and pbmc3k, with other shapes,
seeds, imbalance and cell-size effects. Default preset otherwise; prints ACC / ARI per setting, seed and
metric, and the mean change with Euclidean per kind of input.

    python bench/experiments/neighbor_metric.py [--seeds 0 1 2] [--only NAME ...] [--metrics cosine euclidean]
                                                [--rows CSV]
    python bench/experiments/neighbor_metric.py --from-rows CSV [CSV ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: accuracy, simulations

import argparse
import warnings
from pathlib import Path

import pandas as pd
from neighbor_space import CHECKS
from simulations import WHOLE_TRANSCRIPTOME_CHECKS, scored_run, simulate

from falcon_sc.core.config import is_panel

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)

SETTINGS = {**CHECKS, **WHOLE_TRANSCRIPTOME_CHECKS}
METRICS = ("cosine", "euclidean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--metrics", nargs="+", default=list(METRICS), choices=list(METRICS))
    parser.add_argument("--rows", type=Path, default=None, help="CSV of every run, written after each one")
    parser.add_argument("--from-rows", type=Path, nargs="+", default=None, help="only print the tables of --rows CSVs")
    args = parser.parse_args()
    if args.from_rows is not None:
        print_tables(pd.concat([pd.read_csv(path) for path in args.from_rows], ignore_index=True))
        return
    rows = []
    for name in args.only:
        adata = simulate(name)
        for seed in args.seeds:
            for metric in args.metrics:
                rows.append(scored_run(name, adata, seed, "metric", neighbor_metric=metric))
                if args.rows is not None:
                    pd.DataFrame(rows).to_csv(args.rows, index=False)
    print_tables(pd.DataFrame(rows))


def print_tables(df: pd.DataFrame) -> None:
    """Per setting (mean over seeds) and per kind of input: ACC / ARI with each metric and the change."""
    table = df.pivot_table(index=["setting", "genes", "seed"], columns="metric", values=["ACC", "ARI"]).dropna()
    means = table.groupby(level=["setting", "genes"]).mean()
    counts = table.groupby(level=["setting", "genes"]).size()
    print("\n| setting | genes | seeds | ACC cosine | ACC Euclidean | ARI cosine | ARI Euclidean |")
    print("|---|---|---|---|---|---|---|")
    for (name, genes), r in means.iterrows():
        cells = " | ".join(f"{r[(m, s)]:.1f}" for m in ("ACC", "ARI") for s in METRICS)
        print(f"| {name} | {genes} | {counts[(name, genes)]} | {cells} |")
    change = table.xs("euclidean", axis=1, level="metric") - table.xs("cosine", axis=1, level="metric")
    panel = change.index.get_level_values("genes").map(is_panel)
    for kind, rows in (("panels", change[panel]), ("whole transcriptome", change[~panel])):
        if len(rows):
            print(
                f"mean change with Euclidean, {kind} ({len(rows)} runs): "
                f"ACC {rows['ACC'].mean():+.1f}, ARI {rows['ARI'].mean():+.1f}"
            )


if __name__ == "__main__":
    main()
