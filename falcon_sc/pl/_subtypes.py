"""Plots after a discovery run: subtypes on an embedding, the training history, discovered vs known labels."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .. import metrics
from .._adata.results import parent_of_cells
from .._adata.results import stored_result as result
from .._docs import doc_adata_result, doc_ax, doc_key, doc_params, doc_show
from ._utils import finish, subtype_colors


@doc_params(doc_key=doc_key, doc_show=doc_show)
def subtypes(
    adata: ad.AnnData,
    key: str = "falcon",
    *,
    basis: str = "umap",
    coarse: str | Sequence[str] | None = None,
    ncols: int = 4,
    point_size: float | None = None,
    show: bool | None = None,
    return_fig: bool | None = None,
) -> list[Axes] | Figure | None:
    """An embedding coloured by discovered subtype, one panel per coarse class.

    In each panel all cells are drawn in light grey and the cells of that coarse class in their subtype's
    colour (``adata.uns[f"{key}_colors"]``), with a legend of its subtypes.

    Parameters
    ----------
    adata
        AnnData after :func:`falcon_sc.tl.discover_subtypes`, with ``obsm[f"X_{basis}"]``.
    {doc_key}
    basis
        Embedding to draw, e.g. ``"umap"`` (``sc.tl.umap``) or ``"pca"``.
    coarse
        One coarse class or a list of them (default: every coarse class).
    ncols
        Panels per row.
    point_size
        Marker size (default: scaled with the number of cells, as in scanpy).
    {doc_show}

    Returns
    -------
    The figure when ``return_fig``, else ``None`` when shown, else the list of axes (one per panel).
    """
    uns = result(adata, key)
    if f"X_{basis}" not in adata.obsm:
        raise KeyError(f"adata.obsm has no 'X_{basis}'; compute it first (e.g. sc.tl.{basis}(adata)).")
    all_coarse = [str(c) for c in uns["coarse_names"]]
    selected = all_coarse if coarse is None else [coarse] if isinstance(coarse, str) else list(coarse)
    unknown = sorted(set(selected) - set(all_coarse))
    if unknown:
        raise ValueError(f"Unknown coarse class(es) {unknown}; choose from {all_coarse}.")
    xy = np.asarray(adata.obsm[f"X_{basis}"])[:, :2]
    colors = subtype_colors(adata, key)
    labels = adata.obs[key].astype(str).to_numpy()
    parents = parent_of_cells(adata, key)
    size = point_size or 120000 / max(adata.n_obs, 1) ** 1.0
    size = float(np.clip(size, 0.5, 30))

    ncols = min(ncols, len(selected))
    nrows = int(np.ceil(len(selected) / ncols))
    fig, grid = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.6 * nrows), squeeze=False)
    axes = list(grid.ravel())
    for ax in axes[len(selected) :]:
        ax.remove()
    axes = axes[: len(selected)]
    for ax, name in zip(axes, selected, strict=True):
        ax.scatter(xy[:, 0], xy[:, 1], s=size, c="#e6e6e6", linewidths=0, rasterized=True)
        inside = parents == name
        for subtype in sorted(set(labels[inside])):
            cells = inside & (labels == subtype)
            ax.scatter(
                xy[cells, 0],
                xy[cells, 1],
                s=size,
                c=colors[subtype],
                label=f"{subtype} ({cells.sum()})",
                linewidths=0,
                rasterized=True,
            )
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{basis.upper()}1")
        ax.set_ylabel(f"{basis.upper()}2")
        ax.legend(fontsize=7, markerscale=2, frameon=False, loc="best")
    fig.tight_layout()
    return finish(fig, axes, show, return_fig)


@doc_params(doc_adata_result=doc_adata_result, doc_key=doc_key, doc_show=doc_show)
def training_history(
    adata: ad.AnnData,
    key: str = "falcon",
    *,
    show: bool | None = None,
    return_fig: bool | None = None,
) -> list[Axes] | Figure | None:
    """Each loss term per epoch (left) and the number of fine classes that changed parent in M (right).

    Parameters
    ----------
    {doc_adata_result}
    {doc_key}
    {doc_show}

    Returns
    -------
    The figure when ``return_fig``, else ``None`` when shown, else ``[loss axes, M-changes axes]``.
    """
    history = result(adata, key)["history"]
    epochs = np.arange(1, len(history["total"]) + 1)
    fig, (ax_loss, ax_m) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [2, 1]})
    for term in ("coarse", "neighbor", "confidence", "reg", "total"):
        ax_loss.plot(epochs, history[term], label=term, lw=2 if term == "total" else 1.2)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (epoch mean)")
    ax_loss.legend(frameon=False, fontsize=8)
    changes = np.asarray(history["relationship_changes"])
    ax_m.bar(epochs, changes, color="#4c72b0")
    ax_m.set_xlabel("epoch")
    ax_m.set_ylabel("fine classes moved in M")
    if not changes.any():  # an empty panel would look like a failed plot
        ax_m.set_ylim(0, 1)
        ax_m.text(0.5, 0.5, "M unchanged\nduring training", transform=ax_m.transAxes, ha="center", va="center")
    fig.suptitle(f"FALCON training ({key!r})")
    fig.tight_layout()
    return finish(fig, [ax_loss, ax_m], show, return_fig)


@doc_params(doc_adata_result=doc_adata_result, doc_key=doc_key, doc_ax=doc_ax, doc_show=doc_show)
def confusion(
    adata: ad.AnnData,
    key: str,
    true_key: str,
    *,
    normalize: bool = True,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool | None = None,
) -> Axes | Figure | None:
    """Known (rows) against discovered (columns) labels, discovered columns ordered by their Hungarian match.

    The title gives the accuracy after matching.

    Parameters
    ----------
    {doc_adata_result}
    {doc_key}
    true_key
        Column of ``adata.obs`` with the known labels.
    normalize
        Show each row as the fraction of that known class in each discovered subtype, instead of cell counts.
    {doc_ax}
    {doc_show}

    Returns
    -------
    The figure when ``return_fig``, else ``None`` when shown, else the axes.
    """
    result(adata, key)
    if true_key not in adata.obs:
        raise KeyError(f"true_key {true_key!r} is not a column of adata.obs; available: {list(adata.obs)}.")
    known = adata.obs[true_key].astype(str)
    found = adata.obs[key].astype(str)
    table = pd.crosstab(known, found)
    matched = metrics.match_labels(known, found)  # discovered → known
    rank = {k: i for i, k in enumerate(table.index)}
    order = sorted(table.columns, key=lambda f: (rank.get(matched.get(f), len(rank)), f))
    table = table[order]
    values = table.to_numpy(dtype=float)
    if normalize:
        values = values / values.sum(1, keepdims=True)
    if ax is None:
        fig, ax = plt.subplots(figsize=(0.32 * table.shape[1] + 3, 0.32 * table.shape[0] + 2))
    else:
        fig = ax.figure
    image = ax.imshow(values, cmap="Blues", aspect="auto", vmin=0)
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(table.shape[0]), table.index, fontsize=7)
    ax.set_xlabel(f"discovered ({key})")
    ax.set_ylabel(f"known ({true_key})")
    accuracy = metrics.cluster_accuracy(known, found)
    ax.set_title(f"ACC {100 * accuracy:.1f} after matching")
    fig.colorbar(image, ax=ax, label="fraction of row" if normalize else "cells", shrink=0.8)
    return finish(fig, ax, show, return_fig)
