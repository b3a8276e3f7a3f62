"""Experiment: FALCON with the start's fine classes per coarse class chosen another way (docs/notes.md, "Counting
subtypes per class").

Everything but the allocation is the default preset; M is still learned. Modes:

- ``default``: the structure allocation as it is;
- ``truth``: the true per-class counts (what ``n_fine=dict`` gives, but with M learned);
- ``counts=a,b,...``: these counts, one per coarse class in sorted order;
- ``per-cell[:EXPONENT[:DRAWS[:GATE]]]``: the structure criterion's excess gain divided by the class's sampled cells
  and multiplied by its cells to the power EXPONENT (1 = the default criterion, 0 = per cell), averaged over DRAWS
  Gaussian null draws, less GATE standard deviations of the null's gain; k-means solutions with a cluster under 5
  cells end a class's gains;
- ``estimate[:MAX_PER_GROUP[:MIN_CELLS[:SEED]]]``: in proportion to the per-class counts of
  :func:`falcon_sc.core.estimate_n_fine` (largest remainder, at least one each, ties to the larger class).

    python bench/experiments/allocation.py MODE [--datasets zeisel-4000 zeisel pbmc3k ...] [--seeds 0 1 2]

Prints ACC / ARI / macro ACC, populated subtypes, allocation error (half the sum over classes of |learned − true|)
and the first seed's learned counts, per dataset; means over seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
import torch
from sklearn.cluster import KMeans

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from accuracy import REAL, load_datasets

import falcon_sc as fs
import falcon_sc.core.pipeline as pipeline
from falcon_sc import metrics
from falcon_sc._adata.preprocess import prepare_input
from falcon_sc.core.allocation import Allocation, _lookahead, _own_like
from falcon_sc.core.estimate import estimate_n_fine

DEFAULT_ALLOCATION = pipeline.initial_counts


def largest_remainder(weights, total: int, sizes) -> np.ndarray:
    """``total`` split in proportion to ``weights``, at least one each; ties go to the larger class."""
    quota = total * np.asarray(weights, float) / np.sum(weights)
    counts = np.maximum(1, np.floor(quota)).astype(int)
    while counts.sum() < total:
        rest = quota - counts
        tied = np.flatnonzero(np.isclose(rest, rest.max()))
        counts[tied[np.argmax(sizes[tied])]] += 1
    while counts.sum() > total:
        over = np.where(counts > 1, counts - quota, -np.inf)
        tied = np.flatnonzero(np.isclose(over, over.max()))
        counts[tied[np.argmin(sizes[tied])]] -= 1
    return counts


def per_cell_counts(scores, coarse, n_coarse, n_fine, exponent, draws, gate, seed, min_cells=5) -> np.ndarray:
    """The structure allocation with the gain per sampled cell times (class cells) ** exponent."""
    rng = np.random.default_rng(seed)
    own = _own_like(scores, coarse, n_coarse)
    sizes = np.bincount(coarse, minlength=n_coarse)
    k_max = max(4, 3 * -(-n_fine // n_coarse))
    gains = []
    for c in range(n_coarse):
        members = np.flatnonzero((coarse == c) & own)
        n_class, k_top = members.size, min(k_max, members.size // min_cells)
        if members.size > 1000:
            members = np.sort(rng.choice(members, 1000, replace=False))
        v = scores[members].astype(np.float64)
        v -= v.mean(0)
        nulls = [rng.standard_normal(v.shape) * v.std(0) for _ in range(draws)]
        data, null = [float((v**2).sum())], [[float(((g - g.mean(0)) ** 2).sum()) for g in nulls]]
        for k in range(2, k_top + 1):
            fit = KMeans(k, n_init=2, random_state=seed).fit(v)
            if np.bincount(fit.labels_, minlength=k).min() < min_cells:
                break
            data.append(fit.inertia_)
            null.append([KMeans(k, n_init=1, random_state=seed).fit(g).inertia_ for g in nulls])
        null_gain = -np.diff(np.asarray(null), axis=0)
        excess = -np.diff(data) - null_gain.mean(1) - gate * null_gain.std(1)
        gains.append(excess / v.shape[0] * n_class**exponent)
    counts = np.ones(n_coarse, dtype=int)
    for _ in range(n_fine - n_coarse):
        nxt = np.array([_lookahead(g[k - 1 :]) for g, k in zip(gains, counts, strict=True)])
        counts[int(np.argmax(sizes / counts if np.isneginf(nxt).all() else nxt))] += 1
    return counts


def mode_values(mode: str, defaults: list[float]) -> list[float]:
    """The numbers after a mode's name (``name:a:b``), the defaults filling those not given."""
    given = [float(v) for v in mode.split(":")[1:]]
    return given + defaults[len(given) :]


def replaced_allocation(mode: str, truth: np.ndarray, estimate: np.ndarray | None, sizes: np.ndarray):
    """What ``core.pipeline`` calls in place of ``initial_counts`` for ``mode`` (see the module docstring)."""

    def allocation(scores, proxy, n_first, n_fine, config, base, random_state):
        if mode == "default":
            return DEFAULT_ALLOCATION(scores, proxy, n_first, n_fine, config, base, random_state)
        if mode == "truth":
            return Allocation.given(truth)
        if mode.startswith("counts="):
            return Allocation.given(np.array([int(c) for c in mode[7:].split(",")]))
        if mode.startswith("estimate"):
            return Allocation.given(largest_remainder(estimate, n_fine, sizes))
        if mode.startswith("per-cell"):
            exponent, draws, gate = mode_values(mode, [0.0, 1.0, 0.0])
            host = np.asarray(torch.as_tensor(scores).float())
            counts = per_cell_counts(host, proxy, n_first, n_fine, exponent, int(draws), gate, random_state)
            return Allocation.given(counts)
        raise ValueError(f"unknown mode {mode!r}")

    return allocation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode")
    parser.add_argument("--datasets", nargs="+", default=REAL)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pbmc3k", type=Path, default=Path("../shared/data/pbmc3k_labeled.h5ad"))
    parser.add_argument("--zeisel", type=Path, default=Path("../shared/data/zeisel_cortex_200genes.h5ad"))
    parser.add_argument("--zeisel4000", type=Path, default=Path("../shared/data/zeisel_cortex_4000genes.h5ad"))
    args = parser.parse_args()
    sc.settings.verbosity = 0
    files = {"zeisel": args.zeisel, "zeisel-4000": args.zeisel4000}
    for name, (adata, coarse_key, fine_key) in load_datasets(args.datasets, args.pbmc3k, files).items():
        fine = adata.obs[fine_key].astype(str).to_numpy()
        truth_table = metrics.true_relationship(fine, adata.obs[coarse_key].astype(str).to_numpy())
        classes = np.array(sorted(truth_table.columns))
        truth = truth_table.sum(0).reindex(classes).to_numpy()
        sizes = adata.obs[coarse_key].astype(str).value_counts().reindex(classes).to_numpy()
        estimate = None
        if args.mode.startswith("estimate"):
            max_per_group, min_cells, seed = (int(v) for v in mode_values(args.mode, [8, 10, 0]))
            prepared = prepare_input(adata, layer=None, n_top_genes=2000, batch_key=None)
            data = prepared.to_tensor(torch.device("cpu"))
            codes = pd.Categorical(adata.obs[coarse_key].astype(str), categories=classes).codes
            estimate = estimate_n_fine(
                data, codes, max_per_group=max_per_group, min_cells_per_subtype=min_cells, random_state=seed
            ).per_group

        pipeline.initial_counts = replaced_allocation(args.mode, truth, estimate, sizes)
        rows = []
        for seed in args.seeds:
            work = adata.copy()
            start = time.perf_counter()
            fs.tl.discover_subtypes(work, coarse_key, n_fine=int(truth.sum()), random_state=seed, progress=False)
            labels = work.obs["falcon"].astype(str).to_numpy()
            learned = np.asarray(work.uns["falcon"]["relationship_matrix"]).sum(0)
            learned = pd.Series(learned, index=work.uns["falcon"]["coarse_names"]).reindex(classes).to_numpy()
            rows.append(
                {
                    "ACC": 100 * metrics.cluster_accuracy(fine, labels),
                    "ARI": 100 * metrics.adjusted_rand_index(fine, labels),
                    "macro": 100 * metrics.macro_accuracy(fine, labels),
                    "populated": len(np.unique(labels)),
                    "allocation error": 0.5 * np.abs(learned - truth).sum(),
                    "time_s": time.perf_counter() - start,
                    "counts": learned.tolist(),
                }
            )
        table = pd.DataFrame(rows)
        means = table.drop(columns="counts").mean()
        print(
            f"{args.mode} | {name} | "
            + " | ".join(f"{k} {v:.1f}" for k, v in means.items())
            + f" | counts (seed {args.seeds[0]}) {rows[0]['counts']} | true {truth.tolist()}",
            flush=True,
        )


if __name__ == "__main__":
    main()
