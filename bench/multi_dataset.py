"""Multi-dataset benchmark: one FALCON run on datasets with different coarse taxonomies vs each dataset alone.

Settings (each with the true number of fine classes):

- ``sim-2``: two simulated datasets of 2,000 cells sharing 16 fine classes, grouped into 4 "lineage" coarse
  classes in D0 and 4 random (lineage-crossing) ones in D1 (:func:`falcon_sc.datasets.simulate_datasets`);
- ``sim-3``: three datasets of 2,000 cells, 18 fine classes under 3 / 5 / 4 coarse classes;
- ``pbmc3k``: pbmc3k's cells dealt at random into two halves; half A keeps the provided 6 coarse labels,
  half B gets a grouping of the 9 cell types that crosses lineages ({Naive CD4 T, CD14+ Mono}, {Memory CD4
  T, B}, {CD8 T, NK}, {FCGR3A+ Mono, DC}, {Platelet}).

Joint: ``discover_subtypes(..., dataset_key="dataset")``. Alone: ``discover_subtypes`` on one dataset's cells.
Both are scored on each dataset's own cells. Seeds change the simulation (or the pbmc3k halves) and FALCON's
``random_state``. Prints ACC / ARI as mean ± sd over seeds.

    python bench/multi_dataset.py [--pbmc3k ../shared/data/pbmc3k_labeled.h5ad] [--seeds 0 1 2]
                                  [--settings sim-2 sim-3 pbmc3k] [--min-total-steps N]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc

import falcon_sc as fs
from falcon_sc import metrics

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)

PBMC3K_CROSSING = {
    "Naive CD4 T": "g1",
    "CD14+ Mono": "g1",
    "Memory CD4 T": "g2",
    "B": "g2",
    "CD8 T": "g3",
    "NK": "g3",
    "FCGR3A+ Mono": "g4",
    "DC": "g4",
    "Platelet": "g5",
}


def setting(name: str, seed: int, pbmc3k: Path):
    """An AnnData with obs "dataset", "coarse" (within its dataset), "fine"; and the number of fine classes."""
    if name == "sim-2":
        return fs.datasets.simulate_datasets(2000, 2000, 16, (4, 4), random_state=seed), 16
    if name == "sim-3":
        return fs.datasets.simulate_datasets(2000, 2000, 18, (3, 5, 4), random_state=seed), 18
    if name == "pbmc3k":
        adata = sc.read_h5ad(pbmc3k)
        fine = adata.obs["cell_type_fine"].astype(str)
        half = np.random.default_rng(seed).permutation(adata.n_obs) % 2
        coarse = np.where(half == 0, adata.obs["cell_type_coarse"].astype(str), fine.map(PBMC3K_CROSSING))
        adata.obs["dataset"] = pd.Categorical(np.where(half == 0, "A", "B"))
        adata.obs["coarse"] = pd.Categorical(coarse)
        adata.obs["fine"] = pd.Categorical(fine)
        return adata, 9
    raise ValueError(f"unknown setting {name}")


def scores(adata, cells) -> tuple[float, float]:
    truth, found = adata.obs["fine"][cells], adata.obs["falcon"][cells]
    return 100 * metrics.cluster_accuracy(truth, found), 100 * metrics.adjusted_rand_index(truth, found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pbmc3k", type=Path, default=Path("../shared/data/pbmc3k_labeled.h5ad"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=["sim-2", "sim-3", "pbmc3k"])
    parser.add_argument("--min-total-steps", type=int, default=None, help="override (smoke runs)")
    args = parser.parse_args()
    options = dict(progress=False)
    if args.min_total_steps is not None:
        options["min_total_steps"] = args.min_total_steps

    rows = []
    for name in args.settings:
        if name == "pbmc3k" and not args.pbmc3k.exists():
            print(f"skipping pbmc3k: {args.pbmc3k} not found")
            continue
        for seed in args.seeds:
            adata, n_fine = setting(name, seed, args.pbmc3k)
            datasets = list(adata.obs["dataset"].cat.categories)
            t0 = time.perf_counter()
            joint = fs.tl.discover_subtypes(
                adata, "coarse", n_fine=n_fine, dataset_key="dataset", random_state=seed, copy=True, **options
            )
            t_joint = time.perf_counter() - t0
            for d in datasets:
                cells = (adata.obs["dataset"] == d).to_numpy()
                t0 = time.perf_counter()
                alone = fs.tl.discover_subtypes(
                    adata[cells].copy(), "coarse", n_fine=n_fine, random_state=seed, copy=True, **options
                )
                t_alone = time.perf_counter() - t0
                acc_j, ari_j = scores(joint, cells)
                acc_a, ari_a = scores(alone, slice(None))
                rows.append(dict(setting=name, seed=seed, dataset=d, mode="joint", acc=acc_j, ari=ari_j, s=t_joint))
                rows.append(dict(setting=name, seed=seed, dataset=d, mode="alone", acc=acc_a, ari=ari_a, s=t_alone))
                print(
                    f"{name} seed {seed} {d}: joint ACC {acc_j:.1f} ARI {ari_j:.1f} | alone ACC {acc_a:.1f} "
                    f"ARI {ari_a:.1f}",
                    flush=True,
                )

    table = pd.DataFrame(rows)
    summary = table.groupby(["setting", "dataset", "mode"], sort=False).agg(
        acc_mean=("acc", "mean"),
        acc_sd=("acc", "std"),
        ari_mean=("ari", "mean"),
        ari_sd=("ari", "std"),
        s=("s", "mean"),
    )
    print("\n| setting | dataset | alone ACC | joint ACC | alone ARI | joint ARI | joint − alone ACC |")
    print("|---|---|---|---|---|---|---|")
    for (name, d), group in summary.groupby(level=[0, 1], sort=False):
        a, j = group.xs("alone", level=2).iloc[0], group.xs("joint", level=2).iloc[0]
        print(
            f"| {name} | {d} | {a.acc_mean:.1f} ± {a.acc_sd:.1f} | {j.acc_mean:.1f} ± {j.acc_sd:.1f} | "
            f"{a.ari_mean:.1f} ± {a.ari_sd:.1f} | {j.ari_mean:.1f} ± {j.ari_sd:.1f} | {j.acc_mean - a.acc_mean:+.1f} |"
        )
    print(
        f"\nseeds {args.seeds}; mean run time: joint {table[table['mode'] == 'joint'].s.mean():.0f} s, alone "
        f"{table[table['mode'] == 'alone'].s.mean():.0f} s per dataset"
    )


if __name__ == "__main__":
    main()
