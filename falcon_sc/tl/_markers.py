"""``tl.subtype_markers``: marker genes of each discovered subtype against its siblings."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scanpy import logging as logg

from .._adata.preprocess import detect_input_kind, log_normalize
from .._adata.results import parent_of_cells

_FIELDS = ("names", "scores", "logfoldchanges", "pvals", "pvals_adj")


def subtype_markers(
    adata: ad.AnnData,
    key: str = "falcon",
    *,
    layer: str | None = None,
    method: str = "wilcoxon",
    n_genes: int = 100,
    key_added: str | None = None,
) -> None:
    """Rank marker genes of each discovered subtype against the other subtypes of its coarse class.

    For every coarse class with at least two subtypes of at least two cells, :func:`scanpy.tl.rank_genes_groups`
    compares each subtype with its siblings only (not with all other cells, which would mostly find the
    coarse class's own markers). Raw counts are log-normalised first (``normalize_total`` 1e4, ``log1p``, on
    a copy); log-normalised input is used as it is.

    Parameters
    ----------
    adata
        AnnData after :func:`falcon_sc.tl.discover_subtypes`.
    key
        ``key_added`` of that run.
    layer
        Expression to test (default ``adata.X``).
    method
        Test of :func:`scanpy.tl.rank_genes_groups`.
    n_genes
        Genes kept per subtype.
    key_added
        Where the result goes (default ``f"{key}_markers"``).

    Returns
    -------
    Sets ``adata.uns[key_added]`` in scanpy's ``rank_genes_groups`` layout (``params``, ``names``, ``scores``,
    ``logfoldchanges``, ``pvals``, ``pvals_adj``), one column per subtype that has siblings, so
    ``sc.pl.rank_genes_groups_dotplot(adata, key=key_added)`` and :func:`falcon_sc.pl.subtype_markers` show
    them; plus ``table``, all results as one long DataFrame with a ``coarse`` column.
    """
    parents = parent_of_cells(adata, key)
    key_added = key_added or f"{key}_markers"
    matrix = adata.layers[layer] if layer is not None else adata.X
    where = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
    counts = detect_input_kind(matrix, where) == "counts"
    n_genes = min(n_genes, adata.n_vars)

    tables, columns = [], {}
    for coarse in pd.unique(parents):
        cells = parents == coarse
        sizes = adata.obs.loc[cells, key].value_counts()
        testable = sizes.index[sizes >= 2].astype(str)
        if testable.size < 2:
            continue
        cells &= adata.obs[key].astype(str).isin(testable).to_numpy()
        sub = ad.AnnData(X=matrix[cells], var=pd.DataFrame(index=adata.var_names))
        sub.obs[key] = pd.Categorical(adata.obs[key].astype(str).to_numpy()[cells])
        if counts:
            log_normalize(sub)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            sc.tl.rank_genes_groups(sub, key, method=method, n_genes=n_genes, key_added="ranked")
        table = sc.get.rank_genes_groups_df(sub, None, key="ranked")
        table.insert(0, "coarse", coarse)
        tables.append(table)
        for subtype in sub.obs[key].cat.categories:
            ranked = sub.uns["ranked"]
            columns[subtype] = {field: np.asarray(ranked[field][subtype]) for field in _FIELDS}
    if not columns:
        raise ValueError(
            f"No coarse class has two subtypes of at least two cells in adata.obs[{key!r}]; nothing to compare."
        )
    order = [s for s in adata.obs[key].cat.categories if s in columns]
    result = {
        "params": {"groupby": key, "reference": "siblings", "method": method, "use_raw": False, "layer": layer},
        "table": pd.concat(tables, ignore_index=True),
    }
    for field in _FIELDS:
        dtype = object if field == "names" else np.float64
        result[field] = np.rec.fromarrays([columns[s][field].astype(dtype) for s in order], names=order)
    adata.uns[key_added] = result
    logg.info(f"    added .uns[{key_added!r}]: markers of {len(order)} subtypes against their siblings")
