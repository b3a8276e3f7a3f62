"""Scale benchmark: discover_subtypes on simulated data of growing size, against the scanpy pipeline.

For each size, in a fresh subprocess: simulate ``n`` cells × 2,000 genes with 27 coarse and 83 fine classes
(``falcon_sc.datasets.simulate_hierarchy``; counts drawn with torch on the benchmark's device when it is
CUDA), run ``discover_subtypes`` with the default preset and report its stage timings, the number and total
time of M solves, host memory (resident set before the call, its peak during the call sampled every 5 ms,
and the bound 2 × float32 HVG matrix + cells × k × 8 bytes for the increase), peak GPU memory on CUDA, and
ACC/ARI against the simulated truth; then, on the same preprocessed data, time what a scanpy user would run
instead (``pp.pca``, ``pp.neighbors``, ``tl.leiden`` with ``restrict_to`` each coarse class) and print the
ratio of the two totals. ``total`` is discover_subtypes end to end: preprocessing (QC of the input, library
sizes, densifying the 2,000 genes onto the device), PCA + kNN, the allocation and warm-start partitions
(``start``), training, M solves, prediction, and the two checks of the result (``coarse_check``: where each
cell's neighbours put it; ``separation_test``: each subtype against a structure-free null).

    python bench/scale.py --sizes 10000 100000 [--device cpu|cuda] [--n-restarts N] [--skip-scanpy]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)


class PeakRSS:
    """Samples this process's resident set size in a background thread."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def run_one(n_cells: int, device: str, n_restarts: int | None, skip_scanpy: bool) -> dict:
    import anndata as ad
    import numpy as np
    import scanpy as sc
    import torch

    import falcon_sc as fs
    from falcon_sc import metrics
    from falcon_sc._adata.preprocess import prepare_input

    sc.settings.verbosity = 0
    t = time.perf_counter()
    sample_device = "cuda" if device.startswith("cuda") else None  # numpy draws on the CPU
    adata = fs.datasets.simulate_hierarchy(
        n_cells, 2000, 27, 83, random_state=0, counts_layer=False, device=sample_device
    )
    simulate_s = time.perf_counter() - t
    if device.startswith("cuda"):
        # CUDA context and cuBLAS start-up (a second or two, once per session) are not the method's time.
        torch.ones(64, 64, device=device).matmul(torch.ones(64, 64, device=device))
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    # torch imports its compiler stack the first time an optimizer is built (~3 s, once per Python session).
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    options = {} if n_restarts is None else {"n_restarts": n_restarts}
    rss_before = PeakRSS.now()
    with PeakRSS() as rss:
        fs.tl.discover_subtypes(adata, "coarse", n_fine=83, random_state=0, device=device, progress=False, **options)
    u = adata.uns["falcon"]
    timings = {k: float(v) for k, v in u["timings"].items()}
    epochs = len(u["history"]["total"])  # of the kept run; every restart runs the same schedule
    runs = len(u["restart_objectives"])
    hvg_gb = n_cells * 2000 * 4 / 2**30
    row = {
        "cells": n_cells,
        "device": device,
        "simulate_s": simulate_s,
        **{f"{k}_s": v for k, v in timings.items()},
        "epochs": epochs,
        "runs": runs,
        "training_per_epoch_s": timings["training"] / (epochs * runs),
        "n_solves": int(u["n_solves"]),
        "knn": u["neighbors"]["method"],
        "cuda_graph": bool(u["cuda_graph"]),
        "ACC": 100 * metrics.cluster_accuracy(adata.obs["fine"], adata.obs["falcon"]),
        "ARI": 100 * metrics.adjusted_rand_index(adata.obs["fine"], adata.obs["falcon"]),
        "rss_before_gb": rss_before / 2**30,
        "peak_rss_gb": rss.peak / 2**30,
        "rss_increase_gb": (rss.peak - rss_before) / 2**30,
        "rss_bound_gb": 2 * hvg_gb + n_cells * 20 * 8 / 2**30,
        "hvg_matrix_gb": hvg_gb,
        "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan"),
        "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else "",
    }
    if not skip_scanpy:
        prepared = prepare_input(adata, layer=None, n_top_genes=2000, batch_key=None)
        base = ad.AnnData(X=prepared.to_tensor(torch.device("cpu")).numpy(), obs=adata.obs[["coarse"]].copy())
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
    parser.add_argument("--n-restarts", type=int, help="override the preset (default: 3, one run above 50k cells)")
    parser.add_argument("--skip-scanpy", action="store_true")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.device, args.n_restarts, args.skip_scanpy)))
        return
    rows = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--device", args.device]
        if args.n_restarts is not None:
            cmd += ["--n-restarts", str(args.n_restarts)]
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
        ("start_s", "{:.1f}"),
        ("training_s", "{:.1f}"),
        ("runs", "{}"),
        ("epochs", "{}"),
        ("training_per_epoch_s", "{:.2f}"),
        ("n_solves", "{}"),
        ("relationship_solves_s", "{:.2f}"),
        ("coarse_check_s", "{:.1f}"),
        ("separation_test_s", "{:.1f}"),
        ("total_s", "{:.1f}"),
        ("knn", "{}"),
        ("cuda_graph", "{}"),
        ("rss_before_gb", "{:.2f}"),
        ("peak_rss_gb", "{:.2f}"),
        ("rss_increase_gb", "{:.2f}"),
        ("rss_bound_gb", "{:.2f}"),
        ("peak_gpu_gb", "{:.2f}"),
        ("ACC", "{:.1f}"),
        ("ARI", "{:.1f}"),
        ("scanpy_s", "{:.1f}"),
    ]
    gpu = rows[0].get("gpu", "") if rows else ""
    print(f"\ndevice: {args.device} {gpu}; training = all runs; rss_increase must stay ≤ rss_bound\n")
    print("| " + " | ".join(c for c, _ in cols) + " | scanpy / FALCON |")
    print("|" + "---|" * (len(cols) + 1))
    for r in rows:
        cells = [fmt.format(r[c]) if c in r else "–" for c, fmt in cols]
        ratio = f"{r['scanpy_s'] / r['total_s']:.2f}" if "scanpy_s" in r else "–"
        print("| " + " | ".join(cells) + f" | {ratio} |")


if __name__ == "__main__":
    main()
