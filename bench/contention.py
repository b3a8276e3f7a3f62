"""Discoveries at the same time: how much each slows down against one alone.

Users run falcon_sc beside other work (a second Jupyter kernel, jobs sharing an HPC node, CI). This runs
``discover_subtypes`` on pbmc3k (default preset, ``random_state=0``, CPU) once alone and then as ``--copies``
processes started together (each in a fresh interpreter), and prints the wall time of the call in each and
the slowdown of the slowest against the single run. Target for two copies on two cores: ≤ 1.5×. Repeated
``--repeats`` times.

    python bench/contention.py [--pbmc3k ../shared/data/pbmc3k_labeled.h5ad] [--repeats 2] [--copies 2 3]
        [--n-restarts N] [--n-jobs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
import scanpy as sc
import falcon_sc as fs
sc.settings.verbosity = 0
adata = sc.read_h5ad(sys.argv[1])
options = json.loads(sys.argv[2])
start = time.perf_counter()
fs.tl.discover_subtypes(adata, "cell_type_coarse", n_fine=9, device="cpu", progress=False, **options)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def launch(path: Path, options: dict) -> subprocess.Popen:
    command = [sys.executable, "-c", CHILD, str(path), json.dumps(options)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def seconds(process: subprocess.Popen) -> float:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"a discovery failed with exit code {process.returncode}")
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pbmc3k", type=Path, default=Path("../shared/data/pbmc3k_labeled.h5ad"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--copies", type=int, nargs="+", default=[2], help="runs started together")
    parser.add_argument("--n-restarts", type=int, default=None, help="discover_subtypes(n_restarts=...)")
    parser.add_argument("--n-jobs", type=int, default=None, help="discover_subtypes(n_jobs=...)")
    args = parser.parse_args()
    if not args.pbmc3k.is_file():
        sys.exit(f"{args.pbmc3k} not found; pass --pbmc3k (see ../shared/data/README.md).")
    options = {name: value for name, value in [("n_jobs", args.n_jobs), ("n_restarts", args.n_restarts)] if value}
    print(f"discover_subtypes options: {options}\n")
    print("| repeat | copies | alone (s) | each copy (s) | slowdown (slowest / alone) |")
    print("|---|---|---|---|---|")
    slowdowns: dict[int, list[float]] = {n: [] for n in args.copies}
    for repeat in range(args.repeats):
        alone = seconds(launch(args.pbmc3k, options))
        for n in args.copies:
            runs = [launch(args.pbmc3k, options) for _ in range(n)]
            together = [seconds(p) for p in runs]
            slowdowns[n].append(max(together) / alone)
            each = ", ".join(f"{t:.1f}" for t in together)
            print(f"| {repeat} | {n} | {alone:.1f} | {each} | {slowdowns[n][-1]:.2f}× |", flush=True)
    for n, values in slowdowns.items():
        print(f"| median | {n} | | | {statistics.median(values):.2f}× |")


if __name__ == "__main__":
    main()
