from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .. import metrics
from .._adata.results import stored_result as result
from .._docs import doc_adata_result, doc_key, doc_params, doc_show
from ._utils import finish, subtype_colors

_AGREE, _DISAGREE, _NEUTRAL = "#2a9d3f", "#d62728", "#9a9a9a"


@doc_params(doc_adata_result=doc_adata_result, doc_key=doc_key, doc_show=doc_show)
def relationship_graph(
    adata: ad.AnnData,
    key: str = "falcon",
    *,
    dataset: str | None = None,
    compare_to: str | None = None,
    coarse_key: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool | None = None,
    max_node_size: float = 500.0,
    fontsize: float | None = None,
) -> Axes | list[Axes] | Figure | None:
    """Draw the learned coarse → fine relationship as a bipartite graph.

    Coarse classes sit in the left column, their fine classes in the right column grouped under their
    parent; a node's area is proportional to its number of cells. Subtypes that ``uns[key]["support"]`` does
    not support (too few cells, or unstable across restarts) are marked "[unsupported]". Fine nodes take the
    subtype colours of ``adata.uns[f"{key}_colors"]`` (set from scanpy's palettes if absent), so they match
    ``sc.pl.umap``.

    Parameters
    ----------
    {doc_adata_result}
    {doc_key}
    dataset
        For a run on several datasets: the dataset whose relationship to draw. By default every dataset's
        graph is drawn side by side when ``adata`` holds several datasets' cells (``dataset_key`` runs), and
        the object's own otherwise.
    compare_to
        Column of ``adata.obs`` with known fine labels. Each discovered subtype is annotated with the known
        label that most of its cells have and that label's share of them (:func:`falcon_sc.metrics.dominant_labels`),
        or "unmatched" when it has no cells. An edge is green when that label belongs to the subtype's coarse
        class in the known hierarchy (majority parent of the label's cells), red when not, and grey for
        unmatched subtypes. With several datasets, only the drawn dataset's cells are used.
    coarse_key
        Column of coarse labels used for the known hierarchy (default: the run's ``coarse_key``).
    ax
        Axes to draw one graph into; a new figure (its height grows with the number of fine classes) when
        ``None``.
    {doc_show}
    max_node_size
        Marker area (points²) of the largest node.
    fontsize
        Label size; by default it shrinks from 9 to 6 points as the number of fine classes grows.

    Returns
    -------
    The figure when ``return_fig``, else ``None`` when shown, else the axes (a list for side-by-side graphs).
    """
    uns = result(adata, key)
    params = uns["params"]
    relationships = uns.get("relationships", {})
    dataset_column = params.get("dataset_key")
    if dataset is not None and dataset not in relationships:
        raise ValueError(f"Unknown dataset {dataset!r}; this run has datasets {sorted(relationships) or 'none'}.")
    # With several datasets' cells in this object and no dataset chosen, every dataset's graph side by side.
    panels = list(relationships) if dataset is None and dataset_column is not None else [dataset]
    if ax is not None and len(panels) > 1:
        raise ValueError(f"{len(panels)} datasets are drawn side by side; pass dataset=... to draw one into ax.")

    n_fine = len(uns["fine_names"])
    if ax is None:
        height = min(40.0, max(3.0, 0.26 * n_fine + 1))
        fig, axes = plt.subplots(1, len(panels), figsize=(8 * len(panels), height), squeeze=False)
        axes = list(axes.ravel())
    else:
        fig, axes = ax.figure, [ax]
    colors = subtype_colors(adata, key)
    for panel_ax, name in zip(axes, panels, strict=True):
        view = uns if name is None else relationships[name]
        if name is None or dataset_column is None:
            # The object's own cells: one dataset, or this object's dataset of a list of objects.
            cells = np.ones(adata.n_obs, bool) if name is None or params.get("dataset") == name else None
        else:
            cells = (adata.obs[dataset_column].astype(str) == name).to_numpy()
        if compare_to is not None and cells is None:
            raise ValueError(f"adata holds no cells of dataset {name!r}, so compare_to cannot be evaluated on it.")
        _draw(
            panel_ax,
            adata,
            key,
            view,
            cells,
            colors,
            compare_to,
            coarse_key or params["coarse_key"],
            max_node_size,
            fontsize,
            title=f"{name}: " if name is not None else "",
        )
    return finish(fig, axes[0] if len(axes) == 1 else axes, show, return_fig)


def _draw(ax, adata, key, view, cells, colors, compare_to, coarse_col, max_node_size, fontsize, title) -> None:
    """One dataset's graph into ``ax``; ``cells`` selects that dataset's cells of ``adata``."""
    table = view["relationship"]
    coarse_names = [str(c) for c in view["coarse_names"]]
    fine_names = [str(f) for f in table.index]
    parents = [coarse_names.index(str(c)) for c in table["coarse"]]
    fine_counts = table["n_cells"].to_numpy(dtype=float)
    coarse_counts = np.bincount(parents, weights=fine_counts, minlength=len(coarse_names))
    n_fine, n_coarse = len(fine_names), len(coarse_names)

    labels = {f: f"{f} ({int(n)})" for f, n in zip(fine_names, fine_counts, strict=True)}
    edge_colors = [_NEUTRAL] * n_fine
    if compare_to is not None:
        if compare_to not in adata.obs:
            raise KeyError(f"compare_to {compare_to!r} is not a column of adata.obs; available: {list(adata.obs)}.")
        obs = adata.obs[cells]
        known = obs[compare_to].astype(str)
        known_parent = pd.crosstab(known, obs[coarse_col].astype(str)).idxmax(axis=1)
        # What each subtype's cells are, never a one-to-one pairing that may join classes sharing no cell.
        dominant = metrics.dominant_labels(known, obs[key])
        for f, name in enumerate(fine_names):
            if name not in dominant.index:
                labels[name] += ": unmatched"
                continue
            label, share = dominant.loc[name, ["label", "share"]]
            labels[name] += f": {label} ({share:.0%})"
            agrees = str(known_parent[label]) == coarse_names[parents[f]]
            edge_colors[f] = _AGREE if agrees else _DISAGREE

    support = adata.uns[key].get("support")
    unsupported = [] if support is None else [f for f in fine_names if not support["supported"].get(f, True)]
    for name in unsupported:
        labels[name] += " [unsupported]"

    fontsize = fontsize or float(np.clip(9 - n_fine / 20, 6, 9))
    fine_y = np.linspace(1, 0, n_fine) if n_fine > 1 else np.array([0.5])
    parents_arr = np.asarray(parents)
    coarse_y = np.array([fine_y[parents_arr == c].mean() if (parents_arr == c).any() else 0.5 for c in range(n_coarse)])
    scale = max_node_size / max(coarse_counts.max(), 1.0)

    for f in range(n_fine):
        ax.plot([0, 1], [coarse_y[parents[f]], fine_y[f]], color=edge_colors[f], lw=1.2, zorder=1)
    ax.scatter(np.zeros(n_coarse), coarse_y, s=coarse_counts * scale + 20, c="#d9d9d9", zorder=2, edgecolors="k")
    ax.scatter(
        np.ones(n_fine), fine_y, s=fine_counts * scale + 8, c=[colors[f] for f in fine_names], zorder=2, edgecolors="k"
    )
    coarse_texts = [
        ax.text(-0.14, coarse_y[c], f"{name} ({int(coarse_counts[c])})", ha="right", va="center", fontsize=fontsize)
        for c, name in enumerate(coarse_names)
    ]
    fine_texts = [
        ax.text(1.1, fine_y[f], labels[name], ha="left", va="center", fontsize=fontsize)
        for f, name in enumerate(fine_names)
    ]
    ax.set_xlim(-1.0, 2.1)
    ax.set_ylim(-0.04, 1.04)
    _fit_texts(ax, coarse_texts, fine_texts)
    ax.axis("off")
    title += f"FALCON relationship: {n_coarse} coarse → {n_fine} fine"
    if unsupported:
        title += f" ({len(unsupported)} unsupported)"
    if compare_to is not None:
        n_agree = edge_colors.count(_AGREE)
        title += f"\nmatched to {compare_to!r}: {n_agree} of {n_fine} edges agree with the known hierarchy"
    ax.set_title(title, fontsize=fontsize + 2)
    _fit_title(ax)


def _fit_texts(ax, left: list, right: list) -> None:
    """Keep every label inside the axes (so inside the figure): long labels ("… [unsupported]") once ran past
    the right edge. A label's size is fixed in points, so the data range it needs depends on the figure's size:
    the labels shrink if the widest coarse and fine labels together take more than 80 % of the axes' width (the
    rest draws the graph), then the limits widen until they fit (a few passes, since widening moves the
    labels' anchors too)."""
    renderer = ax.figure.canvas.get_renderer()
    texts = left + right
    width = ax.get_window_extent(renderer).width
    needed = sum(max((t.get_window_extent(renderer).width for t in side), default=0.0) for side in (left, right))
    if needed > 0.8 * width:
        for text in texts:
            text.set_fontsize(text.get_fontsize() * 0.8 * width / needed)
    for _ in range(8):
        box = ax.get_window_extent(renderer)
        extents = [text.get_window_extent(renderer) for text in texts]
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        # overflow in pixels beyond each side, converted to data units (with 5 % to spare)
        overflow_left = max(0.0, box.x0 - min(e.x0 for e in extents)) * (x1 - x0) / box.width
        overflow_right = max(0.0, max(e.x1 for e in extents) - box.x1) * (x1 - x0) / box.width
        overflow_bottom = max(0.0, box.y0 - min(e.y0 for e in extents)) * (y1 - y0) / box.height
        overflow_top = max(0.0, max(e.y1 for e in extents) - box.y1) * (y1 - y0) / box.height
        if overflow_left == overflow_right == overflow_bottom == overflow_top == 0.0:
            return
        ax.set_xlim(x0 - 1.05 * overflow_left, x1 + 1.05 * overflow_right)
        ax.set_ylim(y0 - 1.05 * overflow_bottom, y1 + 1.05 * overflow_top)


def _fit_title(ax) -> None:
    """Shrink the title until it lies inside the figure (a small axes leaves little room above it)."""
    renderer = ax.figure.canvas.get_renderer()
    figure = ax.figure.bbox
    for _ in range(20):
        extent = ax.title.get_window_extent(renderer)
        if figure.x0 <= extent.x0 and extent.x1 <= figure.x1 and extent.y1 <= figure.y1:
            return
        ax.title.set_fontsize(ax.title.get_fontsize() * 0.9)
