"""Several datasets in one FALCON run: coarse labels scoped to their dataset, and lists of AnnData objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
from scanpy import logging as logg

#: Column of the combined object naming each cell's dataset when a list of AnnData objects is given.
DATASET_COLUMN = "dataset"
#: Column of the combined object holding each cell's coarse label (read from its object's own coarse key).
COARSE_COLUMN = "coarse"


@dataclass(frozen=True)
class CoarseGroups:
    """Every cell's (dataset, coarse class) as one integer code, and the names behind the codes.

    Codes run dataset by dataset: dataset ``l``'s coarse classes take the next ``len(coarse_names[l])``
    codes, which is how the engine's ``coarse_blocks`` are laid out.
    """

    codes: np.ndarray  # (n,) int64
    datasets: list[str]  # dataset names ([] for a single unnamed dataset)
    coarse_names: list[list[str]]  # coarse class names, per dataset
    dataset_of_cell: np.ndarray  # (n,) int64 index into datasets (all 0 for a single dataset)

    @property
    def blocks(self) -> list[int]:
        return [len(names) for names in self.coarse_names]


def coarse_groups(adata: ad.AnnData, coarse_key: str, dataset_key: str | None) -> CoarseGroups:
    """The (dataset, coarse class) of every cell, validating both columns.

    The same coarse label in two datasets gives two groups: labels are only meaningful within their dataset.
    """
    coarse = checked_labels(adata, coarse_key, "coarse_key")
    if dataset_key is None:
        codes = coarse.cat.codes.to_numpy().astype(np.int64)
        return CoarseGroups(codes, [], [[str(c) for c in coarse.cat.categories]], np.zeros(adata.n_obs, np.int64))
    if dataset_key == coarse_key:
        raise ValueError(f"dataset_key and coarse_key are both {coarse_key!r}; they must be different columns.")
    dataset = checked_labels(adata, dataset_key, "dataset_key")
    dataset_codes = dataset.cat.codes.to_numpy().astype(np.int64)
    codes = np.empty(adata.n_obs, dtype=np.int64)
    names, offset = [], 0
    for d, _ in enumerate(dataset.cat.categories):
        cells = dataset_codes == d
        within = coarse[cells].cat.remove_unused_categories()
        codes[cells] = offset + within.cat.codes.to_numpy()
        names.append([str(c) for c in within.cat.categories])
        offset += len(names[-1])
    return CoarseGroups(codes, [str(d) for d in dataset.cat.categories], names, dataset_codes)


def checked_labels(adata: ad.AnnData, key: str, argument: str) -> pd.Series:
    """``adata.obs[key]`` as a categorical without unused categories; refuses missing or empty labels."""
    if key not in adata.obs:
        raise KeyError(f"{argument} {key!r} is not a column of adata.obs; available: {list(adata.obs)}.")
    labels = adata.obs[key]
    as_text = labels.astype("string")
    missing = labels.isna().to_numpy() | (as_text.str.strip() == "").fillna(True).to_numpy()
    if missing.any():
        raise ValueError(
            f"{int(missing.sum())} cell(s) have a missing or empty label in adata.obs[{key!r}]. Remove them "
            f"(e.g. labels = adata.obs[{key!r}].astype('string').str.strip(); "
            "adata = adata[labels.notna() & (labels != '')].copy()) or give them a label."
        )
    return labels.astype("category").cat.remove_unused_categories()


def is_collection(adata) -> bool:
    """Whether ``adata`` is several AnnData objects (a list/tuple, or a mapping of names to objects)."""
    return isinstance(adata, Mapping) or (isinstance(adata, Sequence) and not isinstance(adata, str | bytes))


def named_objects(adatas) -> dict[str, ad.AnnData]:
    """``{name: AnnData}`` from a mapping, or from a sequence (named ``"0"``, ``"1"``, …)."""
    items = adatas.items() if isinstance(adatas, Mapping) else ((str(i), a) for i, a in enumerate(adatas))
    objects = {str(name): obj for name, obj in items}
    if len(objects) < 1:
        raise ValueError("The list of AnnData objects is empty.")
    for name, obj in objects.items():
        if not isinstance(obj, ad.AnnData):
            raise TypeError(f"Dataset {name!r} is a {type(obj).__name__}, not an AnnData.")
        if obj.isbacked:
            raise ValueError(
                f"Dataset {name!r} is a backed AnnData; several datasets are combined in memory. Load it with "
                ".to_memory(), or concatenate the files yourself and pass dataset_key."
            )
    return objects


def combine(
    objects: dict[str, ad.AnnData], coarse_keys: Sequence[str], *, layer: str | None, batch_key: str | None
) -> ad.AnnData:
    """One AnnData of all cells on the genes every object has (in the first object's order).

    ``X`` is each object's ``layer`` (or ``X``); ``obs`` holds :data:`DATASET_COLUMN`, :data:`COARSE_COLUMN`
    (each object's own coarse key) and ``batch_key`` if given. The objects are not modified.
    """
    names = list(objects)
    for name, key in zip(names, coarse_keys, strict=True):
        obj = objects[name]
        try:
            checked_labels(obj, key, "coarse_key")
        except (KeyError, ValueError) as err:
            raise type(err)(f"Dataset {name!r}: {err.args[0]}") from None
        if layer is not None and layer not in obj.layers:
            raise KeyError(f"Layer {layer!r} not found in dataset {name!r}; available layers: {list(obj.layers)}.")
        if batch_key is not None and batch_key not in obj.obs:
            raise KeyError(f"batch_key {batch_key!r} is not a column of dataset {name!r}'s obs.")
        if not obj.var_names.is_unique:
            raise ValueError(f"Dataset {name!r} has duplicate gene names; call .var_names_make_unique() first.")
    first = objects[names[0]].var_names
    shared = first[np.all([first.isin(objects[n].var_names) for n in names], axis=0)]
    sizes = ", ".join(f"{n}: {objects[n].n_vars}" for n in names)
    if shared.empty:
        raise ValueError(f"The datasets share no gene names ({sizes}); check that they use the same gene identifiers.")
    logg.info(f"    {len(names)} datasets share {shared.size} genes ({sizes})")
    if shared.size < 0.5 * min(objects[n].n_vars for n in names):
        logg.warning(f"the datasets share only {shared.size} genes ({sizes}); genes are matched by name")

    parts = []
    for name, key in zip(names, coarse_keys, strict=True):
        obj = objects[name]
        columns = obj.var_names.get_indexer(shared)
        matrix = obj.layers[layer] if layer is not None else obj.X
        obs = pd.DataFrame(
            {DATASET_COLUMN: name, COARSE_COLUMN: obj.obs[key].astype(object).to_numpy()}, index=obj.obs_names
        )
        if batch_key is not None:
            obs[batch_key] = obj.obs[batch_key].astype(str).to_numpy()
        parts.append(ad.AnnData(X=matrix[:, columns], obs=obs, var=pd.DataFrame(index=shared)))
    combined = ad.concat(parts, index_unique="-") if len(parts) > 1 else parts[0]
    combined.obs[DATASET_COLUMN] = pd.Categorical(combined.obs[DATASET_COLUMN], categories=names)
    return combined
