"""Estimating the number of fine classes: ``discover_subtypes(..., n_fine="auto")`` against the truth.

A grid of simulated datasets with known K_F (different numbers of coarse and fine classes, imbalance and
fine-class separation; :func:`falcon_sc.datasets.simulate_hierarchy`), the 27 → 83, hard and panel settings of
``bench/accuracy.py``, plus pbmc3k (true 9) and pbmc68k (true 10); ``--only`` also takes the ``check-*``
settings of ``bench/simulations.py``, summarised apart. For each: the data estimate of K_F, the FALCON-checked
estimate that ``n_fine="auto"`` keeps (one more class while FALCON's restarts agree at least as well), and ACC /
ARI of FALCON (default preset, ``random_state=0``) with that estimate and with the true K_F given (M then starts
from the default allocation, not from the estimate's per-class counts). Prints a markdown table and the relative
error of both estimates over the simulated grid (median, quartiles, max).

    python bench/experiments/estimate_kf.py [--pbmc3k ../shared/data/pbmc3k_labeled.h5ad] [--only NAME ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: accuracy, simulations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import scanpy as sc
from simulations import CHECKS, setting, simulate

import falcon_sc as fs
from falcon_sc import metrics

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)

# name: (cells, coarse, fine, fine_separation, imbalance, seed)
GRID = {
    "sim 2→6": (2000, 2, 6, 1.5, 0.5, 11),
    "sim 3→8": (2000, 3, 8, 1.5, 0.5, 12),
    "sim 4→12": (3000, 4, 12, 1.0, 0.5, 13),
    "sim 4→12 hard": (4000, 4, 12, 0.7, 1.0, 14),
    "sim 5→10 imbalanced": (3000, 5, 10, 1.0, 1.5, 15),
    "sim 6→20": (4000, 6, 20, 1.0, 0.5, 16),
    "sim 8→24 imbalanced": (5000, 8, 24, 0.8, 1.0, 17),
    "sim 10→30": (6000, 10, 30, 1.2, 0.5, 18),
}
# The quality issue's settings of bench/accuracy.py (paper shape, hard, targeted panel).
NEW = ["sim-27x83", "sim-hard", "sim-panel"]


def load(name: str, pbmc3k: Path):
    if name == "pbmc3k":
        return sc.read_h5ad(pbmc3k), "cell_type_coarse", "cell_type_fine", 9
    if name == "pbmc68k":
        return fs.datasets.pbmc68k_hierarchy(), "coarse", "fine", 10
    if name in NEW or name in CHECKS:
        return simulate(name), "coarse", "fine", setting(name)["n_fine"]
    cells, coarse, fine, separation, imbalance, seed = GRID[name]
    adata = fs.datasets.simulate_hierarchy(
        cells, 2000, coarse, fine, fine_separation=separation, imbalance=imbalance, random_state=seed
    )
    return adata, "coarse", "fine", fine


def scores(adata, fine_key) -> tuple[float, float]:
    return (
        100 * metrics.cluster_accuracy(adata.obs[fine_key], adata.obs["falcon"]),
        100 * metrics.adjusted_rand_index(adata.obs[fine_key], adata.obs["falcon"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pbmc3k", type=Path, default=Path("../shared/data/pbmc3k_labeled.h5ad"))
    parser.add_argument("--only", nargs="+", default=None, help="run only these settings (check-* settings too)")
    args = parser.parse_args()
    names = [*GRID, *NEW, "pbmc3k", "pbmc68k"]
    if args.only:
        names = [n for n in [*names, *CHECKS] if n in args.only]

    print(
        "| dataset | true K_F | data est. | FALCON-checked | per coarse class | tried (restart ARI) "
        "| ACC est. | ACC true | ARI est. | ARI true | auto s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    # relative errors per group of settings (the tuning grid, and the checks no default was chosen on) and estimate
    errors: dict[tuple[str, str], list[float]] = {}
    for name in names:
        if name == "pbmc3k" and not args.pbmc3k.exists():
            print(f"skipping pbmc3k: {args.pbmc3k} not found")
            continue
        adata, coarse_key, fine_key, true_k = load(name, args.pbmc3k)
        auto = fs.tl.discover_subtypes(adata, coarse_key, n_fine="auto", copy=True, progress=False)
        estimate = auto.uns["falcon"]["n_fine_estimate"]
        k = estimate["n_fine"]
        acc_e, ari_e = scores(auto, fine_key)
        given = fs.tl.discover_subtypes(adata, coarse_key, n_fine=true_k, copy=True, progress=False)
        acc_t, ari_t = scores(given, fine_key)
        table = estimate["per_coarse"]
        true_per = adata.obs.groupby(coarse_key, observed=True)[fine_key].nunique()
        per = " ".join(f"{c}:{n}/{true_per[c]}" for c, n in zip(table["coarse"], table["data_estimate"], strict=True))
        tried = " ".join(
            f"{n}:{a:.2f}{'' if kept else '✗'}"
            for n, a, kept in estimate["refinement"][["n_fine", "restart_agreement", "kept"]].itertuples(index=False)
        )
        seconds = auto.uns["falcon"]["timings"]["total"]
        group = "simulated grid" if name in GRID or name in NEW else "check settings" if name in CHECKS else None
        if group is not None:
            errors.setdefault((group, "data estimate"), []).append(abs(estimate["data_estimate"] - true_k) / true_k)
            errors.setdefault((group, "FALCON-checked estimate"), []).append(abs(k - true_k) / true_k)
        print(
            f"| {name} | {true_k} | {estimate['data_estimate']} | {k} | {per} | {tried} | {acc_e:.1f} | {acc_t:.1f} | "
            f"{ari_e:.1f} | {ari_t:.1f} | {seconds:.0f} |",
            flush=True,
        )
    for (group, what), values in errors.items():
        values = 100 * np.asarray(values)
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        print(
            f"\n{group} ({values.size} settings), {what}: relative error median {median:.1f} %, "
            f"quartiles {q1:.1f}–{q3:.1f} %, max {values.max():.1f} %; exact in {(values == 0).sum()} of {values.size}"
        )
    print(
        "\nper coarse class: data estimate/true subtypes; tried: n_fine and the restarts' mean pairwise ARI "
        "(✗ = not kept); ACC/ARI in %, 'est.' with the FALCON-checked estimate; auto s = whole n_fine='auto' run"
    )
    print(f"finished {time.strftime('%Y-%m-%d %H:%M')}")


if __name__ == "__main__":
    main()
