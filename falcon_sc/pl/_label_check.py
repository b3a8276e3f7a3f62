"""Suspected coarse mislabels per coarse class."""

from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._adata.results import suspect_table
from .._docs import doc_adata_result, doc_ax, doc_key, doc_params, doc_show
from ._utils import finish


@doc_params(doc_adata_result=doc_adata_result, doc_key=doc_key, doc_ax=doc_ax, doc_show=doc_show)
def suspect_labels(
    adata: ad.AnnData,
    *,
    key: str = "falcon",
    threshold: float = 0.5,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool | None = None,
) -> Axes | Figure | None:
    """Cells of each coarse class whose label looks wrong (:func:`falcon_sc.tl.suspect_labels`), as one bar
    per coarse class split by the class their neighbours point to. The title gives the total.

    Parameters
    ----------
    {doc_adata_result}
    {doc_key}
    threshold
        Largest agreement at which a cell counts as suspected.
    {doc_ax}
    {doc_show}

    Returns
    -------
    The figure when ``return_fig``, else ``None`` when shown, else the axes.
    """
    suspects = suspect_table(adata, key, threshold)
    coarse = adata.obs[f"{key}_suggested_coarse"].cat.categories
    table = pd.crosstab(suspects["coarse"].astype(str), suspects["suggested"].astype(str))
    table = table.reindex(index=[str(c) for c in coarse], fill_value=0)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 0.3 * len(table) + 1.5))
    else:
        fig = ax.figure
    left = pd.Series(0, index=table.index)
    for suggested in table.columns:
        ax.barh(table.index, table[suggested], left=left, label=suggested)
        left += table[suggested]
    ax.invert_yaxis()
    ax.set_xlabel(f"cells with agreement < {threshold:g}")
    ax.set_ylabel("coarse label")
    ax.set_title(f"{len(suspects)} of {adata.n_obs} cells may be mislabelled")
    if len(table.columns):
        ax.legend(title="neighbours point to", fontsize=7, title_fontsize=7, loc="lower right")
    return finish(fig, ax, show, return_fig)
