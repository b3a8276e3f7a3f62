from __future__ import annotations

import anndata as ad
import numpy as np
import scanpy as sc

from .._adata.preprocess import detect_input_kind, log_normalize
from .._docs import doc_adata_result, doc_key, doc_params, doc_show
from ._utils import subtype_colors


@doc_params(doc_adata_result=doc_adata_result, doc_key=doc_key, doc_show=doc_show)
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
    go to it. Colours show the mean log-normalised expression: raw counts (in ``X`` or ``layer``) are
    normalised to 10,000 per cell and log1p-transformed first, as :func:`falcon_sc.tl.subtype_markers` tests
    them (on counts, a few highly expressed housekeeping genes would set the whole colour scale).

    Parameters
    ----------
    {doc_adata_result}
    {doc_key}
    n_genes
        Markers shown per subtype.
    markers_key
        Where :func:`falcon_sc.tl.subtype_markers` stored them (default ``f"{key}_markers"``).
    {doc_show}
    **kwargs
        Passed to :func:`scanpy.pl.rank_genes_groups_dotplot`.

    Returns
    -------
    What :func:`scanpy.pl.rank_genes_groups_dotplot` returns.
    """
    markers_key = markers_key or f"{key}_markers"
    if markers_key not in adata.uns:
        raise KeyError(f"adata.uns has no {markers_key!r}; run falcon_sc.tl.subtype_markers(adata, {key!r}) first.")
    colors = subtype_colors(adata, key)
    kwargs.setdefault("dendrogram", False)  # keep subtypes grouped under their parent, in order
    # Subtypes without cells have no row to draw and make scanpy fail: plot a light copy without them.
    sizes = adata.obs[key].value_counts()
    cells = adata.obs[key].isin(sizes.index[sizes > 0]).to_numpy()
    layer = kwargs.pop("layer", None)
    matrix = adata.X if layer is None else adata.layers[layer]
    plotted = ad.AnnData(X=matrix[cells], obs=adata.obs[[key]][cells], var=adata.var[[]])
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    if detect_input_kind(plotted.X, where) == "counts":
        plotted.X = plotted.X.astype(np.float32)
        log_normalize(plotted)
        kwargs.setdefault("colorbar_title", "Mean log-normalised\nexpression in group")
    plotted.obs[key] = plotted.obs[key].cat.remove_unused_categories()
    plotted.uns[f"{key}_colors"] = [colors[c] for c in plotted.obs[key].cat.categories]
    plotted.uns[markers_key] = adata.uns[markers_key]
    return sc.pl.rank_genes_groups_dotplot(
        plotted, key=markers_key, groupby=key, n_genes=n_genes, show=show, return_fig=return_fig, **kwargs
    )
