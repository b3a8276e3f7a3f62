"""Demo: FALCON on scanpy's bundled PBMC 68k subset (no download needed).

    python -m falcon_sc.demo [--out falcon_demo] [--seed 0]

Discovers 10 subtypes inside 6 coarse classes, prints them per coarse class with the known label that
dominates each and their top marker genes against their siblings, scores them against the known labels, lists
the subtypes whose cells the coarse-label check places in another coarse class, writes an .h5ad and the
relationship figure.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd

import falcon_sc as fs
from falcon_sc import metrics

# Marker genes printed per subtype.
_N_MARKERS = 4
# A subtype is listed as looking like another coarse class when at least this share of its cells does.
_SUSPECT_SHARE = 0.25


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("falcon_demo"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    adata = fs.datasets.pbmc68k_hierarchy()
    print(
        f"pbmc68k_reduced: {adata.n_obs} cells, {adata.obs['coarse'].nunique()} coarse classes, "
        f"{adata.obs['fine'].nunique()} known fine types (hidden from FALCON)"
    )
    start = time.perf_counter()
    fs.tl.discover_subtypes(adata, "coarse", n_fine=10, random_state=args.seed)
    elapsed = time.perf_counter() - start

    relationship = adata.uns["falcon"]["relationship"]
    # A subtype may end up with no cells; it still has a row.
    dominant = metrics.dominant_labels(adata.obs["fine"], adata.obs["falcon"])
    # What a subtype is, read from its genes: the known labels may lack it (plasma cells among "CD19+ B").
    fs.tl.subtype_markers(adata, n_genes=_N_MARKERS)
    markers = adata.uns["falcon_markers"]["table"].groupby("group", observed=True)["names"].agg(", ".join)
    print("\nDiscovered subtypes (cells; dominant known type and its share; top markers against its siblings):")
    for coarse, group in relationship.groupby("coarse", observed=True):
        print(f"  {coarse}")
        for name, row in group.iterrows():
            if name not in dominant.index:
                print(f"    {name:<14}    0 cells")
                continue
            label, share = dominant.loc[name, ["label", "share"]]
            genes = f"   {markers[name]}" if name in markers.index else ""
            print(f"    {name:<14} {row['n_cells']:>4} cells   {label} ({share:.0%}){genes}")

    fine, found = adata.obs["fine"], adata.obs["falcon"]
    learned = pd.DataFrame(adata.uns["falcon"]["relationship_matrix"], columns=adata.uns["falcon"]["coarse_names"])
    ged = metrics.graph_edit_distance(learned, metrics.true_relationship(fine, adata.obs["coarse"]))
    print(
        f"\nACC {100 * metrics.cluster_accuracy(fine, found):.1f}  "
        f"ARI {100 * metrics.adjusted_rand_index(fine, found):.1f}  "
        f"NMI {100 * metrics.normalized_mutual_info(fine, found):.1f}  "
        f"GED {ged:.0f}   (coarse labels alone: ACC {100 * metrics.cluster_accuracy(fine, adata.obs['coarse']):.1f}, "
        f"ARI {100 * metrics.adjusted_rand_index(fine, adata.obs['coarse']):.1f})   {elapsed:.1f} s"
    )
    print("The scores count a subtype that the known labels lack as an error: its markers above say what it is.")
    # The coarse-label check: a subtype whose cells' neighbours point to another coarse class is likely that
    # class's cells under the wrong label (in this dataset, CD16+ monocytes labelled "Dendritic").
    suspects = fs.tl.suspect_labels(adata)
    pointing = pd.crosstab(found.loc[suspects.index], suspects["suggested"])  # subtype × suggested class
    most, other = pointing.max(axis=1), pointing.idxmax(axis=1)
    sizes = relationship["n_cells"].loc[most.index]
    # (an empty subtype is never listed, whichever categories pandas keeps)
    flagged = most.index[(most > 0) & (most >= _SUSPECT_SHARE * sizes)]
    if flagged.size:
        print("Subtypes whose cells look like another coarse class (tl.suspect_labels):")
        for name in flagged:
            print(f"  {name}: {most[name]} of {sizes[name]} cells' neighbours point to {other[name]}")

    args.out.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(args.out / "pbmc68k_falcon.h5ad")
    fig = fs.pl.relationship_graph(adata, return_fig=True)
    fig.savefig(args.out / "relationship.png", dpi=120, bbox_inches="tight")
    print(f"wrote {args.out / 'pbmc68k_falcon.h5ad'} and {args.out / 'relationship.png'}")


if __name__ == "__main__":
    main()
