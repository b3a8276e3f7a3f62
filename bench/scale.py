"""Scale benchmark: discover_subtypes on simulated data of growing size, against the scanpy pipeline.

For each size, in a fresh subprocess (so peak memory is per size): simulate ``n`` cells × 2,000 genes with
27 coarse and 83 fine classes (``falcon_sc.datasets.simulate_hierarchy``), run ``discover_subtypes`` and
report its stage timings, the number and total time of M solves, peak host RSS (and peak GPU memory on
CUDA), ACC/ARI against the simulated truth; then, on the same preprocessed data, time what a scanpy user
would run instead (``pp.pca``, ``pp.neighbors``, ``tl.leiden`` with ``restrict_to`` each coarse class) and
print the ratio of the two totals.

    python bench/scale.py --sizes 10000 100000 [--device cpu|cuda] [--n-restarts 3] [--skip-scanpy]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)


def run_one(n_cells: int, device: str, n_restarts: int, skip_scanpy: bool) -> dict:
    import anndata as ad
    import numpy as np
    import scanpy as sc
    import torch

    import falcon_sc as fs
    from falcon_sc import metrics
    from falcon_sc.tl._preprocess import prepare_input

    sc.settings.verbosity = 0
    t = time.perf_counter()
    adata = fs.datasets.simulate_hierarchy(n_cells, 2000, 27, 83, random_state=0)
    simulate_s = time.perf_counter() - t
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    fs.tl.discover_subtypes(
        adata, "coarse", n_fine=83, random_state=0, device=device, progress=False, n_restarts=n_restarts
    )
    u = adata.uns["falcon"]
    timings = {k: float(v) for k, v in u["timings"].items()}
    epochs = len(u["history"]["total"])  # of the kept run; every restart runs the same schedule
    row = {
        "cells": n_cells,
        "device": device,
        "simulate_s": simulate_s,
        **{f"{k}_s": v for k, v in timings.items()},
        "epochs": epochs,
        "training_per_epoch_s": timings["training"] / (epochs * n_restarts),
        "n_solves": int(u["n_solves"]),
        "ACC": 100 * metrics.cluster_accuracy(adata.obs["fine"], adata.obs["falcon"]),
        "ARI": 100 * metrics.adjusted_rand_index(adata.obs["fine"], adata.obs["falcon"]),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "hvg_matrix_gb": n_cells * 2000 * 4 / 2**30,
        "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan"),
    }
    if not skip_scanpy:
        prepared = prepare_input(adata, layer=None, n_top_genes=2000, batch_key=None)
        base = ad.AnnData(X=prepared.data, obs=adata.obs[["coarse"]].copy())
        t = time.perf_counter()
        sc.pp.pca(base, n_comps=50)
        # scanpy 1.11's default (pynndescent) path fails on scipy ≥ 1.15 sparse arrays; sklearn's exact kNN works.
        sc.pp.neighbors(base, transformer="sklearn")
        base.obs["leiden_r"] = base.obs["coarse"].astype(str).astype("category")
        for c in np.unique(base.obs["coarse"].astype(str)):
            sc.tl.leiden(base, restrict_to=("leiden_r", [c]), key_added="leiden_r", flavor="igraph", n_iterations=2)
        row["scanpy_s"] = time.perf_counter() - t
        row["scanpy_ACC"] = 100 * metrics.cluster_accuracy(adata.obs["fine"], base.obs["leiden_r"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-restarts", type=int, default=3)
    parser.add_argument("--skip-scanpy", action="store_true")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.device, args.n_restarts, args.skip_scanpy)))
        return
    rows = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--device", args.device, "--n-restarts", str(args.n_restarts)]
        if args.skip_scanpy:
            cmd.append("--skip-scanpy")
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{n} cells failed:\n{out.stderr[-3000:]}")
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    cols = [
        ("cells", "{:,}"),
        ("preprocessing_s", "{:.1f}"),
        ("neighbors_s", "{:.1f}"),
        ("training_s", "{:.1f}"),
        ("epochs", "{}"),
        ("training_per_epoch_s", "{:.2f}"),
        ("n_solves", "{}"),
        ("relationship_solves_s", "{:.2f}"),
        ("total_s", "{:.1f}"),
        ("peak_rss_gb", "{:.2f}"),
        ("hvg_matrix_gb", "{:.2f}"),
        ("peak_gpu_gb", "{:.2f}"),
        ("ACC", "{:.1f}"),
        ("ARI", "{:.1f}"),
        ("scanpy_s", "{:.1f}"),
    ]
    print(f"\ndevice: {args.device}; restarts: {args.n_restarts}; training = all restarts\n")
    print("| " + " | ".join(c for c, _ in cols) + " | scanpy / FALCON |")
    print("|" + "---|" * (len(cols) + 1))
    for r in rows:
        cells = [fmt.format(r[c]) if c in r else "–" for c, fmt in cols]
        ratio = f"{r['scanpy_s'] / r['total_s']:.2f}" if "scanpy_s" in r else "–"
        print("| " + " | ".join(cells) + f" | {ratio} |")


if __name__ == "__main__":
    main()
