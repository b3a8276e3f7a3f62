"""``tl.discover_subtypes``: FALCON on an AnnData, scanpy style."""

from __future__ import annotations

import numbers
import os
import time
import warnings
from collections.abc import Mapping
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scanpy import logging as logg

from .. import __version__
from ..core import FalconConfig, FalconResult, fixed_relationship, get_config, run_falcon
from ..core.trainer import storage_dtype
from ._preprocess import prepare_input


def discover_subtypes(
    adata: ad.AnnData,
    coarse_key: str,
    *,
    n_fine: int | Mapping[str, int],
    key_added: str = "falcon",
    layer: str | None = None,
    batch_key: str | None = None,
    n_top_genes: int = 2000,
    preset: str | FalconConfig = "default",
    random_state: int = 0,
    device: str = "auto",
    progress: bool = True,
    copy: bool = False,
    **options: Any,
) -> ad.AnnData | None:
    """Discover fine-grained subtypes inside coarse cell labels with FALCON.

    FALCON (Grcić, Gadetsky & Brbić, ICML 2024) trains a fine-grained classifier whose predictions, summed
    through a learned fine → coarse relationship matrix M, must reproduce the coarse labels. It alternates
    between training the classifier (coarse loss through M, consistency with within-class neighbours under an
    EMA teacher, confident targets, a marginal regulariser) and solving M exactly as a small integer program.
    No fine-grained label is used.

    Parameters
    ----------
    adata
        Annotated data matrix, cells × genes. ``X`` (or ``layer``) holds raw counts (preferred) or
        log1p-normalised values; this is detected and logged. The object is never modified except for the
        outputs listed below, which are written only after the computation succeeded. A backed AnnData
        (``sc.read_h5ad(path, backed="r")``) is read in blocks of rows; outputs go to its in-memory
        annotations.
    coarse_key
        Column of ``adata.obs`` with the coarse labels (e.g. ``"cell_type"``).
    n_fine
        Total number of fine classes ``K_F`` to discover (at least the number of coarse classes); M is then
        learned. Or a mapping ``{coarse class: number of fine classes}`` covering every coarse class, which
        fixes M (no relationship solve).
    key_added
        Name under which the results are stored.
    layer
        Use ``adata.layers[layer]`` instead of ``adata.X``.
    batch_key
        Column of ``adata.obs`` passed to highly-variable-gene selection (e.g. the patient), as in the paper.
    n_top_genes
        Number of highly variable genes the classifier sees (seurat_v3 on counts). If larger than the number
        of genes, all genes are used with a warning.
    preset
        ``"default"`` (tuned for datasets of any size, including a few thousand cells) or ``"paper"`` (the
        published single-cell recipe unchanged), or a :class:`~falcon_sc.core.FalconConfig`.
    random_state
        Seed for initialisation, batches and neighbour sampling; CPU runs with the same seed are identical.
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Under ``torchrun``
        with an initialised process group, training is data-parallel over the ranks and ``"auto"`` picks
        ``cuda:LOCAL_RANK``.
    progress
        Show a progress bar over epochs.
    copy
        Return a modified copy instead of writing into ``adata``.
    **options
        Any :class:`~falcon_sc.core.FalconConfig` field overriding the preset, e.g. ``epochs=20``, ``lr=0.05``.

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``. Sets:

    ``adata.obs[key_added]``
        Categorical fine labels named after their parent, e.g. ``"T/0"``, ``"T/1"``.
    ``adata.obs[f"{key_added}_confidence"]``
        Probability of the assigned subtype among the subtypes of the cell's coarse class.
    ``adata.obsm[f"{key_added}_probs"]``
        Cells × K_F float32 probabilities over all fine classes (columns in ``uns[key_added]["fine_names"]``).
    ``adata.uns[key_added]``
        ``params``; ``relationship`` (fine → coarse table with cell counts); ``relationship_matrix`` (K_F × K_C
        0/1) with ``fine_names`` and ``coarse_names``; ``fine_per_coarse``; per-epoch ``history`` of every
        loss term and of M changes; stage ``timings``; final ``objective`` values (and each restart's in
        ``restart_objectives``); ``neighbors`` (``method`` exact/approximate, and the measured ``recall`` of an
        approximate search); ``cuda_graph`` (whether training steps were replayed as a CUDA graph); the
        ``genes`` used.

    Examples
    --------
    >>> import falcon_sc as fs
    >>> adata = fs.datasets.pbmc68k_hierarchy()
    >>> fs.tl.discover_subtypes(adata, "coarse", n_fine=10)
    >>> adata.obs["falcon"].value_counts()
    """
    start = logg.info(f"discovering subtypes of {coarse_key!r} with FALCON")
    t_start = time.perf_counter()
    config = get_config(preset, **options)
    torch_device = _resolve_device(device)
    coarse = _coarse_labels(adata, coarse_key)
    coarse_names = list(coarse.cat.categories)
    codes = coarse.cat.codes.to_numpy().astype(np.int64)
    fixed, n_fine_total = _fine_spec(n_fine, coarse_names, adata.n_obs)
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} not found; available layers: {list(adata.layers)}.")
    if batch_key is not None and batch_key not in adata.obs:
        raise KeyError(f"batch_key {batch_key!r} is not a column of adata.obs; available: {list(adata.obs)}.")
    if not adata.obs_names.is_unique:
        warnings.warn(
            "adata.obs_names are not unique; results are stored by position. Call adata.obs_names_make_unique() "
            "to be able to match cells by name.",
            UserWarning,
            stacklevel=2,
        )

    if copy and adata.isbacked:
        raise ValueError(
            "copy=True is not supported for a backed AnnData (a copy would have to be written to disk). Use "
            "copy=False (results go to the in-memory obs/obsm/uns) or load it with adata.to_memory() first."
        )

    t0 = time.perf_counter()
    prepared = prepare_input(adata, layer=layer, n_top_genes=n_top_genes, batch_key=batch_key)
    # Densified block by block straight onto the device (held here until run_falcon returns).
    data = prepared.to_tensor(torch_device, storage_dtype(config))
    t_pre = time.perf_counter() - t0
    logg.info(f"    using {prepared.shape[1]} genes of {prepared.input_kind} input")

    result = run_falcon(
        data,
        codes,
        n_coarse=len(coarse_names),
        n_fine=n_fine_total,
        fixed=fixed,
        config=config,
        random_state=random_state,
        device=torch_device,
        progress=progress,
    )
    del data
    result.timings = {"preprocessing": t_pre, **result.timings, "total": time.perf_counter() - t_start}

    params = {
        "coarse_key": coarse_key,
        "n_fine": n_fine_total,
        "fine_fixed": fixed is not None,
        "layer": layer,
        "batch_key": batch_key,
        "n_top_genes": n_top_genes,
        "input_kind": prepared.input_kind,
        "preset": preset if isinstance(preset, str) else "custom",
        "random_state": random_state,
        "device": str(torch_device),
        "config": config.to_dict(),
        "schedule": dict(
            batch_size=result.schedule.batch_size,
            steps_per_epoch=result.schedule.steps_per_epoch,
            epochs=result.schedule.epochs,
            total_steps=result.schedule.total_steps,
            solve_every=result.schedule.solve_every,
        ),
        "falcon_sc_version": __version__,
    }
    adata = adata.copy() if copy else adata
    _store(adata, key_added, result, coarse_names, prepared.genes, params)
    logg.info(
        "    finished",
        time=start,
        deep=(
            f"added\n    .obs[{key_added!r}], .obs['{key_added}_confidence'] (fine labels, confidence)\n"
            f"    .obsm['{key_added}_probs'] (fine-class probabilities)\n"
            f"    .uns[{key_added!r}] (relationship, history, params)"
        ),
    )
    return adata if copy else None


def stored_result(adata: ad.AnnData, key: str) -> dict:
    """``adata.uns[key]`` of a discover_subtypes run, or a KeyError saying how to get one."""
    if key not in adata.uns or "relationship" not in adata.uns[key] or key not in adata.obs:
        raise KeyError(f"adata holds no FALCON result under {key!r}; run falcon_sc.tl.discover_subtypes first.")
    return adata.uns[key]


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        # Under torchrun each process takes the GPU of its local rank.
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"Unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; use 'cpu' or 'auto'.")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"Unsupported device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'.")
    return resolved


def _coarse_labels(adata: ad.AnnData, coarse_key: str) -> pd.Series:
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"adata is empty ({adata.n_obs} cells × {adata.n_vars} genes); nothing to discover.")
    if coarse_key not in adata.obs:
        raise KeyError(f"coarse_key {coarse_key!r} is not a column of adata.obs; available: {list(adata.obs)}.")
    labels = adata.obs[coarse_key]
    as_text = labels.astype("string")
    missing = labels.isna().to_numpy() | (as_text.str.strip() == "").fillna(True).to_numpy()
    if missing.any():
        raise ValueError(
            f"{int(missing.sum())} cell(s) have a missing or empty label in adata.obs[{coarse_key!r}]. Remove "
            "them (e.g. adata = adata[adata.obs[coarse_key].notna()].copy()) or give them a label."
        )
    categorical = labels.astype("category")
    return categorical.cat.remove_unused_categories()


def _fine_spec(n_fine, coarse_names: list[str], n_cells: int) -> tuple[np.ndarray | None, int]:
    """The fixed relationship (for a per-class mapping) or None, and the total number of fine classes."""
    n_coarse = len(coarse_names)
    if isinstance(n_fine, Mapping):
        keys = {str(k) for k in n_fine}
        names = [str(c) for c in coarse_names]
        unknown = sorted(keys - set(names))
        absent = [c for c in names if c not in keys]
        if unknown or absent:
            raise ValueError(
                "n_fine as a mapping must give a count for every coarse class and nothing else; "
                f"unknown classes: {unknown}, missing classes: {absent}."
            )
        by_name = {str(k): v for k, v in n_fine.items()}
        counts = [by_name[c] for c in names]
        if any(not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1 for v in counts):
            raise ValueError(f"Every per-class fine count must be an integer ≥ 1, got {by_name}.")
        fixed = fixed_relationship(np.asarray(counts))
        total = int(sum(counts))
    elif isinstance(n_fine, numbers.Integral) and not isinstance(n_fine, bool):
        fixed, total = None, int(n_fine)
        if total < n_coarse:
            raise ValueError(
                f"n_fine={total} is smaller than the {n_coarse} coarse classes; every coarse class needs at least "
                f"one fine class, so use n_fine ≥ {n_coarse}."
            )
    else:
        raise TypeError(f"n_fine must be an int or a mapping {{coarse class: count}}, got {type(n_fine).__name__}.")
    if total > n_cells:
        raise ValueError(f"n_fine={total} exceeds the number of cells ({n_cells}); use fewer fine classes.")
    return fixed, total


def _fine_order(result: FalconResult, n_coarse: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Order fine classes by parent, then by size; return the order, per-parent rank and parents."""
    parents = result.relationship.argmax(1)
    sizes = np.bincount(result.labels, minlength=parents.size)
    order = np.lexsort((np.arange(parents.size), -sizes, parents))
    ranks = np.zeros(parents.size, dtype=int)
    for c in range(n_coarse):
        members = order[parents[order] == c]
        ranks[members] = np.arange(members.size)
    return order, ranks, parents


def _store(adata, key, result: FalconResult, coarse_names, genes, params) -> None:
    n_coarse = len(coarse_names)
    order, ranks, parents = _fine_order(result, n_coarse)
    fine_names = [f"{coarse_names[parents[f]]}/{ranks[f]}" for f in order]
    new_index = np.empty(order.size, dtype=np.int64)
    new_index[order] = np.arange(order.size)
    labels = new_index[result.labels]
    sizes = np.bincount(labels, minlength=order.size)
    relationship = result.relationship[order]
    fine_per_coarse = np.bincount(relationship.argmax(1), minlength=n_coarse)

    adata.obs[key] = pd.Categorical.from_codes(labels, categories=fine_names)
    adata.obs[f"{key}_confidence"] = result.confidence
    adata.obsm[f"{key}_probs"] = result.probs[:, order]
    adata.uns[key] = {
        "params": _h5ad_safe(params),
        "relationship": pd.DataFrame(
            {"coarse": [coarse_names[parents[f]] for f in order], "n_cells": sizes}, index=fine_names
        ),
        "relationship_matrix": relationship.astype(np.int8),
        "fine_names": np.asarray(fine_names, dtype=object),
        "coarse_names": np.asarray([str(c) for c in coarse_names], dtype=object),
        "fine_per_coarse": pd.DataFrame(
            {"n_fine": fine_per_coarse, "n_cells": np.bincount(parents[result.labels], minlength=n_coarse)},
            index=[str(c) for c in coarse_names],
        ),
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


def _neighbor_summary(result: FalconResult) -> dict:
    graph = result.neighbors
    summary = {"method": "approximate" if graph.n_approximate_groups else "exact"}
    if graph.n_approximate_groups:
        summary.update(n_approximate_groups=int(graph.n_approximate_groups), recall=float(graph.recall))
    return summary


def _h5ad_safe(value):
    """Drop None values and turn tuples into lists so that ``uns`` can be written to .h5ad."""
    if isinstance(value, Mapping):
        return {str(k): _h5ad_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, tuple | list):
        return [_h5ad_safe(v) for v in value]
    return value
