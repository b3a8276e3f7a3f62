"""A FALCON run's result as what ``discover_subtypes`` writes: fine classes ordered and named under their
parents, the ``uns`` entry, the saved model, and the report of subtypes left (nearly) empty."""

from __future__ import annotations

import numpy as np
from scanpy import logging as logg

from .._adata.labels import CoarseGroups
from .._adata.outputs import Outputs, h5ad_safe, relationship_view
from ..core import FalconConfig, FalconResult
from ..falcon_model import FalconModel


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
        "neighbors": _neighbor_summary(result),
        "cuda_graph": bool(result.cuda_graph),
        "genes": np.asarray(genes, dtype=object),
    }
    if groups.datasets:
        uns["relationships"] = views
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
    return Outputs(labels, fine_names, result.confidence, result.probs[:, order], uns, views, model)


def report_small_subtypes(outputs: Outputs, config: FalconConfig) -> None:
    """Name the subtypes that ended with fewer than ``max(5, min_subtype_share · n)`` cells (stored in
    ``uns[key]["small_subtypes"]``): FALCON found no cells for them, so n_fine is likely too large there."""
    n_cells = outputs.labels.size
    min_cells = max(5, int(np.ceil(config.min_subtype_share * n_cells)))
    counts = np.bincount(outputs.labels, minlength=len(outputs.fine_names))
    small = [name for name, count in zip(outputs.fine_names, counts, strict=True) if count < min_cells]
    outputs.uns["small_subtypes"] = np.asarray(small, dtype=object)
    if small:
        logg.warning(
            f"{len(small)} of {len(outputs.fine_names)} subtypes hold fewer than {min_cells} cells "
            f"({', '.join(small[:8])}{', …' if len(small) > 8 else ''}): the data gave FALCON no cells for them. "
            "A smaller n_fine, or n_fine='auto', fits these data better."
        )


def _neighbor_summary(result: FalconResult) -> dict:
    graph = result.neighbors
    summary = {"method": "approximate" if graph.n_approximate_groups else "exact"}
    if graph.n_approximate_groups:
        summary.update(n_approximate_groups=int(graph.n_approximate_groups), recall=float(graph.recall))
    return summary
