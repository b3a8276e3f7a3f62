"""Atlas scale: ``discover_subtypes`` on an ``.h5ad`` file read in row blocks (backed), beside the same file in memory.

Writes N cells × 2,000 genes of Poisson counts (27 coarse classes × 3 subtypes) chunk by chunk, never holding the
matrix: anndata's ``write_elem`` writes the first chunk as a CSR group and ``sparse_dataset(...).append`` adds
the rest. Then, each in a fresh interpreter, ``discover_subtypes(adata, coarse_key="coarse", n_fine=81)``
(default preset, CPU, ``random_state=0``) on ``ad.read_h5ad(path, backed="r")`` and, where memory allows
(``--in-memory-max``), on ``ad.read_h5ad(path)``. Prints wall time, peak RSS during the call (sampled every 5 ms;
the outputs written into ``adata`` included), the RSS before it, and ACC / ARI against the subtypes.

    python bench/atlas.py [--cells 100000 300000 600000] [--in-memory-max 100000] [--dir /tmp/falcon_atlas]
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

import numpy as np

warnings.filterwarnings("ignore")

N_GENES, N_COARSE, PER_COARSE = 2000, 27, 3
CHUNK = 20_000


def write_atlas(path: Path, n_cells: int, seed: int = 0) -> None:
    """N cells of Poisson counts from a fixed 27 × 3 hierarchy, written chunk by chunk (labels are held whole;
    they are N integers)."""
    import anndata as ad
    import h5py
    import pandas as pd
    from scipy import sparse

    rng = np.random.default_rng(seed)
    n_fine = N_COARSE * PER_COARSE
    # gene means: a base profile, times a coarse programme (8 % of genes, ×2–6), times a fine one (4 %, ×2–4)
    base = np.exp(rng.normal(-2.0, 1.3, N_GENES))
    coarse_effect = np.where(rng.random((N_COARSE, N_GENES)) < 0.08, rng.uniform(2, 6, (N_COARSE, N_GENES)), 1.0)
    fine_effect = np.where(rng.random((n_fine, N_GENES)) < 0.04, rng.uniform(2, 4, (n_fine, N_GENES)), 1.0)
    profile = base * coarse_effect.repeat(PER_COARSE, axis=0) * fine_effect
    profile /= profile.sum(1, keepdims=True)
    fine = rng.integers(n_fine, size=n_cells)
    obs = pd.DataFrame(
        {
            "coarse": pd.Categorical([f"C{f // PER_COARSE}" for f in fine]),
            "fine": pd.Categorical([f"C{f // PER_COARSE}.{f % PER_COARSE}" for f in fine]),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"gene{j}" for j in range(N_GENES)])
    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        ad.io.write_elem(f, "obs", obs)
        ad.io.write_elem(f, "var", var)
        for key in ("obsm", "varm", "layers", "obsp", "varp", "uns"):
            ad.io.write_elem(f, key, {})
        for start in range(0, n_cells, CHUNK):
            rows = fine[start : start + CHUNK]
            depth = rng.lognormal(np.log(1500), 0.4, rows.size)  # molecules per cell
            counts = rng.poisson(profile[rows] * depth[:, None]).astype(np.float32)
            block = sparse.csr_matrix(counts)
            if start == 0:
                ad.io.write_elem(f, "X", block)
            else:
                ad.io.sparse_dataset(f["X"]).append(block)


def run_one(path: Path, backed: bool) -> dict:
    """One call in this (fresh) interpreter."""
    import anndata as ad
    import scanpy as sc
    from scale import PeakRSS

    import falcon_sc as fs
    from falcon_sc import metrics

    sc.settings.verbosity = 0
    adata = ad.read_h5ad(path, backed="r") if backed else ad.read_h5ad(path)
    before = PeakRSS.now()
    start = time.perf_counter()
    with PeakRSS() as rss:
        fs.tl.discover_subtypes(adata, coarse_key="coarse", n_fine=N_COARSE * PER_COARSE, progress=False)
    seconds = time.perf_counter() - start
    truth, found = adata.obs["fine"].to_numpy(), adata.obs["falcon"].to_numpy()
    return {
        "cells": adata.n_obs,
        "mode": "backed" if backed else "in memory",
        "seconds": seconds,
        "peak_rss_gb": rss.peak / 2**30,
        "rss_before_gb": before / 2**30,
        "acc": 100 * metrics.cluster_accuracy(truth, found),
        "ari": 100 * metrics.adjusted_rand_index(truth, found),
        "timings": {k: round(v, 1) for k, v in adata.uns["falcon"]["timings"].items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[100_000, 300_000, 600_000])
    parser.add_argument("--in-memory-max", type=int, default=100_000, help="also run in memory up to this size")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/falcon_atlas"))
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # internal: PATH backed|memory
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(Path(args.one[0]), args.one[1] == "backed")))
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.cells:
        path = args.dir / f"atlas_{n}.h5ad"
        if not path.exists():
            t = time.perf_counter()
            write_atlas(path, n)
            print(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GB) in {time.perf_counter() - t:.0f} s", flush=True)
        for mode in ["backed"] + (["memory"] if n <= args.in_memory_max else []):
            done = subprocess.run(
                [sys.executable, __file__, "--one", str(path), mode], capture_output=True, text=True, check=False
            )
            if done.returncode:
                print(f"{n} {mode} failed:\n{done.stderr[-3000:]}")
                continue
            rows.append({**json.loads(done.stdout.strip().splitlines()[-1]), "file_gb": path.stat().st_size / 2**30})
            print(rows[-1], file=sys.stderr, flush=True)
    print(f"CPU: {platform.processor() or platform.machine()}, Python {platform.python_version()}\n")
    print("| cells | file (GB) | mode | seconds | peak RSS (GB) | before (GB) | ACC | ARI | stages (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        stages = ", ".join(f"{k} {v}" for k, v in r["timings"].items() if k != "total")
        print(
            f"| {r['cells']:,} | {r['file_gb']:.2f} | {r['mode']} | {r['seconds']:.0f} | {r['peak_rss_gb']:.2f} | "
            f"{r['rss_before_gb']:.2f} | {r['acc']:.1f} | {r['ari']:.1f} | {stages} |"
        )


if __name__ == "__main__":
    main()
