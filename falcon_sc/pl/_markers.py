from __future__ import annotations

import anndata as ad
import scanpy as sc

from ._utils import subtype_colors


def subtype_markers(
    adata: ad.AnnData,
    key: str = "falcon",
    *,
    n_genes: int = 5,
    markers_key: str | None = None,
    show: bool | None = None,
    return_fig: bool | None = None,
    **kwargs,
):
    """Dot plot of the top ``n_genes`` markers of each subtype (from :func:`falcon_sc.tl.subtype_markers`).

    A thin call of :func:`scanpy.pl.rank_genes_groups_dotplot`; ``kwargs`` (e.g. ``layer``, ``standard_scale``)
    go to it. Returns what it returns (scanpy conventions).
    """
    markers_key = markers_key or f"{key}_markers"
    if markers_key not in adata.uns:
        raise KeyError(f"adata.uns has no {markers_key!r}; run falcon_sc.tl.subtype_markers(adata, {key!r}) first.")
    subtype_colors(adata, key)  # the groups' colour bar matches the other plots
    kwargs.setdefault("dendrogram", False)  # keep subtypes grouped under their parent, in order
    return sc.pl.rank_genes_groups_dotplot(
        adata, key=markers_key, groupby=key, n_genes=n_genes, show=show, return_fig=return_fig, **kwargs
    )
