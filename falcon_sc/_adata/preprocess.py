"""Turn an AnnData's expression matrix into FALCON's dense input, without touching the AnnData."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import torch
from scanpy import logging as logg
from scipy import sparse
from tqdm.auto import tqdm

from ..core.config import is_panel
from ..core.row_blocks import RowBlocks
from .hvg import seurat_v3_ranks

TARGET_SUM = 1e4
# target_sum="auto": a targeted panel with at least this many molecules per gene in the median cell is scaled to
# its median total (counts are quantitative); everything else to TARGET_SUM (a count is mostly presence or absence).
# Between the real datasets where 10,000 won (0.55 molecules per gene: pbmc3k's 100-gene panel) and where the median
# won (0.85-0.9: pbmc3k's 40-gene panel, pbmc68k; bench/results/normalisation_cpu.md).
_QUANTITATIVE_DEPTH = 0.7
# Up to core.config.PANEL_MAX_GENES genes, counts are taken to come from a targeted panel: normalising to a
# total erases the cell-size information its total counts carry, so log1p(total counts) is kept as a feature.
_SAMPLE_VALUES = 200_000
# obs columns that hold each cell's total counts (scanpy's calculate_qc_metrics, 10x and older scanpy loaders,
# Seurat), and how far above the matrix's row sums they must be to mean that genes were removed afterwards
# (filtering a few genes moves them by a few per cent; a variable-gene subset by a factor of several)
_TOTAL_COLUMNS = ("total_counts", "n_counts", "nCount_RNA")
_REDUCED_GENES_RATIO = 1.5
_ROWS_PER_BLOCK = 8192


def row_blocks(
    matrix, rows_per_block: int = _ROWS_PER_BLOCK, columns: np.ndarray | None = None, *, progress: str | None = None
):
    """Yield ``(start, stop, block)``: in-memory row blocks of a dense, sparse, backed (h5ad) or dask matrix.

    ``columns`` selects genes within each block, so a backed file is read one block of rows at a time and
    a sparse matrix is subset while still sparse. ``progress`` (a description) shows a bar over the blocks of a
    matrix that is read from disk or computed as it goes (in-memory matrices are quick to pass over).
    """
    n_rows = matrix.shape[0]
    bar = tqdm(
        total=-(-n_rows // rows_per_block),
        desc=progress,
        unit="block",
        leave=False,
        disable=progress is None or is_in_memory(matrix),
    )
    in_memory_csr = sparse.issparse(matrix) and matrix.format == "csr"
    with bar:
        for start in range(0, n_rows, rows_per_block):
            stop = min(start + rows_per_block, n_rows)
            block = _csr_rows(matrix, start, stop) if in_memory_csr else matrix[start:stop]
            if hasattr(block, "compute"):  # a dask array (anndata's lazy readers): this block is read now
                block = block.compute()
            if columns is not None:
                block = block[:, columns]
            yield start, stop, block
            bar.update()


def is_in_memory(matrix) -> bool:
    """Whether ``matrix`` is held in memory (a NumPy array or SciPy sparse matrix), rather than read from a
    backed file or a dask array as it is used."""
    return isinstance(matrix, np.ndarray) or sparse.issparse(matrix)


def _csr_rows(matrix, start: int, stop: int) -> sparse.csr_matrix:
    """Rows ``start:stop`` of an in-memory CSR matrix as a view of its arrays (scipy's slicing copies them,
    which dominated preprocessing at 10⁵–10⁶ cells)."""
    lo, hi = matrix.indptr[start], matrix.indptr[stop]
    parts = (matrix.data[lo:hi], matrix.indices[lo:hi], matrix.indptr[start : stop + 1] - lo)
    return sparse.csr_matrix(parts, shape=(stop - start, matrix.shape[1]), copy=False)


def _stored_values(block) -> np.ndarray:
    """The explicitly stored values (all of them for dense input), without densifying sparse data."""
    if sparse.issparse(block):
        return np.asarray(block.data)
    return np.asarray(block).ravel()


@dataclass(frozen=True)
class PreparedInput:
    """The selected genes of an expression matrix and how to log-normalise them, read lazily in row blocks."""

    source: Any  # the full matrix: dense, sparse or backed
    columns: np.ndarray | None  # selected genes (None: all)
    size_factors: np.ndarray | None  # (n,) target sum / library size for counts; None for log-normalised input
    genes: pd.Index
    input_kind: str  # "counts" or "log-normalized"
    # (n,) log1p of every cell's total counts, appended as the last feature (targeted panels); None: not used
    log_totals: np.ndarray | None = None
    target_sum: float | None = None  # normalize_total's target for counts; None for log-normalised input
    use_rep: str | None = None  # the key of adata.obsm read instead of genes (input_kind "embedding")

    @property
    def shape(self) -> tuple[int, int]:
        return self.source.shape[0], len(self.genes) + (self.log_totals is not None)

    def description(self) -> dict[str, Any]:
        """How the values were made, as a saved model stores it and :func:`prepare_genes` applies it again."""
        return {
            "input_kind": self.input_kind,
            "normalize_total": self.target_sum,
            "log1p": self.input_kind == "counts",
            "total_counts_feature": self.log_totals is not None,
            "use_rep": self.use_rep,
        }

    @property
    def in_memory(self) -> bool:
        """Whether the source matrix is held in memory (not a backed file or a dask array)."""
        return is_in_memory(self.source)

    def blocks(
        self, device: torch.device, dtype: torch.dtype = torch.float32, progress: str | None = None
    ) -> Iterator[torch.Tensor]:
        """The log-normalised matrix as dense blocks of consecutive rows on ``device``, read one at a time (with a
        bar described by ``progress`` for a matrix read from disk)."""
        for start, stop, block in row_blocks(self.source, columns=self.columns, progress=progress):
            values = _dense_block(block, device)
            if self.size_factors is not None:
                factors = torch.as_tensor(self.size_factors[start:stop], dtype=torch.float32, device=device)
                values = values.mul_(factors[:, None]).log1p_()  # in place: a block is a fresh copy
            if self.log_totals is not None:
                totals = torch.as_tensor(self.log_totals[start:stop], dtype=torch.float32, device=device)
                values = torch.cat([values, totals[:, None]], dim=1)
            yield values.to(dtype)

    def to_tensor(self, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The dense log-normalised matrix on ``device``, densified one block of rows at a time.

        Host memory beyond the source stays at one dense block (plus the result itself on the CPU).
        """
        out = torch.empty(self.shape, dtype=dtype, device=device)
        start = 0
        for values in self.blocks(device, dtype):
            out[start : start + values.shape[0]] = values
            start += values.shape[0]
        return out

    def row_source(self, device: torch.device, *, progress: bool = False) -> RowBlocks:
        """The matrix as a :class:`~falcon_sc.core.row_blocks.RowBlocks` source: never held whole, read again
        (from the file, for a backed matrix) on every pass, with a progress bar per pass when ``progress``."""
        passes = itertools.count(1)

        def read() -> Iterator[torch.Tensor]:
            return self.blocks(device, progress=f"PCA, pass {next(passes)}" if progress else None)

        return RowBlocks(read, self.shape, device)


def _dense_block(block, device: torch.device) -> torch.Tensor:
    """A float32 dense copy of a row block on ``device``; for CUDA, sparse blocks are densified there (fast,
    and the host never holds a dense block); on the CPU scipy densifies (far faster than torch there)."""
    if not sparse.issparse(block) or device.type == "cpu":
        # Always a copy: a row block of a dense array is a view of the user's data, and is changed in place.
        dense = block.toarray() if sparse.issparse(block) else np.array(block, dtype=np.float32)
        return torch.from_numpy(np.asarray(dense, dtype=np.float32)).to(device)
    block = sparse.csr_matrix(block)

    def on_device(array, dtype):  # transferred as stored, converted on the device
        return torch.from_numpy(np.ascontiguousarray(array)).to(device).to(dtype)

    with warnings.catch_warnings():  # torch flags sparse CSR support as beta
        warnings.simplefilter("ignore", UserWarning)
        tensor = torch.sparse_csr_tensor(
            on_device(block.indptr, torch.int64),
            on_device(block.indices, torch.int64),
            on_device(block.data, torch.float32),
            size=block.shape,
        )
        return tensor.to_dense()


def detect_input_kind(matrix, where: str) -> str:
    """``"counts"`` when every value is a non-negative integer, ``"log-normalized"`` when non-negative.

    Reads the matrix in row blocks (so a backed matrix is never loaded whole). Raises a ValueError for
    non-finite or negative values, which neither kind allows.
    """
    return _kind_and_totals(matrix, where)[0]


def _kind_and_totals(matrix, where: str, progress: bool = False) -> tuple[str, np.ndarray]:
    """:func:`detect_input_kind` and every cell's sum of values (float64), in one pass over the row blocks."""
    integral = True
    n_sampled = 0
    totals = np.empty(matrix.shape[0], dtype=np.float64)
    for start, stop, block in row_blocks(matrix, progress="checking counts" if progress else None):
        totals[start:stop] = np.asarray(block.sum(axis=1), dtype=np.float64).ravel()
        values = _stored_values(block)
        if not values.size:
            continue
        if not np.isfinite(values).all():
            raise ValueError(
                f"{where} contains non-finite values (NaN or inf). Remove or impute them before calling "
                "discover_subtypes."
            )
        if values.min() < 0:
            raise ValueError(
                f"{where} contains negative values, so it holds neither raw counts nor log-normalised data (it "
                "may be scaled or batch-corrected). Pass raw counts, e.g. layer='counts', or log1p-normalised data."
            )
        if integral and n_sampled < _SAMPLE_VALUES:
            sample = values[:: max(1, values.size // _SAMPLE_VALUES)]
            integral = bool(np.all(sample == np.round(sample)))
            n_sampled += sample.size
    return ("counts" if integral else "log-normalized"), totals


def _in_memory(matrix):
    """``matrix`` itself, or a backed matrix read into memory block by block (kept sparse)."""
    if is_in_memory(matrix):
        return matrix
    blocks = [block for _, _, block in row_blocks(matrix)]
    return sparse.vstack(blocks, format="csr") if sparse.issparse(blocks[0]) else np.vstack(blocks)


def prepare_input(
    adata: ad.AnnData,
    *,
    layer: str | None,
    n_top_genes: int,
    batch_key: str | None,
    total_counts_feature: bool | str = False,
    target_sum: float | str = TARGET_SUM,
    progress: bool = False,
) -> PreparedInput:
    """Select highly variable genes and describe their log-normalised values.

    Counts: seurat_v3 HVGs on the counts, ``normalize_total`` on all genes (to ``target_sum``, see
    :func:`resolve_target_sum`), ``log1p``. Log-normalised
    input: scanpy's ``seurat`` HVG flavour on the values as they are. ``total_counts_feature`` appends
    ``log1p(total counts)`` of each cell as a last feature (counts only; ``"auto"``: when the matrix has at most
    ``core.config.PANEL_MAX_GENES`` genes, a targeted panel, see :func:`resolve_total_counts_feature`). Nothing is
    densified here; see
    :meth:`PreparedInput.to_tensor`. A backed or lazy matrix is read in row blocks, gene selection on counts
    included (:func:`~.hvg.seurat_v3_ranks`); gene selection on log-normalised values reads it into memory, as a
    sparse matrix.
    """
    check_unique_genes(adata)
    matrix, kind, totals = _matrix_and_kind(adata, layer, progress)

    n_genes = adata.n_vars
    if n_top_genes >= n_genes:
        # a default that cannot apply (a small dataset or a panel) is not the user's mistake: info, not a warning
        logg.info(f"    all {n_genes} genes used (n_top_genes={n_top_genes} ≥ the number of genes)")
        selected = None
    elif kind == "counts" and not is_in_memory(matrix):
        # a backed or lazy matrix: the same seurat_v3 ranks in two passes over row blocks, never loaded whole
        batches = adata.obs[batch_key].astype("category").cat.codes.to_numpy() if batch_key else np.zeros(adata.n_obs)
        passes = itertools.count(1)
        ranks = seurat_v3_ranks(
            lambda: row_blocks(matrix, progress=f"genes, pass {next(passes)}" if progress else None),
            n_genes,
            batches,
            n_top_genes,
        )
        order = np.argsort(np.where(np.isfinite(ranks), ranks, np.inf), kind="stable")
        selected = np.sort(order[:n_top_genes])
    else:
        # A lightweight AnnData that shares the matrix, so HVG selection writes nothing into the user's object.
        obs = adata.obs[[batch_key]] if batch_key else pd.DataFrame(index=adata.obs_names)
        view = ad.AnnData(X=_in_memory(matrix), obs=obs)
        view.var_names = adata.var_names
        flavor = "seurat_v3" if kind == "counts" else "seurat"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            hvg = sc.pp.highly_variable_genes(
                view, n_top_genes=n_top_genes, flavor=flavor, batch_key=batch_key, inplace=False
            )
        del view
        ranked = "highly_variable_rank" if flavor == "seurat_v3" else "dispersions_norm"
        score = hvg[ranked].to_numpy(dtype=np.float64)
        score = np.where(np.isfinite(score), score, np.inf if flavor == "seurat_v3" else -np.inf)
        order = np.argsort(score, kind="stable") if flavor == "seurat_v3" else np.argsort(-score, kind="stable")
        selected = np.sort(order[:n_top_genes])

    genes = adata.var_names if selected is None else adata.var_names[selected]
    target_sum = resolve_target_sum(target_sum, totals, n_genes) if kind == "counts" else None
    size_factors = _size_factors(totals, target_sum) if kind == "counts" else None
    use_totals = resolve_total_counts_feature(total_counts_feature, kind, n_genes)
    return PreparedInput(
        source=matrix,
        columns=selected,
        size_factors=size_factors,
        genes=genes,
        input_kind=kind,
        log_totals=_log_totals(size_factors, target_sum) if use_totals else None,
        target_sum=target_sum,
    )


def prepare_embedding(adata: ad.AnnData, use_rep: str, *, expected_dims: int | None = None) -> PreparedInput:
    """The cells' coordinates in ``adata.obsm[use_rep]`` (e.g. an scVI or Harmony embedding) as the input,
    instead of genes. ``expected_dims`` (a saved model's) must match the embedding's width."""
    if use_rep not in adata.obsm:
        raise KeyError(
            f"use_rep={use_rep!r} is not a key of adata.obsm (available: {list(adata.obsm)}). Compute the "
            "embedding for these cells first, e.g. scvi's model.get_latent_representation() stored as "
            "obsm['X_scVI'], or sc.external.pp.harmony_integrate, which writes obsm['X_pca_harmony']."
        )
    values = adata.obsm[use_rep]
    values = values.to_numpy() if isinstance(values, pd.DataFrame) else values
    values = values.toarray() if sparse.issparse(values) else np.asarray(values)
    if values.ndim != 2 or values.shape[1] == 0 or not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"adata.obsm[{use_rep!r}] must be a numeric cells × dimensions matrix, got {values.shape}.")
    values = values.astype(np.float32, copy=False)
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).any(1).sum())
        raise ValueError(f"adata.obsm[{use_rep!r}] has non-finite values in {bad} cells; remove or recompute them.")
    if expected_dims is not None and values.shape[1] != expected_dims:
        raise ValueError(
            f"adata.obsm[{use_rep!r}] has {values.shape[1]} dimensions, but the model was trained on "
            f"{expected_dims}. Project these cells into the same embedding (the same scVI model or PCA loadings)."
        )
    dims = pd.Index([f"{use_rep}[{j}]" for j in range(values.shape[1])])
    return PreparedInput(values, None, None, dims, "embedding", use_rep=use_rep)


def resolve_target_sum(target_sum: float | str, totals: np.ndarray, n_genes: int) -> float:
    """The total every cell's counts are scaled to before ``log1p``: ``target_sum`` itself, or for ``"auto"`` a
    scale set by the depth of the data.

    ``"auto"``: the median total count of a targeted panel (at most ``core.config.PANEL_MAX_GENES`` genes) whose
    median cell has at least 0.7 molecules per gene (imaging panels such as smFISH or MERFISH), else 10,000 (the
    paper's ``normalize_total``). Below that depth (droplet data, whole transcriptome or a gene
    subset), a count is mostly presence or absence and the large scale separates the two; on a deep panel
    counts are quantitative, and the median total (scanpy's ``normalize_total`` default) keeps a zero from
    becoming an outlier several log units below a single molecule. Whole transcriptomes keep 10,000 whatever
    their depth: on simulated deep ones the median total won on one setting and lost on another. See the docs
    page on targeted and spatial panels for the measurements.
    """
    check_target_sum(target_sum)
    if target_sum != "auto":
        return float(target_sum)
    expressed = totals[totals > 0]
    median = float(np.median(expressed)) if expressed.size else TARGET_SUM
    return median if is_panel(n_genes) and median >= _QUANTITATIVE_DEPTH * n_genes else TARGET_SUM


def check_target_sum(target_sum: float | str) -> None:
    """Refuse a ``target_sum`` that is neither ``"auto"`` nor a positive finite number."""
    if isinstance(target_sum, str) and target_sum == "auto":
        return
    number = isinstance(target_sum, int | float) and not isinstance(target_sum, bool)
    if not number or not np.isfinite(target_sum) or target_sum <= 0:
        raise ValueError(
            f"target_sum must be 'auto' or a positive number (the total each cell's counts are scaled to, e.g. "
            f"1e4), got {target_sum!r}."
        )


def resolve_total_counts_feature(choice: bool | str, input_kind: str, n_genes: int) -> bool:
    """Whether log1p(total counts) becomes a feature: ``"auto"`` for counts of a targeted panel (at most
    ``core.config.PANEL_MAX_GENES`` genes), where total counts carry cell size that normalisation erases."""
    if isinstance(choice, str):
        if choice != "auto":
            raise ValueError(f"total_counts_feature must be True, False or 'auto', got {choice!r}.")
        return input_kind == "counts" and is_panel(n_genes)
    if choice and input_kind != "counts":
        raise ValueError(
            "total_counts_feature=True needs raw counts (their totals are cell sizes), but the input is "
            f"{input_kind}. Pass the counts (e.g. layer='counts') or set total_counts_feature=False."
        )
    return bool(choice)


def _log_totals(size_factors: np.ndarray, target_sum: float) -> np.ndarray:
    """log1p of each cell's total counts, recovered from its size factor (0 for an empty cell)."""
    totals = np.divide(target_sum, size_factors, out=np.zeros_like(size_factors), where=size_factors > 0)
    return np.log1p(totals).astype(np.float32)


def prepare_genes(
    adata: ad.AnnData, genes: pd.Index, *, layer: str | None, target_sum: float, total_counts_feature: bool = False
) -> tuple[PreparedInput, np.ndarray]:
    """The given genes of ``adata``, matched by name and log-normalised as :func:`prepare_input` did for a
    model (``target_sum`` and ``total_counts_feature`` read back from its description).

    Genes ``adata`` lacks are left out; also returns the positions in ``genes`` of those it has (in the
    order of the prepared columns). Library sizes of counts are taken over all of ``adata``'s genes.
    ``total_counts_feature`` appends log1p(total counts) as the last column (counts only).
    """
    check_unique_genes(adata)
    matrix, kind, totals = _matrix_and_kind(adata, layer)
    index = adata.var_names.get_indexer(genes)
    found = np.flatnonzero(index >= 0)
    size_factors = _size_factors(totals, target_sum) if kind == "counts" else None
    if total_counts_feature and kind != "counts":
        raise ValueError(
            "This model reads each cell's total counts (it was trained on a targeted panel's counts), but "
            f"adata holds {kind} values. Pass the raw counts, e.g. layer='counts'."
        )
    log_totals = _log_totals(size_factors, target_sum) if total_counts_feature else None
    kept_sum = target_sum if kind == "counts" else None
    prepared = PreparedInput(matrix, index[found], size_factors, pd.Index(genes)[found], kind, log_totals, kept_sum)
    return prepared, found


def check_unique_genes(adata: ad.AnnData) -> None:
    """Refuse duplicated ``var_names``: a model keeps its genes by name, and a duplicated name cannot be matched
    back to one column (the model could not be applied even to the data it was trained on)."""
    duplicated = adata.var_names[adata.var_names.duplicated()].unique()
    if duplicated.size:
        examples = ", ".join(repr(str(g)) for g in duplicated[:5])
        raise ValueError(
            f"adata.var_names holds {duplicated.size} duplicated gene name(s) ({examples}"
            f"{', …' if duplicated.size > 5 else ''}); genes are matched by name, so each must be unique. Call "
            "adata.var_names_make_unique() first, and the same on every dataset you later transfer subtypes to, "
            "so that their names agree."
        )


def _matrix_and_kind(adata: ad.AnnData, layer: str | None, progress: bool = False):
    """The matrix FALCON reads, whether it holds counts or log-normalised values, and every cell's total
    (cells with nothing are reported)."""
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} not found; available layers: {list(adata.layers)}.")
    matrix = adata.layers[layer] if layer is not None else adata.X
    where = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
    kind, totals = _kind_and_totals(matrix, where, progress)
    logg.info(f"    input: {where} detected as {kind}")
    if kind == "counts":
        _warn_if_genes_were_reduced(adata.obs, totals, where)
    n_empty = int((totals == 0).sum())
    if n_empty:
        logg.warning(
            f"{n_empty} cell(s) have only zeros in {where}: they carry no expression, so their subtype is a guess. "
            "Remove them first, e.g. sc.pp.filter_cells(adata, min_counts=1)."
        )
    return matrix, kind, totals


def _warn_if_genes_were_reduced(obs: pd.DataFrame, totals: np.ndarray, where: str) -> None:
    """Warn when an ``obs`` column of total counts (``_TOTAL_COLUMNS``, as scanpy's QC metrics or a 10x loader write
    it) is well above the matrix's row sums: the genes were reduced after the totals were taken, and normalising
    by the kept genes' totals lets a few genes set every cell's scale (the bundled pbmc3k cells on their 2,000
    variable genes: ACC 85 instead of 97, docs/notes.md, "Representation")."""
    numeric = (c for c in _TOTAL_COLUMNS if c in obs and pd.api.types.is_numeric_dtype(obs[c]))
    column, kept = next(numeric, None), totals > 0
    if column is None or not kept.any():
        return
    ratio = float(np.median(obs[column].to_numpy(dtype=np.float64)[kept]) / np.median(totals[kept]))
    if ratio >= _REDUCED_GENES_RATIO:
        logg.warning(
            f"The row sums of {where} are {1 / ratio:.0%} of obs[{column!r}] in the median cell: the genes look "
            "reduced after the totals were counted, and normalising by the kept genes' totals loses accuracy. "
            "Pass all genes, or log-normalised values computed on all genes (sc.pp.normalize_total and "
            "sc.pp.log1p before subsetting, as X or a layer)."
        )


def _size_factors(totals: np.ndarray, target_sum: float) -> np.ndarray:
    """``target sum / library size`` of every cell (0 for an empty cell)."""
    return np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)


def log_normalize(adata: ad.AnnData) -> None:
    """Counts in ``adata.X`` → ``log1p`` of counts per 10,000 (scanpy's ``normalize_total`` + ``log1p``), in place
    on an object made for it: markers are tested and shown on this scale, never on raw counts."""
    sc.pp.normalize_total(adata, target_sum=TARGET_SUM)
    sc.pp.log1p(adata)
