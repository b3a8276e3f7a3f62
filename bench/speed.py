"""Speed: discover_subtypes beside the scanpy pipeline a user already runs, first and second call.

For each dataset, each in a fresh interpreter of its own: the scanpy pipeline (2,000 seurat_v3 HVGs on the
counts, ``normalize_total``, ``log1p``, ``scale(max_value=10)``, 50 PCs, ``neighbors``), and ``discover_subtypes``
(default preset, CPU, ``random_state=0``), each called twice on fresh copies of the data. The first call pays the
one-off costs of a session (numba compiling scanpy's kernels, torch building its optimiser machinery); the second
is what every later call costs. For each call: wall time, FALCON's stages (``uns["falcon"]["timings"]``) and the
peak resident memory during the call (sampled every 5 ms) with the memory before it.

Datasets: pbmc3k (``--pbmc3k``; ``n_fine=9`` on ``cell_type_coarse``, as a user would call it) and ``sim-100k``,
100,000 simulated cells × 2,000 genes, 27 coarse → 83 fine (``falcon_sc.datasets.simulate_hierarchy``,
``random_state=0``), ``n_fine=83``.

    python bench/speed.py [--pbmc3k ../shared/data/pbmc3k_labeled.h5ad] [--datasets pbmc3k sim-100k]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

from scale import PeakRSS

warnings.filterwarnings("ignore")

STAGES = ["preprocessing", "neighbors", "start", "setup", "training", "relationship_solves", "separation_test"]


def load(name: str, pbmc3k: Path):
    import falcon_sc as fs

    if name == "pbmc3k":
        import anndata as ad

        return ad.read_h5ad(pbmc3k), "cell_type_coarse", 9
    if name == "sim-100k":
        adata = fs.datasets.simulate_hierarchy(100_000, 2000, 27, 83, random_state=0, counts_layer=False)
        return adata, "coarse", 83
    raise ValueError(f"unknown dataset {name}")


def scanpy_pipeline(adata) -> None:
    import scanpy as sc

    sc.pp.highly_variable_genes(adata, n_top_genes=2000, flavor="seurat_v3")
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    adata = adata[:, adata.var["highly_variable"]].copy()
    sc.pp.scale(adata, max_value=10)
    sc.pp.pca(adata, n_comps=50)
    # scanpy's default NN-descent path fails on this scipy at these sizes; sklearn's exact search works
    sc.pp.neighbors(adata, transformer="sklearn")


def measured(call) -> dict:
    before = PeakRSS.now()
    start = time.perf_counter()
    with PeakRSS() as rss:
        call()
    return {"seconds": time.perf_counter() - start, "rss_before_gb": before / 2**30, "peak_rss_gb": rss.peak / 2**30}


def run_one(name: str, what: str, pbmc3k: Path) -> dict:
    """Two calls of ``what`` ("scanpy" or "falcon") on dataset ``name``, in this (fresh) interpreter."""
    import scanpy as sc

    import falcon_sc as fs
    from falcon_sc import metrics

    sc.settings.verbosity = 0
    adata, coarse_key, n_fine = load(name, pbmc3k)
    row = {"dataset": name, "cells": adata.n_obs, "what": what}
    for call in ("first", "second"):
        if what == "scanpy":
            row[call] = measured(lambda: scanpy_pipeline(adata.copy()))
            continue
        work = adata.copy()
        result = measured(lambda work=work: fs.tl.discover_subtypes(work, coarse_key, n_fine=n_fine, progress=False))
        result["stages"] = {k: float(v) for k, v in work.uns["falcon"]["timings"].items()}
        fine = "cell_type_fine" if name == "pbmc3k" else "fine"
        result["ACC"] = 100 * metrics.cluster_accuracy(work.obs[fine], work.obs["falcon"])
        result["ARI"] = 100 * metrics.adjusted_rand_index(work.obs[fine], work.obs["falcon"])
        row[call] = result
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pbmc3k", type=Path, default=Path("../shared/data/pbmc3k_labeled.h5ad"))
    parser.add_argument("--datasets", nargs="+", default=["pbmc3k", "sim-100k"])
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(*args.one, args.pbmc3k)))
        return
    rows = []
    for name in args.datasets:
        if name == "pbmc3k" and not args.pbmc3k.exists():
            print(f"skipping pbmc3k: {args.pbmc3k} not found (pass --pbmc3k)")
            continue
        for what in ("scanpy", "falcon"):
            command = [sys.executable, __file__, "--one", name, what, "--pbmc3k", str(args.pbmc3k.resolve())]
            done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).parent)
            if done.returncode != 0:
                print(f"{name} ({what}) failed:\n{done.stderr[-3000:]}")
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"CPU: {platform.processor() or platform.machine()}, Python {platform.python_version()}\n")
    print("| dataset | cells | what | call | seconds | " + " | ".join(STAGES) + " | peak RSS (GB) | before (GB) |")
    print("|" + "---|" * (len(STAGES) + 7))
    for r in rows:
        for call in ("first", "second"):
            m = r[call]
            stages = [f"{m['stages'].get(s, 0.0):.2f}" if "stages" in m else "–" for s in STAGES]
            label = "scanpy pipeline" if r["what"] == "scanpy" else f"FALCON (ACC {m['ACC']:.1f}, ARI {m['ARI']:.1f})"
            print(
                f"| {r['dataset']} | {r['cells']:,} | {label} | {call} | {m['seconds']:.1f} | "
                + " | ".join(stages)
                + f" | {m['peak_rss_gb']:.2f} | {m['rss_before_gb']:.2f} |"
            )


if __name__ == "__main__":
    main()
