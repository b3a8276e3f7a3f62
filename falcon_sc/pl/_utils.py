"""What every FALCON plot shares: subtype colours and scanpy's show/return conventions."""

from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import scanpy as sc
from scanpy.plotting import palettes


def subtype_colors(adata: ad.AnnData, key: str) -> dict[str, str]:
    """``{subtype: colour}`` from ``adata.uns[f"{key}_colors"]``, set from scanpy's palettes if absent or stale
    (as scanpy's own plots do), so that every plot and ``sc.pl.umap(color=key)`` agree."""
    categories = list(adata.obs[key].cat.categories)
    colors = adata.uns.get(f"{key}_colors")
    if colors is None or len(colors) != len(categories):
        n = len(categories)
        palette = palettes.default_20 if n <= 20 else palettes.default_28 if n <= 28 else palettes.default_102
        colors = [palette[i % len(palette)] for i in range(n)]
        adata.uns[f"{key}_colors"] = np.asarray(colors, dtype=object)
    return dict(zip(categories, colors, strict=True))


def finish(fig, axes, show: bool | None, return_fig: bool | None):
    """scanpy's convention: the figure with ``return_fig``, else nothing when shown (``show=None`` follows
    ``scanpy.settings.autoshow``), else the axes."""
    if return_fig:
        return fig
    if show is None:
        show = sc.settings.autoshow
    if show:
        plt.show()
        return None
    return axes
