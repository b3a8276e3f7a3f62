"""Cells whose coarse label the data contradict, from the check ``discover_subtypes`` stores."""

from __future__ import annotations

import anndata as ad
import pandas as pd

from .._adata.results import suspect_table
from .._docs import doc_adata_result, doc_key, doc_params


@doc_params(doc_adata_result=doc_adata_result, doc_key=doc_key)
def suspect_labels(adata: ad.AnnData, *, key: str = "falcon", threshold: float = 0.5) -> pd.DataFrame:
    """Cells whose coarse label looks wrong: their neighbours put less than ``threshold`` of the classifier's
    mass on the cell's own coarse class.

    The classifier is trained on every cell's coarse label, so its prediction for a mislabelled cell follows
    the wrong label; the check therefore reads the predictions of the cell's nearest cells over all coarse
    classes (``obs[f"{key}_coarse_agreement"]``, written by :func:`~falcon_sc.tl.discover_subtypes`). On
    simulated data with 5 % of the coarse labels flipped, the default threshold finds them with recall and
    precision of at least 0.95 (``tests/test_label_check.py``).

    Parameters
    ----------
    {doc_adata_result}
    {doc_key}
    threshold
        Largest agreement, in [0, 1], at which a cell is listed.

    Returns
    -------
    One row per suspected cell (indexed like ``adata.obs``), lowest agreement first: ``coarse`` (its label),
    ``suggested`` (the coarse class its neighbours point to) and ``agreement``.
    """
    return suspect_table(adata, key, threshold)
