"""What a FALCON run writes into an AnnData, assembled before anything is written (shared by
``discover_subtypes`` and model transfer)."""

from __future__ import annotations

import copy as copy_module
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd


@dataclass
class Outputs:
    """Everything discover_subtypes writes, computed before anything is written."""

    labels: np.ndarray  # (n,) codes into fine_names
    fine_names: list[str]
    confidence: np.ndarray
    probs: np.ndarray
    uns: dict
    views: dict[str | None, dict]  # each dataset's relationship entries (one None entry for a single dataset)
    model: Any = None  # the FalconModel behind these outputs
    # further per-cell columns, written as obs[f"{key}_{name}"] (e.g. the coarse-label check)
    cells: dict[str, Any] = field(default_factory=dict)

    def subset(self, rows: slice, dataset: str) -> Outputs:
        """The outputs of some cells, whose top-level relationship entries are ``dataset``'s."""
        uns = copy_module.deepcopy(self.uns) | self.views[dataset]
        rows_of = (self.labels[rows], self.fine_names, self.confidence[rows], self.probs[rows])
        cells = {name: values[rows] for name, values in self.cells.items()}
        return Outputs(*rows_of, uns, self.views, self.model, cells)


def relationship_view(relationship, labels, coarse_names, fine_names) -> dict:
    """``relationship``, ``relationship_matrix``, ``coarse_names`` and ``fine_per_coarse`` of one dataset."""
    parents = relationship.argmax(1)
    n_coarse = len(coarse_names)
    return {
        "relationship": pd.DataFrame(
            {"coarse": [coarse_names[p] for p in parents], "n_cells": np.bincount(labels, minlength=len(fine_names))},
            index=fine_names,
        ),
        "relationship_matrix": relationship.astype(np.int8),
        "coarse_names": np.asarray(coarse_names, dtype=object),
        "fine_per_coarse": pd.DataFrame(
            {
                "n_fine": np.bincount(parents, minlength=n_coarse),
                "n_cells": np.bincount(parents[labels], minlength=n_coarse),
            },
            index=coarse_names,
        ),
    }


def write_outputs(adata: ad.AnnData, key: str, outputs: Outputs) -> None:
    adata.obs[key] = pd.Categorical.from_codes(outputs.labels, categories=outputs.fine_names)
    adata.obs[f"{key}_confidence"] = outputs.confidence
    adata.obsm[f"{key}_probs"] = outputs.probs
    for name, values in outputs.cells.items():
        adata.obs[f"{key}_{name}"] = values
    adata.uns[key] = outputs.uns


def h5ad_safe(value):
    """Drop None values and turn tuples into lists so that ``uns`` can be written to .h5ad."""
    if isinstance(value, Mapping):
        return {str(k): h5ad_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, tuple | list):
        return [h5ad_safe(v) for v in value]
    return value
