"""Demo: FALCON on the bundled pbmc3k cells with trusted labels, then on scanpy's pbmc68k subset (no download).

    python -m falcon_sc.demo [--out falcon_demo] [--seed 0] [--skip-pbmc68k]

Part 1, pbmc3k (``datasets.pbmc3k_hierarchy``: 6 coarse classes, 9 known fine types hidden from FALCON):
discovers 9 subtypes, prints each with the known type most of its cells have, whether the data support it and
its top marker genes against its siblings, then FALCON's scores beside what the same information gives without
it (k-means inside each coarse class) and the coarse labels alone. Writes ``pbmc3k_falcon.h5ad`` and
``relationship.png``.

Part 2, pbmc68k (``datasets.pbmc68k_hierarchy``), what the labels lack: its ``bulk_labels`` miss cell types
the data show, so it is not scored; the subtypes are printed with their markers, and those whose cells the
coarse-label check places in another coarse class are listed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from sklearn.cluster import KMeans

import falcon_sc as fs
from falcon_sc import metrics
from falcon_sc.core import proportional_relationship

# Marker genes printed per subtype.
_N_MARKERS = 4
# A subtype is listed as looking like another coarse class when at least this share of its cells does.
_SUSPECT_SHARE = 0.25


def kmeans_per_class(adata, coarse_key: str, n_fine: int, seed: int) -> np.ndarray:
    """The same information without FALCON: k-means inside each coarse class on scanpy's 50 PCs of the scaled
    data, ``n_fine`` split over the classes in proportion to their size."""
    work = ad.AnnData(adata.X.toarray())
    sc.pp.scale(work, max_value=10)
    sc.pp.pca(work, n_comps=50, random_state=seed)
    coarse = adata.obs[coarse_key].astype(str).to_numpy()
    classes, sizes = np.unique(coarse, return_counts=True)
    labels = np.empty(coarse.size, dtype=object)
    for c, k in zip(classes, proportional_relationship(sizes, n_fine).sum(0), strict=True):
        cells = np.flatnonzero(coarse == c)
        split = KMeans(k, n_init=10, random_state=seed).fit_predict(work.obsm["X_pca"][cells]) if k > 1 else 0
        labels[cells] = [f"{c}/{j}" for j in np.broadcast_to(split, cells.shape)]
    return labels


def print_subtypes(adata, known_key: str | None) -> None:
    """Each subtype under its coarse class: cells, the known type most of its cells have (``known_key``),
    whether the data support it, and its top markers against its siblings."""
    relationship = adata.uns["falcon"]["relationship"]
    support = adata.uns["falcon"]["support"]
    dominant = metrics.dominant_labels(adata.obs[known_key], adata.obs["falcon"]) if known_key else None
    fs.tl.subtype_markers(adata, n_genes=_N_MARKERS)
    markers = adata.uns["falcon_markers"]["table"].groupby("group", observed=True)["names"].agg(", ".join)
    for coarse, group in relationship.groupby("coarse", observed=True):
        print(f"  {coarse}")
        for name, row in group.iterrows():
            if row["n_cells"] == 0:
                print(f"    {name:<14}    0 cells")
                continue
            known = ""
            if dominant is not None:
                label, share = dominant.loc[name, ["label", "share"]]
                known = f"{label} ({share:.0%})"
            supported = "supported" if support.loc[name, "supported"] else "unsupported"
            genes = markers.get(name, "(its class's only subtype)")
            print(f"    {name:<14} {row['n_cells']:>4} cells   {known:<36} {supported:<12} {genes}")


def pbmc3k_part(out: Path, seed: int) -> None:
    adata = fs.datasets.pbmc3k_hierarchy()
    print(
        f"pbmc3k (bundled): {adata.n_obs:,} cells, {adata.obs['cell_type_coarse'].nunique()} coarse classes; the "
        f"{adata.obs['cell_type_fine'].nunique()} known fine types are hidden from FALCON"
    )
    start = time.perf_counter()
    fs.tl.discover_subtypes(adata, "cell_type_coarse", n_fine=9, random_state=seed)
    elapsed = time.perf_counter() - start
    print(
        "\nDiscovered subtypes (cells; the known type most of them have, and its share; supported by the data; "
        "top markers against their siblings):"
    )
    print_subtypes(adata, "cell_type_fine")
    print(
        "  (unsupported: the split from the nearest sibling is no sharper than a cut through one Gaussian population,"
        " as for a gradient such as naive → memory CD4 T; see docs 'Choosing n_fine')"
    )

    fine = adata.obs["cell_type_fine"]
    rows = {
        "FALCON": adata.obs["falcon"],
        "k-means inside each coarse class": kmeans_per_class(adata, "cell_type_coarse", 9, seed),
        "coarse labels alone": adata.obs["cell_type_coarse"],
    }
    print(f"\nAgainst the known fine types (FALCON took {elapsed:.1f} s):")
    print(f"  {'':<34} {'ACC':>5} {'ARI':>5}")
    for what, labels in rows.items():
        acc, ari = metrics.cluster_accuracy(fine, labels), metrics.adjusted_rand_index(fine, labels)
        print(f"  {what:<34} {100 * acc:>5.1f} {100 * ari:>5.1f}")
    print("  (k-means and the coarse labels use the same information as FALCON: the coarse labels and 9 subtypes)")

    out.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(out / "pbmc3k_falcon.h5ad")
    fig = fs.pl.relationship_graph(adata, compare_to="cell_type_fine", return_fig=True)
    fig.savefig(out / "relationship.png", dpi=120)
    print(f"wrote {out / 'pbmc3k_falcon.h5ad'} and {out / 'relationship.png'}")


def pbmc68k_part(seed: int) -> None:
    adata = fs.datasets.pbmc68k_hierarchy()
    print(
        f"\npbmc68k_reduced: {adata.n_obs} cells in {adata.obs['coarse'].nunique()} coarse classes. Its labels lack "
        "cell types the data show, so FALCON is not scored against them; the markers say what each subtype is."
    )
    # the values normalised on all genes, before the genes were reduced (pbmc68k_hierarchy)
    fs.tl.discover_subtypes(adata, "coarse", n_fine=10, layer="log1p", random_state=seed)
    print_subtypes(adata, "fine")
    # The coarse-label check: a subtype whose cells' neighbours point to another coarse class is likely that
    # class's cells under the wrong label.
    suspects = fs.tl.suspect_labels(adata)
    found = adata.obs["falcon"]
    pointing = pd.crosstab(found.loc[suspects.index], suspects["suggested"])  # subtype × suggested class
    most, other = pointing.max(axis=1), pointing.idxmax(axis=1)
    sizes = adata.uns["falcon"]["relationship"]["n_cells"].loc[most.index]
    # (an empty subtype is never listed, whichever categories pandas keeps)
    flagged = most.index[(most > 0) & (most >= _SUSPECT_SHARE * sizes)]
    if flagged.size:
        print("Subtypes whose cells look like another coarse class (tl.suspect_labels):")
        for name in flagged:
            print(f"  {name}: {most[name]} of {sizes[name]} cells' neighbours point to {other[name]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("falcon_demo"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-pbmc68k", action="store_true", help="run part 1 only")
    args = parser.parse_args(argv)
    pbmc3k_part(args.out, args.seed)
    if not args.skip_pbmc68k:
        pbmc68k_part(args.seed)


if __name__ == "__main__":
    main()
