"""Label transfer with a saved model: train FALCON on one half of pbmc3k, save it, load it, and predict the
other half, against FALCON run on that other half itself (transductive) and on all cells.

pbmc3k's cells (the copy bundled with the package, ``fs.datasets.pbmc3k_hierarchy()``, as the tests use; or the
labeled reference with ``--pbmc3k``) are dealt at random into halves A (reference) and B (query) for every seed.
Scored on B's cells against its fine labels: ACC (Hungarian) and ARI.
- transfer: ``discover_subtypes(A, n_fine=9, return_model=True)`` → ``save`` → ``FalconModel.load`` →
  ``predict(B, coarse_key=...)`` (each cell restricted to its coarse class's subtypes);
- transductive B: ``discover_subtypes(B, n_fine=9)``;
- transductive all: ``discover_subtypes(A ∪ B, n_fine=9)``, scored on B's cells.
Same seed for the split and for FALCON; default preset. Prints a markdown table (mean ± sd over seeds).

    python bench/transfer.py [--pbmc3k ../shared/data/pbmc3k_labeled.h5ad] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scanpy as sc

import falcon_sc as fs
from falcon_sc import metrics

warnings.filterwarnings("ignore", category=FutureWarning)
COARSE, FINE, N_FINE = "cell_type_coarse", "cell_type_fine", 9


def scores(truth, labels) -> tuple[float, float]:
    return 100 * metrics.cluster_accuracy(truth, labels), 100 * metrics.adjusted_rand_index(truth, labels)


def one_seed(adata, seed: int) -> dict[str, tuple[float, float, float]]:
    half = np.random.default_rng(seed).permutation(adata.n_obs) % 2
    ref, query = adata[half == 0].copy(), adata[half == 1].copy()
    truth = query.obs[FINE].to_numpy()
    out = {}
    t0 = time.perf_counter()
    model = fs.tl.discover_subtypes(ref, COARSE, n_fine=N_FINE, random_state=seed, progress=False, return_model=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "model")
        t1 = time.perf_counter()
        predicted = fs.tl.transfer_subtypes(query, Path(tmp) / "model", coarse_key=COARSE, copy=True)
        t_predict = time.perf_counter() - t1
    out["transfer A → B"] = (*scores(truth, predicted.obs["falcon"]), time.perf_counter() - t0, t_predict)
    t0 = time.perf_counter()
    alone = fs.tl.discover_subtypes(query, COARSE, n_fine=N_FINE, random_state=seed, progress=False, copy=True)
    out["transductive on B"] = (*scores(truth, alone.obs["falcon"]), time.perf_counter() - t0, np.nan)
    t0 = time.perf_counter()
    both = fs.tl.discover_subtypes(adata, COARSE, n_fine=N_FINE, random_state=seed, progress=False, copy=True)
    out["transductive on A ∪ B"] = (*scores(truth, both.obs["falcon"][half == 1]), time.perf_counter() - t0, np.nan)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pbmc3k", type=Path, default=None, help="the labeled reference instead of the bundled copy")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    if args.pbmc3k is not None and not args.pbmc3k.exists():
        raise SystemExit(f"{args.pbmc3k} not found (see ../shared/data/README.md)")
    adata = fs.datasets.pbmc3k_hierarchy() if args.pbmc3k is None else sc.read_h5ad(args.pbmc3k)
    runs = [one_seed(adata, seed) for seed in args.seeds]
    source = "bundled copy" if args.pbmc3k is None else str(args.pbmc3k)
    print(f"pbmc3k halves ({adata.n_obs} cells, {source}), query = half B; {len(args.seeds)} seeds {args.seeds}\n")
    print("| run (scored on B) | ACC | ARI | per seed ACC | s (train + save/load + predict) | s predict |")
    print("|---|---|---|---|---|---|")
    for name in runs[0]:
        values = np.array([r[name] for r in runs])
        acc, ari, seconds, predict = values.T
        print(
            f"| {name} | {acc.mean():.1f} ± {acc.std():.1f} | {ari.mean():.1f} ± {ari.std():.1f} | "
            f"{' '.join(f'{a:.1f}' for a in acc)} | {seconds.mean():.0f} | "
            f"{'' if np.isnan(predict).all() else f'{np.nanmean(predict):.2f}'} |"
        )
    print(f"\nfinished {time.strftime('%Y-%m-%d %H:%M')}")


if __name__ == "__main__":
    main()
