"""One table per run: what each discovered subtype is and how well the data support it."""

from __future__ import annotations

import anndata as ad
import pandas as pd

from .._adata.results import stored_result
from .._docs import doc_adata_result, doc_key, doc_params


@doc_params(doc_adata_result=doc_adata_result, doc_key=doc_key)
def subtype_report(adata: ad.AnnData, *, key: str = "falcon", n_markers: int = 3) -> pd.DataFrame:
    """A readable summary of a run: one row per subtype.

    Parameters
    ----------
    {doc_adata_result}
    {doc_key}
    n_markers
        Marker genes listed per subtype when :func:`falcon_sc.tl.subtype_markers` has run (with its default
        ``key_added``).

    Returns
    -------
    Indexed by subtype: ``parent``, ``n_cells``, ``confidence`` (mean ``obs[f"{key}_confidence"]`` of its
    cells), ``stability`` and ``supported`` (from ``uns[key]["support"]``), with ``sample_key`` also
    ``n_samples``, ``top_sample_share`` and ``one_sample``, ``allocated`` (fine classes its parent started
    with) and ``allocation_gain`` (the gain that won the parent its last one; NaN where the parent kept one or the
    counts were given) from ``uns[key]["allocation"]``, and ``markers`` (comma-separated, best first) after
    :func:`falcon_sc.tl.subtype_markers`.
    """
    if n_markers < 0:
        raise ValueError(f"n_markers must be ≥ 0, got {n_markers}.")
    stored = stored_result(adata, key)
    if "support" not in stored:
        raise KeyError(f"uns[{key!r}] has no support table (a transferred result); report a discover_subtypes run.")
    report = stored["support"].copy()
    confidence = adata.obs.groupby(key, observed=False)[f"{key}_confidence"].mean()
    report.insert(2, "confidence", confidence.reindex(report.index).astype(float))
    allocation = stored.get("allocation")
    if allocation is not None:  # why the parent has as many subtypes as it has
        report["allocated"] = allocation["start"].reindex(report["parent"]).to_numpy()
        report["allocation_gain"] = allocation["last_gain"].reindex(report["parent"]).to_numpy()
    markers = adata.uns.get(f"{key}_markers")
    if markers is not None and n_markers > 0:
        names = markers["names"]
        report["markers"] = [
            ", ".join(map(str, names[s][:n_markers])) if s in names.dtype.names else "" for s in report.index
        ]
    return report
