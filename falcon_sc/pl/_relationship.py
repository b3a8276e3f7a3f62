from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def relationship_graph(
    adata: ad.AnnData,
    key: str = "falcon",
    *,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool | None = None,
    max_node_size: float = 600.0,
) -> Axes | Figure | None:
    """Draw the learned coarse → fine relationship as a bipartite graph.

    Coarse classes sit in the left column, their fine classes in the right column grouped under their
    parent; each marker's area is proportional to its number of cells.

    Parameters
    ----------
    adata
        AnnData after :func:`falcon_sc.tl.discover_subtypes`.
    key
        ``key_added`` of that run.
    ax
        Axes to draw into; a new figure is made when ``None``.
    show
        Show the figure (default: when neither ``ax`` nor ``return_fig`` is given).
    return_fig
        Return the figure instead of the axes.
    max_node_size
        Marker area (points²) of the largest node.

    Returns
    -------
    The figure when ``return_fig``, else the axes when ``show`` is False, else ``None``.
    """
    if key not in adata.uns or "relationship" not in adata.uns[key]:
        raise KeyError(f"adata.uns[{key!r}] holds no FALCON result; run falcon_sc.tl.discover_subtypes first.")
    table = adata.uns[key]["relationship"]
    coarse_names = list(adata.uns[key]["coarse_names"])
    fine_counts = table["n_cells"].to_numpy(dtype=float)
    coarse_counts = np.array([fine_counts[table["coarse"].to_numpy() == c].sum() for c in coarse_names])
    n_fine, n_coarse = len(table), len(coarse_names)

    if ax is None:
        fig, ax = plt.subplots(figsize=(7, max(3.0, 0.32 * n_fine + 1)))
    else:
        fig = ax.figure
    fine_y = np.linspace(1, 0, n_fine) if n_fine > 1 else np.array([0.5])
    parent = [coarse_names.index(c) for c in table["coarse"]]
    coarse_y = np.array([fine_y[np.asarray(parent) == c].mean() for c in range(n_coarse)])
    colours = plt.get_cmap("tab20")(np.arange(n_coarse) % 20)
    scale = max_node_size / max(fine_counts.max(), coarse_counts.max(), 1.0)

    for f in range(n_fine):
        ax.plot([0, 1], [coarse_y[parent[f]], fine_y[f]], color=colours[parent[f]], lw=1.2, zorder=1)
    ax.scatter(np.zeros(n_coarse), coarse_y, s=coarse_counts * scale + 20, c=colours, zorder=2, edgecolors="k")
    ax.scatter(np.ones(n_fine), fine_y, s=fine_counts * scale + 10, c=colours[parent], zorder=2, edgecolors="k")
    for c, name in enumerate(coarse_names):
        ax.text(-0.08, coarse_y[c], f"{name} ({int(coarse_counts[c])})", ha="right", va="center", fontsize=9)
    for f, name in enumerate(table.index):
        ax.text(1.08, fine_y[f], f"{name} ({int(fine_counts[f])})", ha="left", va="center", fontsize=8)
    ax.set_xlim(-0.9, 1.9)
    ax.set_ylim(-0.08, 1.08)
    ax.axis("off")
    ax.set_title(f"FALCON relationship: {n_coarse} coarse → {n_fine} fine")

    if return_fig:
        return fig
    if show is None:
        show = True
    if show:
        plt.show()
        return None
    return ax
