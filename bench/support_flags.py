"""Does the support check flag the subtypes that are not there, and only those?

Simulated data (900 cells, 300 genes, 3 coarse → 5 fine, ``falcon_sc.datasets.simulate_hierarchy``) at several
fine separations and seeds. The coarse class without substructure is asked for 3 subtypes, the others get their
true counts; ``discover_subtypes`` runs with the default preset. "extra" are the two subtypes of that class
beyond the one holding most of its cells (they should be flagged), "real" the subtypes of the classes with
several true ones (they should not). A subtype is flagged when ``uns["falcon"]["support"]["supported"]`` is
False. Prints a markdown table of flagged / total per separation.

    python bench/support_flags.py [--seeds 1 2 3 4 5 6 7 8] [--separations 2.0 1.0 0.7]
"""

from __future__ import annotations

import argparse
import warnings

import scanpy as sc

import falcon_sc as fs

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)


def flags(separation: float, seed: int) -> tuple[int, int, int, int]:
    """(extra flagged, extra, real flagged, real) for one simulated dataset."""
    adata = fs.datasets.simulate_hierarchy(900, 300, 3, 5, fine_separation=separation, random_state=seed)
    truth = adata.obs.groupby("coarse", observed=True)["fine"].nunique()
    plain = truth.index[truth == 1][0]
    counts = {c: 3 if c == plain else int(n) for c, n in truth.items()}
    fs.tl.discover_subtypes(adata, "coarse", n_fine=counts, random_state=0, progress=False)
    support = adata.uns["falcon"]["support"]
    extra = support[support["parent"] == plain].sort_values("n_cells").iloc[:2]
    real = support[support["parent"].map(truth) > 1]
    return int((~extra["supported"]).sum()), len(extra), int((~real["supported"]).sum()), len(real)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 9)))
    parser.add_argument("--separations", type=float, nargs="+", default=[2.0, 1.0, 0.7])
    args = parser.parse_args()
    sc.settings.verbosity = 0
    print("| fine separation | extra subtypes flagged (should be) | real subtypes flagged (false flags) |")
    print("|---|---|---|")
    for separation in args.separations:
        totals = [0, 0, 0, 0]
        for seed in args.seeds:
            totals = [a + b for a, b in zip(totals, flags(separation, seed), strict=True)]
        print(f"| {separation} | {totals[0]} / {totals[1]} | {totals[2]} / {totals[3]} |", flush=True)


if __name__ == "__main__":
    main()
