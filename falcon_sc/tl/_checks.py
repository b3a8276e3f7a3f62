"""Checks of ``tl.discover_subtypes``'s inputs, made before any computation: each error names the problem and
the fix, and nothing has been written to the AnnData yet."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .._adata.labels import CoarseGroups, checked_labels
from ..core import fixed_relationship
from ..core.estimate import check_bounds


@dataclass(frozen=True)
class FineRequest:
    """What ``n_fine`` asks for: ``auto`` (estimate, at most ``upper``), or a total ``n_fine`` with, for a
    per-class mapping, the ``fixed`` relationship."""

    auto: bool
    upper: int | None
    fixed: np.ndarray | None
    n_fine: int | None


def fine_request(adata, groups: CoarseGroups, n_fine, n_fine_range) -> FineRequest:
    """``n_fine`` and ``n_fine_range`` checked against the coarse classes and the number of cells."""
    if groups.datasets and isinstance(n_fine, Mapping):
        raise ValueError("n_fine as a per-class mapping fixes one dataset's relationship; give an int with datasets.")
    auto = isinstance(n_fine, str) and n_fine == "auto"
    if n_fine_range is not None and not auto:
        raise ValueError("n_fine_range bounds the estimate of n_fine='auto'; with a given n_fine, leave it out.")
    if auto:
        upper = check_bounds(n_fine_range, max(groups.blocks), adata.n_obs)[1]  # fails before any computation
        return FineRequest(True, upper, None, None)
    fixed, total = fine_spec(n_fine, groups.coarse_names, adata.n_obs)
    return FineRequest(False, None, fixed, total)


def check_obs_options(adata, groups: CoarseGroups, *, batch_key, sample_key, merge_unsupported) -> None:
    """The options that name ``adata.obs`` columns or act on one dataset; a warning for repeated cell names."""
    if batch_key is not None and batch_key not in adata.obs:
        raise KeyError(f"batch_key {batch_key!r} is not a column of adata.obs; available: {list(adata.obs)}.")
    if sample_key is not None:
        checked_labels(adata, sample_key, "sample_key")
    if merge_unsupported and groups.datasets:
        raise ValueError("merge_unsupported works on one dataset's subtypes; leave it out with dataset_key.")
    if not adata.obs_names.is_unique:
        warnings.warn(
            "adata.obs_names are not unique; results are stored by position. Call adata.obs_names_make_unique() "
            "to be able to match cells by name.",
            UserWarning,
            stacklevel=4,
        )


def check_use_rep(use_rep, *, layer, batch_key, total_counts_feature) -> None:
    """``use_rep`` replaces the genes: options that only act on genes are refused with it."""
    if use_rep is None:
        return
    if not isinstance(use_rep, str):
        raise TypeError(f"use_rep must be a key of adata.obsm (a string), got {use_rep!r}.")
    given = {"layer": layer, "batch_key": batch_key, "total_counts_feature": total_counts_feature is True}
    clash = [name for name, value in given.items() if value not in (None, False)]
    if clash:
        raise ValueError(
            f"use_rep={use_rep!r} replaces the genes, so {clash} would have no effect. Leave them out (correct "
            "batches when computing the embedding), or drop use_rep to work on genes."
        )


def fine_spec(n_fine, coarse_names: list[list[str]], n_cells: int) -> tuple[np.ndarray | None, int]:
    """The fixed relationship (for a per-class mapping) or None, and the total number of fine classes.

    ``coarse_names`` lists each dataset's coarse classes; a mapping is only accepted for one dataset."""
    n_coarse = max(len(names) for names in coarse_names)
    if isinstance(n_fine, Mapping):
        coarse_names = coarse_names[0]
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
                f"n_fine={total} is smaller than the {n_coarse} coarse classes of a dataset; every coarse class needs "
                f"at least one fine class, so use n_fine ≥ {n_coarse}."
            )
    else:
        raise TypeError(f'n_fine must be an int, "auto" or a mapping {{coarse class: count}}, got {n_fine!r}.')
    if total > n_cells:
        raise ValueError(f"n_fine={total} exceeds the number of cells ({n_cells}); use fewer fine classes.")
    return fixed, total
