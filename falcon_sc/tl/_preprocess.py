"""Turn an AnnData's expression matrix into FALCON's dense input, without touching the AnnData."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scanpy import logging as logg
from scipy import sparse

_TARGET_SUM = 1e4
_SAMPLE_VALUES = 200_000


@dataclass(frozen=True)
class PreparedInput:
    data: np.ndarray  # (n_cells, n_genes) float32, log-normalised selected genes
    genes: pd.Index
    input_kind: str  # "counts" or "log-normalized"


def _stored_values(matrix) -> np.ndarray:
    """The explicitly stored values (all of them for dense input), without densifying sparse data."""
    if sparse.issparse(matrix):
        return np.asarray(matrix.data)
    return np.asarray(matrix).ravel()


def detect_input_kind(matrix, where: str) -> str:
    """``"counts"`` when every value is a non-negative integer, ``"log-normalized"`` when non-negative.

    Raises a ValueError for non-finite or negative values, which neither kind allows.
    """
    values = _stored_values(matrix)
    if values.size and not np.isfinite(values).all():
        raise ValueError(
            f"{where} contains non-finite values (NaN or inf). Remove or impute them before calling discover_subtypes."
        )
    if values.size and values.min() < 0:
        raise ValueError(
            f"{where} contains negative values, so it holds neither raw counts nor log-normalised data (it "
            "may be scaled or batch-corrected). Pass raw counts, e.g. layer='counts', or log1p-normalised data."
        )
    sample = values[:: max(1, values.size // _SAMPLE_VALUES)]
    return "counts" if np.all(sample == np.round(sample)) else "log-normalized"


def prepare_input(adata: ad.AnnData, *, layer: str | None, n_top_genes: int, batch_key: str | None) -> PreparedInput:
    """Select highly variable genes and return log-normalised dense values for them.

    Counts: seurat_v3 HVGs on the counts, ``normalize_total(1e4)`` on all genes, ``log1p``. Log-normalised
    input: scanpy's ``seurat`` HVG flavour on the values as they are. The full matrix is never densified:
    genes are subset while sparse and only the selected columns become dense.
    """
    matrix = adata.layers[layer] if layer is not None else adata.X
    where = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
    kind = detect_input_kind(matrix, where)
    logg.info(f"    input: {where} detected as {kind}")

    n_genes = adata.n_vars
    if n_top_genes >= n_genes:
        if n_top_genes > n_genes:
            warnings.warn(
                f"n_top_genes={n_top_genes} exceeds the {n_genes} genes available; using all genes.",
                UserWarning,
                stacklevel=3,
            )
        selected = np.arange(n_genes)
    else:
        # A lightweight AnnData that shares the matrix, so HVG selection writes nothing into the user's object.
        view = ad.AnnData(X=matrix, obs=adata.obs[[batch_key]] if batch_key else pd.DataFrame(index=adata.obs_names))
        view.var_names = adata.var_names
        flavor = "seurat_v3" if kind == "counts" else "seurat"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            hvg = sc.pp.highly_variable_genes(
                view, n_top_genes=n_top_genes, flavor=flavor, batch_key=batch_key, inplace=False
            )
        ranked = "highly_variable_rank" if flavor == "seurat_v3" else "dispersions_norm"
        score = hvg[ranked].to_numpy(dtype=np.float64)
        score = np.where(np.isfinite(score), score, np.inf if flavor == "seurat_v3" else -np.inf)
        order = np.argsort(score, kind="stable") if flavor == "seurat_v3" else np.argsort(-score, kind="stable")
        selected = np.sort(order[:n_top_genes])

    subset = matrix[:, selected]
    if kind == "counts":
        totals = np.asarray(matrix.sum(axis=1)).ravel().astype(np.float64)
        scale = np.divide(_TARGET_SUM, totals, out=np.zeros_like(totals), where=totals > 0)
        subset = sparse.diags(scale) @ subset if sparse.issparse(subset) else subset * scale[:, None]
        subset = subset.log1p() if sparse.issparse(subset) else np.log1p(subset)
    dense = subset.toarray() if sparse.issparse(subset) else np.asarray(subset)
    return PreparedInput(
        data=np.ascontiguousarray(dense, dtype=np.float32), genes=adata.var_names[selected], input_kind=kind
    )
