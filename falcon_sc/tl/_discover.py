"""``tl.discover_subtypes``: FALCON on an AnnData, scanpy style."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import anndata as ad

from .._adata.labels import COARSE_COLUMN, DATASET_COLUMN, combine, is_collection, named_objects
from .._adata.outputs import write_outputs
from .._docs import doc_key_added, doc_layer, doc_params
from ..core import FalconConfig
from ..falcon_model import FalconModel
from ._compute import run_discovery
from ._settings import DiscoverySettings


@doc_params(doc_key_added=doc_key_added, doc_layer=doc_layer)
def discover_subtypes(
    adata: ad.AnnData | Sequence[ad.AnnData] | Mapping[str, ad.AnnData],
    coarse_key: str | Sequence[str],
    *,
    n_fine: int | Mapping[str, int] | Literal["auto"],
    n_fine_range: tuple[int, int] | None = None,
    dataset_key: str | None = None,
    key_added: str = "falcon",
    layer: str | None = None,
    use_rep: str | None = None,
    batch_key: str | None = None,
    sample_key: str | None = None,
    merge_unsupported: bool = False,
    n_top_genes: int = 2000,
    total_counts_feature: bool | Literal["auto"] = "auto",
    target_sum: float | Literal["auto"] = "auto",
    preset: str | FalconConfig = "default",
    random_state: int = 0,
    device: str = "auto",
    n_jobs: int | None = None,
    progress: bool = True,
    copy: bool = False,
    return_model: bool = False,
    **options: Any,
) -> ad.AnnData | list[ad.AnnData] | dict[str, ad.AnnData] | FalconModel | tuple | None:
    """Discover fine-grained subtypes inside coarse cell labels with FALCON.

    FALCON (Grcić, Gadetsky & Brbić, ICML 2024) trains a fine-grained classifier whose predictions, summed
    through a learned fine → coarse relationship matrix M, must reproduce the coarse labels. It alternates
    between training the classifier (coarse loss through M, consistency with within-class neighbours under an
    EMA teacher, confident targets, a marginal regulariser) and solving M exactly as a small integer program.
    No fine-grained label is used.

    Several datasets whose coarse labels group the same fine classes differently (by lineage in one study, by
    function in another) train one shared fine classifier with one relationship M_l per dataset: give
    ``dataset_key``, or a list (or ``{name: AnnData}`` mapping) of AnnData objects.

    Parameters
    ----------
    adata
        Annotated data matrix, cells × genes. ``X`` (or ``layer``) holds raw counts (preferred) or
        log1p-normalised values; this is detected and logged. The object is never modified except for the
        outputs listed below, which are written only after the computation succeeded. A backed AnnData
        (``sc.read_h5ad(path, backed="r")``) is read in blocks of rows; outputs go to its in-memory
        annotations. A list or mapping of in-memory AnnData objects is combined on the genes they share
        (matched by name; the overlap is logged) and each object receives the outputs for its own cells.
    coarse_key
        Column of ``adata.obs`` with the coarse labels (e.g. ``"cell_type"``). For a list of objects, one
        column name for all or one per object.
    n_fine
        Total number of fine classes ``K_F`` to discover (at least the number of coarse classes of any
        dataset); M is then learned. Or, for one dataset, a mapping ``{coarse class: number of fine classes}``
        covering every coarse class, which fixes M (no relationship solve). Or ``"auto"``: K_F is estimated
        from the data (no fine labels; see :func:`falcon_sc.core.estimate_n_fine`); with ``n_restarts`` > 1 it is
        then raised one class at a time while the restarts agree at least as well. The estimate with its
        evidence is stored in ``uns[key_added]["n_fine_estimate"]``.
    n_fine_range
        ``(lower, upper)`` bounds for ``n_fine="auto"``.
    dataset_key
        Column of ``adata.obs`` saying which dataset each cell comes from. Coarse labels are then read within
        their dataset (the same label in two datasets is two different classes), neighbours are searched
        within each (dataset, coarse class), and one relationship is learned per dataset.
    {doc_key_added}
    {doc_layer}
    use_rep
        Key of ``adata.obsm`` whose embedding the classifier and the within-class neighbour search work on,
        instead of the genes: e.g. ``"X_scVI"`` or ``"X_pca_harmony"``, so that subtypes follow cell states and
        not the batches the embedding corrected. Its dimensions are used as they are (not z-scored, unless
        ``standardize=True`` is given). ``layer``, ``batch_key``, ``n_top_genes`` and the total-counts feature
        then do not apply. Stored in ``params``; a saved model reads the same key of new cells.
    batch_key
        Column of ``adata.obs`` passed to highly-variable-gene selection (e.g. the patient), as in the paper.
        It only selects genes: to keep subtypes from splitting by batch, give a corrected embedding
        (``use_rep``).
    sample_key
        Column of ``adata.obs`` naming each cell's sample or donor. ``uns[key_added]["support"]`` then also
        gives, per subtype, ``n_samples`` (samples with at least 5 of its cells), ``top_sample_share`` and
        ``one_sample`` (fewer than two such samples, or 90 % of the cells from one), and subtypes that come from
        one sample are named in a warning.
    merge_unsupported
        Give the cells of every subtype that ``uns[key_added]["support"]`` does not support (too few cells,
        unstable across restarts, or a split no better than a structure-free null) to its most probable
        supported sibling, and say so. The merged subtypes keep their names with no cells;
        ``support["merged_into"]`` and ``params["merged"]`` record the merges, and a saved model no longer
        predicts them. One dataset only.
        With several datasets and no ``batch_key``, genes are selected per dataset.
    n_top_genes
        Number of highly variable genes the classifier sees (seurat_v3 on counts). If larger than the number
        of genes, all genes are used (logged at info level).
    total_counts_feature
        Keep each cell's ``log1p(total counts)`` as one more feature. ``"auto"`` does so for counts with at most
        500 genes (a targeted panel: with a few dozen genes, total counts reflect cell size, which
        ``normalize_total`` erases, and cell size differs between types). The choice is stored in
        ``uns[key_added]["params"]["total_counts_feature"]``, and a saved model applies it to new cells.
    target_sum
        The total each cell's counts are scaled to before ``log1p`` (counts only). ``"auto"`` reads it from the
        depth of the data: the median total count for a panel (at most 500 genes) whose median cell holds at
        least 0.7 molecules per gene (imaging panels such as smFISH or MERFISH, whose counts are quantitative),
        else 10,000 (the paper's; droplet data, whole transcriptome or a gene subset). The value used is stored
        in ``uns[key_added]["params"]["normalize_total"]`` and a saved model applies it to new cells.
    preset
        ``"default"`` (tuned for datasets of any size, including a few thousand cells) or ``"paper"`` (the
        published single-cell recipe unchanged), or a :class:`~falcon_sc.core.FalconConfig`.
    random_state
        Seed for initialisation, batches and neighbour sampling; CPU runs with the same seed are identical.
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Under ``torchrun``
        with an initialised process group, training is data-parallel over the ranks and ``"auto"`` picks
        ``cuda:LOCAL_RANK``.
    n_jobs
        CPU threads for the PCA, the neighbour search and the estimate of ``n_fine="auto"`` (``None``: one for
        fewer than 20,000 cells, where more do not pay and slow down when other processes share the cores, else
        torch's current setting, one per physical core by default; ``-1``: every core). k-means and the training steps
        run on ``training_threads`` (an option, default 1): with more, training is faster alone but slows down
        more than tenfold when other processes (another kernel, a CI job) compete for the cores. The caller's
        thread settings are restored afterwards.
    progress
        Show a progress bar over epochs.
    copy
        Return a modified copy (a list or mapping of copies for several objects) instead of writing in place.
    return_model
        Also return the trained :class:`~falcon_sc.FalconModel` (to save, or to transfer the subtypes to new
        cells): the model alone, or ``(copy, model)`` with ``copy=True``.
    **options
        Any :class:`~falcon_sc.core.FalconConfig` field overriding the preset, e.g. ``epochs=20``, ``lr=0.05``.

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True`` (see ``return_model``). Sets:

    ``adata.obs[key_added]``
        Categorical fine labels named after their parent, e.g. ``"T/0"``, ``"T/1"`` (with several datasets,
        after their parent in the first dataset).
    ``adata.obs[f"{key_added}_confidence"]``
        Probability of the assigned subtype among the subtypes of the cell's coarse class.
    ``adata.obsm[f"{key_added}_probs"]``
        Cells × K_F float32 probabilities over all fine classes (columns in ``uns[key_added]["fine_names"]``).
    ``adata.obs[f"{key_added}_coarse_agreement"]``, ``adata.obs[f"{key_added}_suggested_coarse"]``
        The coarse-label check: the classifier's mass on the cell's own coarse class, averaged over its
        ``coarse_check_neighbors`` (an option, default 15) nearest cells of any coarse class, and the coarse
        class where that mass is largest. A low agreement flags a coarse label the data contradict; see
        :func:`falcon_sc.tl.suspect_labels`.
    ``adata.uns[key_added]``
        ``params``; ``relationship`` (fine → coarse table with cell counts); ``relationship_matrix`` (K_F × K_C
        0/1) with ``fine_names`` and ``coarse_names``; ``fine_per_coarse``; per-epoch ``history`` of every
        loss term and of M changes; stage ``timings``; final ``objective`` values (and each restart's in
        ``restart_objectives``); ``neighbors`` (``method`` exact/approximate, ``n_neighbors`` per cell in each
        coarse class, fewer in classes of small subtypes (option ``neighbor_share``), and the measured ``recall``
        of an approximate search); ``cuda_graph`` (whether training steps were replayed as a CUDA graph); the
        ``genes`` used; ``support``, one row per subtype: ``n_cells``, ``stability`` (mean best-match Jaccard
        with the other restarts), ``separation`` and ``p_value`` (its split from the nearest sibling against
        a structure-free Gaussian null, option ``support_null_draws``), ``supported``, and with
        ``sample_key`` the sample columns (see :func:`falcon_sc.tl.subtype_report`). With several datasets,
        ``relationships`` holds ``relationship``,
        ``relationship_matrix``, ``coarse_names`` and ``fine_per_coarse`` of each dataset (cell counts over
        that dataset's cells), and the top-level entries are the first dataset's (with a list of objects, each
        object's own).

    Examples
    --------
    >>> import falcon_sc as fs
    >>> adata = fs.datasets.pbmc68k_hierarchy()
    >>> fs.tl.discover_subtypes(adata, "coarse", n_fine=10)
    >>> adata.obs["falcon"].value_counts()
    """
    # every option checked before any work (also before combining several objects)
    settings = DiscoverySettings.build(
        preset=preset,
        options=options,
        n_fine=n_fine,
        n_fine_range=n_fine_range,
        key_added=key_added,
        layer=layer,
        use_rep=use_rep,
        batch_key=batch_key,
        sample_key=sample_key,
        merge_unsupported=merge_unsupported,
        n_top_genes=n_top_genes,
        total_counts_feature=total_counts_feature,
        target_sum=target_sum,
        random_state=random_state,
        device=device,
        n_jobs=n_jobs,
        progress=progress,
        copy=copy,
        return_model=return_model,
    )
    return discover_with(adata, coarse_key, dataset_key, settings)


def discover_with(adata, coarse_key, dataset_key, settings: DiscoverySettings):
    """``discover_subtypes`` with its options already built into ``settings`` (what the command line calls)."""
    copy, return_model = settings.copy, settings.return_model
    if is_collection(adata):
        if dataset_key is not None:
            raise ValueError("dataset_key is for one AnnData holding several datasets; a list names them itself.")
        return _discover_objects(adata, coarse_key, settings)
    if not isinstance(coarse_key, str):
        raise TypeError("coarse_key must be one column name for a single AnnData.")
    if copy and adata.isbacked:
        raise ValueError(
            "copy=True is not supported for a backed AnnData (a copy would have to be written to disk). Use "
            "copy=False (results go to the in-memory obs/obsm/uns) or load it with adata.to_memory() first."
        )
    outputs = run_discovery(adata, coarse_key, dataset_key, settings)
    adata = adata.copy() if copy else adata
    write_outputs(adata, settings.key_added, outputs)
    return _returned(adata if copy else None, outputs.model if return_model else None)


def _returned(copies, model):
    """What discover_subtypes returns: the copies and/or the model, or None."""
    if model is None:
        return copies
    return model if copies is None else (copies, model)


def _discover_objects(adatas, coarse_key, settings: DiscoverySettings):
    """discover_subtypes on several AnnData objects: combine, run once, give each object its cells' outputs."""
    copy, return_model = settings.copy, settings.return_model
    if settings.sample_key is not None:
        raise ValueError(
            "sample_key with several AnnData objects: concatenate them with anndata.concat and pass dataset_key."
        )
    if settings.use_rep is not None:
        raise ValueError(
            "use_rep with several AnnData objects: concatenate them with anndata.concat (which keeps a shared "
            "obsm embedding) and pass dataset_key to say which dataset each cell comes from."
        )
    objects = named_objects(adatas)
    keys = [coarse_key] * len(objects) if isinstance(coarse_key, str) else list(coarse_key)
    if len(keys) != len(objects):
        raise ValueError(f"Got {len(keys)} coarse keys for {len(objects)} AnnData objects; give one or one each.")
    combined = combine(objects, keys, layer=settings.layer, batch_key=settings.batch_key)
    outputs = run_discovery(combined, COARSE_COLUMN, DATASET_COLUMN, settings.replace(layer=None))
    outputs.uns["params"].update(coarse_key=keys, dataset_key=None, layer=settings.layer)
    results = {name: (objects[name].copy() if copy else objects[name]) for name in objects}
    start = 0
    for (name, obj), key in zip(results.items(), keys, strict=True):
        own = outputs.subset(slice(start, start + obj.n_obs), dataset=name)
        own.uns["params"].update(coarse_key=key, dataset=name)
        write_outputs(obj, settings.key_added, own)
        start += obj.n_obs
    copies = None
    if copy:
        copies = results if isinstance(adatas, Mapping) else list(results.values())
    return _returned(copies, outputs.model if return_model else None)
