"""A FALCON run's result as what ``discover_subtypes`` writes: fine classes ordered and named under their
parents, the ``uns`` entry, the saved model, and the report of subtypes left (nearly) empty."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scanpy import logging as logg

from .._adata.labels import CoarseGroups
from .._adata.outputs import Outputs, h5ad_safe, relationship_view
from ..core import FalconConfig, FalconResult
from ..core.support import subtype_stability
from ..falcon_model import FalconModel

#: Below this stability (mean best-match Jaccard with the other restarts) a subtype is not supported: subtypes
#: that K_F forced on a class without substructure scored 0.01 to 0.38 (when not empty) with k-means warm starts,
#: real ones 0.60 to 1 (simulated, tests/test_support.py). With spectral warm starts (the default on
#: whole transcriptomes) they reached 0.56 to 0.64 on the same data; the separation test (MAX_P_VALUE) flags them.
MIN_STABILITY = 0.5
#: Above this p-value of the separation test (:func:`~falcon_sc.core.support.separation_test`) a subtype's split
#: from its nearest sibling is not supported: a structure-free class could give as good a split.
MAX_P_VALUE = 0.05
#: A subtype with fewer than ``max(5, MIN_SUBTYPE_SHARE · n)`` of a run's n cells is (nearly) empty: reported, and
#: not supported.
MIN_SUBTYPE_SHARE = 0.001


def min_subtype_cells(n_cells: int) -> int:
    """Fewest cells a subtype of a run on ``n_cells`` cells may hold before it counts as (nearly) empty."""
    return max(5, int(np.ceil(MIN_SUBTYPE_SHARE * n_cells)))


def fine_order(relationship: np.ndarray, labels: np.ndarray, n_coarse: int) -> tuple[np.ndarray, np.ndarray]:
    """Order fine classes by parent (in the first dataset), then by size; return the order and each class's
    rank among its siblings."""
    parents = relationship.argmax(1)  # each row's first 1: its parent in the first dataset
    sizes = np.bincount(labels, minlength=parents.size)
    order = np.lexsort((np.arange(parents.size), -sizes, parents))
    ranks = np.zeros(parents.size, dtype=int)
    for c in range(n_coarse):
        members = order[parents[order] == c]
        ranks[members] = np.arange(members.size)
    return order, ranks


def outputs_of(
    result: FalconResult, groups: CoarseGroups, genes, params, config: FalconConfig, preprocessing: dict
) -> Outputs:
    first_names = groups.coarse_names[0]
    order, ranks = fine_order(result.relationship, result.labels, len(first_names))
    parents = result.relationship.argmax(1)
    fine_names = [f"{first_names[parents[f]]}/{ranks[f]}" for f in order]
    new_index = np.empty(order.size, dtype=np.int64)
    new_index[order] = np.arange(order.size)
    labels = new_index[result.labels]

    views = {}
    for d, (matrix, names) in enumerate(zip(result.relationships(), groups.coarse_names, strict=True)):
        cells = groups.dataset_of_cell == d
        name = groups.datasets[d] if groups.datasets else None
        views[name] = relationship_view(matrix[order], labels[cells], names, fine_names)
    uns = {
        "params": h5ad_safe(params),
        **next(iter(views.values())),
        "fine_names": np.asarray(fine_names, dtype=object),
        "history": {k: np.asarray(v, dtype=np.float64) for k, v in result.history.items()},
        "timings": {k: float(v) for k, v in result.timings.items()},
        "objective": {k: float(v) for k, v in result.objective.items()},
        "n_solves": int(result.n_solves),
        "n_recoveries": int(result.n_recoveries),
        "restart_objectives": np.asarray(result.restart_objectives, dtype=np.float64),
        "neighbors": _neighbor_summary(result, groups.codes),
        "cuda_graph": bool(result.cuda_graph),
        "genes": np.asarray(genes, dtype=object),
    }
    if groups.datasets:
        uns["relationships"] = views
    if result.allocation is not None:
        uns["allocation"] = _allocation_table(result, first_names, groups)
    min_cells = min_subtype_cells(labels.size)
    uns["support"] = _support(result, labels, order, fine_names, parents, first_names, min_cells)
    model = FalconModel(
        result.classifier.reorder_outputs(order),
        genes=genes,
        fine_names=fine_names,
        relationships=[
            {
                "dataset": name,
                "coarse_names": list(view["coarse_names"]),
                "parents": view["relationship_matrix"].argmax(1),
            }
            for name, view in views.items()
        ],
        preprocessing={
            **preprocessing,
            "representation": config.representation,
            "standardize": config.standardize,
            "max_value": config.max_value,
        },
        training=uns["params"],
    )
    cells = coarse_check(result.neighbor_coarse_mass, groups) if result.neighbor_coarse_mass is not None else {}
    return Outputs(labels, fine_names, result.confidence, result.probs[:, order], uns, views, model, cells)


def coarse_check(mass: np.ndarray, groups: CoarseGroups) -> dict:
    """Per cell: ``coarse_agreement``, the neighbours' mass on the cell's own coarse class, and
    ``suggested_coarse``, the class of its dataset where that mass is largest (``core.label_check``)."""
    agreement = mass[np.arange(groups.codes.size), groups.codes]
    suggested = np.empty(groups.codes.size, dtype=object)
    start = 0
    for d, names in enumerate(groups.coarse_names):
        cells = groups.dataset_of_cell == d
        block = mass[cells, start : start + len(names)]
        suggested[cells] = np.asarray(names, dtype=object)[block.argmax(1)]
        start += len(names)
    categories = list(dict.fromkeys(name for names in groups.coarse_names for name in names))
    return {
        "coarse_agreement": agreement.astype(np.float32),
        "suggested_coarse": pd.Categorical(suggested, categories=categories),
    }


def _support(result: FalconResult, labels, order, fine_names, parents, coarse_names, min_cells) -> pd.DataFrame:
    """One row per subtype: its parent, cells, ``stability`` (best-match Jaccard with the other restarts,
    :func:`~falcon_sc.core.support.subtype_stability`; NaN after a single run), ``separation`` and ``p_value``
    of its split from the nearest sibling against a structure-free null
    (:func:`~falcon_sc.core.support.separation_test`), and ``supported``: at least ``min_cells`` cells, a
    stability of at least ``MIN_STABILITY`` and a p-value of at most ``MAX_P_VALUE`` (each where known)."""
    stability = subtype_stability(result.labels, result.other_restart_labels, order.size)[order]
    n_cells = np.bincount(labels, minlength=order.size)
    separation = np.full((order.size, 2), np.nan) if result.separation is None else result.separation[order]
    # NaN (single run, no sibling, no test) does not count against a subtype
    supported = (n_cells >= min_cells) & ~(stability < MIN_STABILITY) & ~(separation[:, 1] > MAX_P_VALUE)
    return pd.DataFrame(
        {
            "parent": [coarse_names[parents[f]] for f in order],
            "n_cells": n_cells,
            "stability": stability,
            "separation": separation[:, 0],
            "p_value": separation[:, 1],
            "supported": supported,
        },
        index=fine_names,
    )


def merge_unsupported(outputs: Outputs) -> dict[str, str]:
    """Give the cells of every unsupported subtype to a supported sibling, in place: each cell goes to the
    sibling the classifier finds most probable. A class none of whose splits is supported keeps one subtype,
    its largest. The merged subtypes stay as names without cells; ``uns["support"]["merged_into"]`` and the
    returned mapping (merged → the sibling that took most of its cells) record what happened."""
    support = outputs.uns["support"]
    index = {name: i for i, name in enumerate(outputs.fine_names)}
    merged = {}
    for _, rows in support.groupby("parent", sort=False):
        alive = rows[rows["n_cells"] > 0]
        keep, drop = alive.index[alive["supported"]], alive.index[~alive["supported"]]
        if keep.empty:  # no split of this class is supported: it stays one subtype
            keep = pd.Index([alive["n_cells"].idxmax()]) if len(alive) else keep
            drop = drop.drop(keep)
        targets = np.array([index[k] for k in keep])
        for name in drop:
            cells = np.flatnonzero(outputs.labels == index[name])
            outputs.labels[cells] = targets[outputs.probs[np.ix_(cells, targets)].argmax(1)]
            merged[name] = outputs.fine_names[int(np.bincount(outputs.labels[cells]).argmax())]
    parents = support["parent"].to_numpy()
    live = ~np.isin(np.asarray(outputs.fine_names), list(merged))
    siblings = (parents[:, None] == parents[None, :]) & live[None, :]  # (K_F, K_F): the kept of each class
    mass = (outputs.probs * siblings[outputs.labels]).sum(1)
    outputs.confidence = (outputs.probs[np.arange(outputs.labels.size), outputs.labels] / mass).astype(np.float32)
    counts = np.bincount(outputs.labels, minlength=len(outputs.fine_names))
    outputs.uns["relationship"]["n_cells"] = counts
    outputs.uns["support"] = support.assign(n_cells=counts, merged_into=[merged.get(f, "") for f in support.index])
    return merged


def sample_support(sample: pd.Series, labels: np.ndarray, fine_names: list[str], min_cells: int) -> pd.DataFrame:
    """Per subtype: samples (donors) contributing at least ``min_cells`` of its cells, the largest share one
    sample holds, and ``one_sample``: fewer than two such samples, or one sample with 90 % of the cells."""
    table = pd.crosstab(pd.Categorical.from_codes(labels, categories=fine_names), sample.to_numpy(), dropna=False)
    table = table.reindex(fine_names, fill_value=0)
    totals = table.sum(1)
    n_samples = (table >= min_cells).sum(1)
    top_share = (table.max(1) / totals.where(totals > 0)).astype(float)
    return pd.DataFrame(
        {"n_samples": n_samples, "top_sample_share": top_share, "one_sample": (n_samples < 2) | (top_share >= 0.9)},
        index=fine_names,
    )


def report_small_subtypes(outputs: Outputs) -> None:
    """Name the subtypes that ended with fewer than :func:`min_subtype_cells` cells (stored in
    ``uns[key]["small_subtypes"]``). Training merged them into their neighbours; that does not prove the data lack
    them (on Zeisel's interneurons k-means within the class finds subtypes FALCON merges), so the warning says what
    happened and what to try, and does not blame the data."""
    min_cells = min_subtype_cells(outputs.labels.size)
    counts = np.bincount(outputs.labels, minlength=len(outputs.fine_names))
    small = [name for name, count in zip(outputs.fine_names, counts, strict=True) if count < min_cells]
    outputs.uns["small_subtypes"] = np.asarray(small, dtype=object)
    if small:
        logg.warning(
            f"{len(small)} of {len(outputs.fine_names)} subtypes hold fewer than {min_cells} cells "
            f"({first_names(small)}): training merged them into their neighbours. "
            "If you expect them, give their coarse classes their own counts (n_fine as a dict) and compare with "
            "k-means inside the class; otherwise a smaller n_fine gives the same partition without empty subtypes."
        )


def _allocation_table(result: FalconResult, coarse_names, groups: CoarseGroups) -> pd.DataFrame:
    """One row per coarse class of the first dataset: its cells, the fine classes it started with (``start``) and
    holds in the result (``n_subtypes``; the M-step may move one), how the start was chosen (``method``) and, for
    the structure allocation, the criterion's gain when the class won its last fine class (``last_gain``) and its
    gain for one more (``next_gain``; see :class:`~falcon_sc.core.allocation.Allocation`)."""
    allocation = result.allocation
    first = groups.dataset_of_cell == 0
    return pd.DataFrame(
        {
            "n_cells": np.bincount(groups.codes[first], minlength=len(coarse_names)),
            "start": allocation.counts,
            "n_subtypes": result.relationships()[0].sum(0).astype(np.int64),
            "method": allocation.method,
            "last_gain": allocation.last_gain,
            "next_gain": allocation.next_gain,
        },
        index=pd.Index(list(coarse_names), name="coarse"),
    )


def first_names(names: list[str], limit: int = 8) -> str:
    """The first ``limit`` names, comma-separated, with "…" when there are more (for warnings)."""
    return ", ".join(names[:limit]) + (", …" if len(names) > limit else "")


def _neighbor_summary(result: FalconResult, group_of_cell: np.ndarray) -> dict:
    graph = result.neighbors
    # neighbours per cell in each coarse class (of each dataset in turn): fewer in classes of small subtypes
    per_group = np.zeros(int(group_of_cell.max()) + 1, dtype=np.int64)
    per_group[group_of_cell] = graph.n_valid
    summary = {"method": "approximate" if graph.n_approximate_groups else "exact", "n_neighbors": per_group}
    if graph.n_approximate_groups:
        summary.update(n_approximate_groups=int(graph.n_approximate_groups), recall=float(graph.recall))
    return summary
