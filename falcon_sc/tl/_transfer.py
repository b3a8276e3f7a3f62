"""``tl.transfer_subtypes``: label new cells with the subtypes a saved or in-memory model learned."""

from __future__ import annotations

import os

import anndata as ad

from .._docs import PREDICT_DOCS, doc_params
from ..falcon_model import FalconModel


@doc_params(**PREDICT_DOCS)
def transfer_subtypes(
    adata: ad.AnnData,
    model: FalconModel | str | os.PathLike,
    *,
    coarse_key: str | None = None,
    dataset: str | None = None,
    key_added: str = "falcon",
    layer: str | None = None,
    min_gene_overlap: float = 0.5,
    device: str = "cpu",
    copy: bool = False,
) -> ad.AnnData | None:
    """Transfer the fine classes of a trained FALCON model to the cells of ``adata``.

    The scanpy-style form of :meth:`falcon_sc.FalconModel.predict`. Genes are matched by name (order does not
    matter); counts are normalised and log-transformed as in training (the input kind is detected again).

    Parameters
    ----------
    {doc_adata_predict}
    model
        A :class:`~falcon_sc.FalconModel`, or the directory it was saved to.
    {doc_predict_options}

    Returns
    -------
    {doc_predict_returns}

    Examples
    --------
    >>> import falcon_sc as fs
    >>> model = fs.tl.discover_subtypes(reference, "cell_type", n_fine=9, return_model=True)
    >>> model.save("pbmc_model")
    >>> fs.tl.transfer_subtypes(query, "pbmc_model", coarse_key="cell_type")
    >>> query.obs["falcon"].value_counts()
    """
    if not isinstance(model, FalconModel):
        model = FalconModel.load(model)
    return model.predict(
        adata,
        coarse_key=coarse_key,
        dataset=dataset,
        key_added=key_added,
        layer=layer,
        min_gene_overlap=min_gene_overlap,
        device=device,
        copy=copy,
    )
