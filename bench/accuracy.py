"""Accuracy benchmark: FALCON against what a scanpy user would try instead.

For each dataset the expression is preprocessed once (2,000 seurat_v3 HVGs, normalize_total 1e4, log1p) and
every method runs on that same data. The baselines get the representation of scanpy's standard workflow
(``pp.scale(max_value=10)`` then ``pp.pca``, 50 components by default); FALCON's default preset computes its
own (z-scored genes clipped at 10, K_F + 1 PCs between 10 and 50):

- FALCON (default preset, M learned), FALCON given the true per-class counts, FALCON "paper" preset;
- k-means inside each coarse class, K_F split in proportion to class size (the same information FALCON has);
- k-means inside each coarse class with the true per-class counts ("oracle");
- leiden with ``restrict_to`` each coarse class in turn (default resolution);
- global k-means with K_F clusters;
- the coarse labels alone (every coarse class one subtype);
- the supervised ceiling: logistic regression on the fine labels, 5-fold cross-validated within each coarse
  class, on the baselines' representation (the paper's "upper bound" row).

Prints a markdown table of ACC / ARI / NMI / macro ACC (mean per-class recall after the matching), GED (0 =
true tree), the allocation error of FALCON's rows (subtypes in the wrong coarse class: half the sum over coarse
classes of |subtypes the learned M gives the class − true subtypes|, empty subtypes included), populated
subtypes (holding at least one cell, of K_F) and empty subtypes beyond the truth's own (subtypes under 0.1 % of
the cells, less the true subtypes that small), mean ± sd over seeds, then for every
FALCON row and the best same-information baseline the share of the ACC gap between "coarse labels alone" and
the ceiling that it closes.

Datasets, real cells first: pbmc3k (``--pbmc3k``), ``pbmc3k-panel-N`` (pbmc3k's counts on its N most variable
genes: real cells as a targeted panel of droplet data measures them), zeisel (``--zeisel``: mouse cortex, 7 → 47,
200 genes, 96 molecules in the median cell), zeisel-4000 (``--zeisel4000``: the same cells with 4,000 genes,
10,042 molecules in the median cell) and pbmc68k (scanpy's bundled cells, whose labels lack cell types
the data show, reported with no target). Then the simulations (``bench/simulations.py``): sim-4x10, sim-8x20,
sim-27x83 (the paper's shape: 20,000 cells, imbalanced subtypes), sim-hard (fine differences small against the
noise) and sim-panel (40 genes at the depth of pbmc3k's 40-gene panel); ``--datasets`` also takes the check
settings (``check-*``, none used for tuning). A real file that is absent is skipped with a message.

    python bench/accuracy.py [--pbmc3k PATH] [--zeisel PATH] [--zeisel4000 PATH] [--seeds 0 1 2] [--datasets ...]
                             [--baseline-pcs 50] [--rows rows.csv] [--falcon-only [default true-counts paper]]
                             [--option KEY=VALUE ...]
    python bench/accuracy.py --from-rows old_rows.csv new_rows.csv   # tables only; later rows replace earlier
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import torch
from simulations import CHECKS, SETTINGS, simulate
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

import falcon_sc as fs
from falcon_sc import metrics
from falcon_sc._adata.preprocess import prepare_input
from falcon_sc.core import proportional_relationship

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)


#: The real datasets, in the order every table shows them.
REAL = ["pbmc3k", "pbmc3k-panel-40", "pbmc3k-panel-100", "pbmc3k-panel-300", "zeisel", "zeisel-4000", "pbmc68k"]
SIMULATED = ["sim-4x10", "sim-8x20", "sim-27x83", "sim-hard", "sim-panel"]


def load_datasets(names: list[str], pbmc3k: Path, zeisel: dict[str, Path]) -> dict[str, tuple[ad.AnnData, str, str]]:
    """``zeisel`` maps "zeisel" and "zeisel-4000" to their files."""
    out = {}
    for name in names:
        if name in zeisel:
            if not zeisel[name].exists():
                print(f"skipping {name}: {zeisel[name]} not found")
                continue
            out[name] = (sc.read_h5ad(zeisel[name]), "level1class", "level2class")
            continue
        if name == "pbmc3k" or name.startswith("pbmc3k-panel-"):
            if not pbmc3k.exists():
                print(f"skipping {name}: {pbmc3k} not found")
                continue
            adata = sc.read_h5ad(pbmc3k)
            if name != "pbmc3k":
                adata = pbmc3k_panel(adata, int(name.rsplit("-", 1)[1]))
            out[name] = (adata, "cell_type_coarse", "cell_type_fine")
        elif name == "pbmc68k":
            out[name] = (fs.datasets.pbmc68k_hierarchy(), "coarse", "fine")
        elif name in SETTINGS or name in CHECKS:
            out[name] = (simulate(name), "coarse", "fine")
        else:
            raise ValueError(f"unknown dataset {name}")
    return out


def pbmc3k_panel(adata: ad.AnnData, n_genes: int) -> ad.AnnData:
    """pbmc3k's counts on its ``n_genes`` most variable genes (seurat_v3, chosen without the labels): real cells
    measured as a targeted panel would measure them, every cell's total counts being those of the panel."""
    genes = sc.pp.highly_variable_genes(adata, n_top_genes=n_genes, flavor="seurat_v3", inplace=False)
    return adata[:, genes["highly_variable"].to_numpy()].copy()


def baseline_representation(adata: ad.AnnData, coarse_key: str, n_pcs: int) -> tuple[np.ndarray, ad.AnnData]:
    """The baselines' PCs (scanpy's standard workflow on FALCON's preprocessed input) and the AnnData holding them."""
    prepared = prepare_input(adata, layer=None, n_top_genes=2000, batch_key=None)
    base = ad.AnnData(X=prepared.to_tensor(torch.device("cpu")).numpy(), obs=adata.obs[[coarse_key]].copy())
    sc.pp.scale(base, max_value=10)
    sc.pp.pca(base, n_comps=min(n_pcs, base.n_vars - 1), random_state=0)
    return base.obsm["X_pca"], base


def kmeans_within(pcs, coarse, counts_per_class: dict, seed: int) -> np.ndarray:
    labels = np.empty(len(coarse), dtype=object)
    for c, k in counts_per_class.items():
        idx = np.flatnonzero(coarse == c)
        k = min(k, idx.size)
        km = KMeans(k, n_init=10, random_state=seed).fit_predict(pcs[idx]) if k > 1 else np.zeros(idx.size, int)
        labels[idx] = [f"{c}/{j}" for j in km]
    return labels


def leiden_restricted(adata: ad.AnnData, coarse_key: str, seed: int) -> np.ndarray:
    work = adata.copy()
    # exact neighbours (scikit-learn): scanpy's default NN-descent path fails on this scipy above 4,096 cells
    sc.pp.neighbors(work, use_rep="X_pca", random_state=seed, transformer="sklearn")
    work.obs["leiden_r"] = work.obs[coarse_key].astype(str).astype("category")
    for c in work.obs[coarse_key].astype(str).unique():
        sc.tl.leiden(
            work,
            restrict_to=("leiden_r", [c]),
            key_added="leiden_r",
            random_state=seed,
            flavor="igraph",
            n_iterations=2,
            directed=False,
        )
    return work.obs["leiden_r"].astype(str).to_numpy()


def supervised_ceiling(pcs, coarse, fine, seed: int) -> np.ndarray:
    """Fine labels predicted by logistic regression trained on the fine labels, cross-validated (5 folds)
    within each coarse class: what the representation allows when the fine labels are known."""
    labels = fine.astype(object).copy()
    for c in np.unique(coarse):
        idx = np.flatnonzero(coarse == c)
        classes, counts = np.unique(fine[idx], return_counts=True)
        if classes.size < 2:
            continue
        folds = StratifiedKFold(int(min(5, counts.min())) if counts.min() >= 2 else 2, shuffle=True, random_state=seed)
        model = LogisticRegression(max_iter=2000)
        labels[idx] = cross_val_predict(model, pcs[idx], fine[idx], cv=folds)
    return labels


def n_empty(labels, fine, n_fine: int) -> int:
    """Subtypes (of the K_F asked for) holding fewer than 0.1 % of the cells (none at all included), beyond the
    true subtypes that small (a true subtype under that size may stay empty)."""
    small = 0.001 * len(labels)
    found = (pd.Series(labels).value_counts() >= small).sum()
    truth = (pd.Series(fine).value_counts() >= small).sum()
    return int(max(0, (n_fine - found) - (n_fine - truth)))


def scores(fine, labels) -> dict:
    return {
        "ACC": 100 * metrics.cluster_accuracy(fine, labels),
        "ARI": 100 * metrics.adjusted_rand_index(fine, labels),
        "NMI": 100 * metrics.normalized_mutual_info(fine, labels),
        "macro": 100 * metrics.macro_accuracy(fine, labels),
    }


def run_dataset(name, adata, coarse_key, fine_key, seeds, n_pcs, falcon_only=None, options=None) -> list[dict]:
    coarse = adata.obs[coarse_key].astype(str).to_numpy()
    fine = adata.obs[fine_key].astype(str).to_numpy()
    n_fine = len(np.unique(fine))
    true_tree = metrics.true_relationship(fine, coarse)
    true_counts = true_tree.sum(0).to_dict()
    classes, sizes = np.unique(coarse, return_counts=True)
    proportional = dict(zip(classes, proportional_relationship(sizes, n_fine).sum(0), strict=True))

    if falcon_only is None:
        pcs, base = baseline_representation(adata, coarse_key, n_pcs)
    falcon_runs = {
        "default": ("FALCON", dict(n_fine=n_fine)),
        "true-counts": ("FALCON (true counts)", dict(n_fine=true_counts)),
        "paper": ("FALCON paper preset", dict(n_fine=n_fine, preset="paper")),
    }
    rows = []
    for seed in seeds:
        runs = {}
        for label, kwargs in (falcon_runs[key] for key in falcon_only or falcon_runs):
            work = adata.copy()
            t = time.perf_counter()
            fs.tl.discover_subtypes(work, coarse_key, random_state=seed, progress=False, **kwargs, **(options or {}))
            runs[label] = (work.obs["falcon"].astype(str).to_numpy(), time.perf_counter() - t)
            learned = pd.DataFrame(
                work.uns["falcon"]["relationship_matrix"], columns=work.uns["falcon"]["coarse_names"]
            )
            ged = metrics.graph_edit_distance(learned, true_tree)
            given = learned.sum(0).reindex(true_tree.columns, fill_value=0)
            rows.append(
                {
                    "dataset": name,
                    "method": label,
                    "seed": seed,
                    "GED": ged,
                    "allocation": 0.5 * float(np.abs(given - true_tree.sum(0)).sum()),
                    "empty": n_empty(runs[label][0], fine, n_fine),
                    "populated": len(np.unique(runs[label][0])),
                    **scores(fine, runs[label][0]),
                    "time_s": runs[label][1],
                }
            )
        if falcon_only is not None:
            print(f"  {name} seed {seed} done", flush=True)
            continue
        for label, fn in (
            ("k-means per class, proportional K", lambda seed=seed: kmeans_within(pcs, coarse, proportional, seed)),
            ("k-means per class, true K (oracle)", lambda seed=seed: kmeans_within(pcs, coarse, true_counts, seed)),
            ("leiden restrict_to per class", lambda seed=seed: leiden_restricted(base, coarse_key, seed)),
            ("global k-means, K_F", lambda seed=seed: KMeans(n_fine, n_init=10, random_state=seed).fit_predict(pcs)),
            ("coarse labels alone", lambda: coarse),
            ("supervised ceiling (fine labels, CV)", lambda seed=seed: supervised_ceiling(pcs, coarse, fine, seed)),
        ):
            t = time.perf_counter()
            labels = fn()
            rows.append(
                {
                    "dataset": name,
                    "method": label,
                    "seed": seed,
                    "GED": np.nan,
                    "allocation": np.nan,
                    "empty": np.nan,
                    "populated": len(np.unique(labels)),
                    **scores(fine, labels),
                    "time_s": time.perf_counter() - t,
                }
            )
        print(f"  {name} seed {seed} done", flush=True)
    return rows


#: The baselines that use no more than FALCON's default does (the coarse labels and K_F).
SAME_INFORMATION = [
    "k-means per class, proportional K",
    "leiden restrict_to per class",
    "global k-means, K_F",
    "coarse labels alone",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pbmc3k", type=Path, default=Path("../shared/data/pbmc3k_labeled.h5ad"))
    parser.add_argument("--zeisel", type=Path, default=Path("../shared/data/zeisel_cortex_200genes.h5ad"))
    parser.add_argument("--zeisel4000", type=Path, default=Path("../shared/data/zeisel_cortex_4000genes.h5ad"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--baseline-pcs", type=int, default=50, help="PCs of the baselines' representation")
    parser.add_argument("--rows", type=Path, default=None, help="CSV written after every dataset (all rows so far)")
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=REAL + SIMULATED,
    )
    parser.add_argument(
        "--falcon-only",
        nargs="*",
        choices=["default", "true-counts", "paper"],
        default=None,
        help="run only these FALCON rows (none named: the default preset's), no baselines: to redo them after a "
        "change of defaults; merge with --from-rows",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a discover_subtypes option for every FALCON row (value read as JSON, else as a string), e.g. "
        "n_restarts=3 or target_sum=1e4; repeatable",
    )
    parser.add_argument(
        "--from-rows",
        type=Path,
        nargs="+",
        default=None,
        help="only print the tables of --rows CSVs; a later file's rows replace an earlier one's of the same "
        "dataset, method and seed",
    )
    args = parser.parse_args()
    if args.from_rows is not None:
        merged = pd.concat([pd.read_csv(path) for path in args.from_rows])
        # a later file's row replaces an earlier one in the earlier one's place (datasets and methods keep the order
        # in which they first appear)
        first = {key: i for i, key in reversed(list(enumerate(zip(merged["dataset"], merged["method"], strict=True))))}
        merged = merged.drop_duplicates(["dataset", "method", "seed"], keep="last")
        merged = merged.iloc[
            np.argsort([first[k] for k in zip(merged["dataset"], merged["method"], strict=True)], kind="stable")
        ]
        print_tables(merged, args.seeds, args.baseline_pcs)
        return
    sc.settings.verbosity = 0
    falcon_only = None if args.falcon_only is None else (args.falcon_only or ["default"])
    options = dict(parse_option(text) for text in args.option)
    if options:
        print(f"FALCON options: {options}")
    rows = []
    for name, (adata, coarse_key, fine_key) in load_datasets(
        args.datasets, args.pbmc3k, {"zeisel": args.zeisel, "zeisel-4000": args.zeisel4000}
    ).items():
        print(
            f"{name}: {adata.n_obs} cells, {adata.obs[coarse_key].nunique()} coarse, "
            f"{adata.obs[fine_key].nunique()} fine",
            flush=True,
        )
        rows += run_dataset(name, adata, coarse_key, fine_key, args.seeds, args.baseline_pcs, falcon_only, options)
        if args.rows is not None:  # every finished dataset is kept, whatever happens to the later ones
            pd.DataFrame(rows).to_csv(args.rows, index=False)
    print_tables(pd.DataFrame(rows), args.seeds, args.baseline_pcs)


def parse_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with the value read as JSON (numbers, booleans, null), else kept as a string."""
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def print_tables(df: pd.DataFrame, seeds, baseline_pcs) -> None:
    summary = df.groupby(["dataset", "method"], sort=False).agg(["mean", "std"])
    if "allocation" not in summary:  # rows written before the column existed
        summary[("allocation", "mean")] = summary[("allocation", "std")] = np.nan
    columns = ["ACC", "ARI", "NMI", "macro ACC", "GED", "allocation error", "populated", "empty", "time (s)"]
    header = "| dataset | method | " + " | ".join(columns) + " |"
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, method), r in summary.iterrows():

        def fmt(col, r=r):
            return "–" if np.isnan(r[(col, "mean")]) else f"{r[(col, 'mean')]:.1f} ± {r[(col, 'std')]:.1f}"

        lines.append(
            f"| {dataset} | {method} | {fmt('ACC')} | {fmt('ARI')} | {fmt('NMI')} | {fmt('macro')} | {fmt('GED')} | "
            f"{fmt('allocation')} | {fmt('populated')} | {fmt('empty')} | {r[('time_s', 'mean')]:.1f} |"
        )
    print(f"\nseeds: {seeds}; baseline PCs: {baseline_pcs}\n")
    print("\n".join(lines))
    print("\nShare of the ACC gap between coarse labels alone and the supervised ceiling closed (mean ACC):\n")
    print("| dataset | method | ACC | ARI | gap closed |\n|---|---|---|---|---|")
    means = df.groupby(["dataset", "method"], sort=False)[["ACC", "ARI"]].mean()
    for dataset in means.index.get_level_values(0).unique():
        rows = means.loc[dataset]
        if "coarse labels alone" not in rows.index:  # a --falcon-only run: no baselines to compare with
            continue
        low, high = rows.loc["coarse labels alone", "ACC"], rows.loc["supervised ceiling (fine labels, CV)", "ACC"]
        # the best method given no more than FALCON's default is: coarse labels and K_F (no true counts)
        same_information = [m for m in SAME_INFORMATION if m in rows.index]
        best = max(same_information, key=lambda m: rows.loc[m, "ACC"])
        for method in [m for m in rows.index if m.startswith("FALCON")] + [best]:
            name = method if method != best else f"best same-information baseline: {best}"
            acc, ari = rows.loc[method, "ACC"], rows.loc[method, "ARI"]
            print(f"| {dataset} | {name} | {acc:.1f} | {ari:.1f} | {100 * (acc - low) / (high - low):.0f} % |")


if __name__ == "__main__":
    main()
