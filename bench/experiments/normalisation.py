"""Which normalisation target suits which depth: FALCON with counts scaled to 10,000 and to the median total.

For each real dataset of ``bench/accuracy.py`` (pbmc3k, its 40/100/300-gene panels, Zeisel, pbmc68k) and the
simulated 33-gene check panel drawn at a real tissue panel's depth: the molecules per gene in the median cell,
then ``discover_subtypes`` (default preset, true ``n_fine``) with ``target_sum=1e4`` and with ``target_sum`` =
the dataset's median total, ACC / ARI as mean over seeds. Prints a markdown table.

    python bench/experiments/normalisation.py [--pbmc3k PATH] [--zeisel PATH] [--seeds 0 1 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: accuracy, simulations

import argparse
from pathlib import Path

import numpy as np
from accuracy import REAL, load_datasets, scores

import falcon_sc as fs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pbmc3k", type=Path, default=Path("../shared/data/pbmc3k_labeled.h5ad"))
    parser.add_argument("--zeisel", type=Path, default=Path("../shared/data/zeisel_cortex_200genes.h5ad"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=[*REAL, "check-panel-33"])
    args = parser.parse_args()
    print(f"seeds: {args.seeds}; default preset, n_fine = the true number of fine types")
    print()
    print("| data | genes | molecules per gene, median cell | scaled to 10,000 | scaled to the median total |")
    print("|---|---|---|---|---|")
    for name, (adata, coarse_key, fine_key) in load_datasets(
        args.datasets, args.pbmc3k, {"zeisel": args.zeisel}
    ).items():
        counts = adata.layers.get("counts", adata.X)
        median = float(np.median(np.asarray(counts.sum(1)).ravel()))
        n_fine = adata.obs[fine_key].nunique()
        cells = []
        for target in (1e4, median):
            runs = []
            for seed in args.seeds:
                work = adata.copy()
                fs.tl.discover_subtypes(
                    work, coarse_key, n_fine=n_fine, target_sum=target, random_state=seed, progress=False
                )
                runs.append(scores(work.obs[fine_key], work.obs["falcon"]))
            cells.append(f"{np.mean([r['ACC'] for r in runs]):.1f} / {np.mean([r['ARI'] for r in runs]):.1f}")
        row = [name, str(adata.n_vars), f"{median / adata.n_vars:.2f}", *cells]
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
