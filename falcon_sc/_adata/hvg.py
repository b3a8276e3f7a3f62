"""Seurat v3 highly variable genes of counts read in row blocks, for matrices that are not held in memory.

scanpy's ``highly_variable_genes(flavor="seurat_v3")`` needs the whole matrix in memory (it has no dask path in
scanpy 1.11), so this computes the same statistics in two passes over row blocks: per batch, each gene's mean and
variance (pass 1), then, after scanpy's loess fit of log variance on log mean, its sums of the counts clipped at
``mean + √n · regularised sd`` (pass 2). The ranks follow scanpy: per batch by normalised variance, then the median
over the batches in which a gene is among the top ``n_top_genes``.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def _sums(block, rows: np.ndarray, n_genes: int, clip: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per gene, the sum and the sum of squares (float64) of ``block``'s ``rows``, each value clipped at
    ``clip`` (per gene) if given; zeros add nothing (the clip is never below 0)."""
    part = block[rows]
    if sparse.issparse(part):
        part = sparse.csr_matrix(part)
        values, genes = np.asarray(part.data, dtype=np.float64), part.indices
        if clip is not None:
            values = np.minimum(values, clip[genes])
        return np.bincount(genes, values, n_genes), np.bincount(genes, values**2, n_genes)
    values = np.asarray(part, dtype=np.float64)
    if clip is not None:
        values = np.minimum(values, clip)
    return values.sum(0), (values**2).sum(0)


def _batch_sums(blocks, batches: np.ndarray, codes: np.ndarray, n_genes: int, clip: np.ndarray | None = None):
    """``(sums, squares)``, each ``(len(codes), n_genes)``: :func:`_sums` of every batch's cells over one pass of
    ``(start, stop, block)`` row blocks, with batch ``i``'s values clipped at ``clip[i]`` if given."""
    sums, squares = np.zeros((codes.size, n_genes)), np.zeros((codes.size, n_genes))
    for start, stop, block in blocks:
        in_block = batches[start:stop]
        for i, b in enumerate(codes):
            s, q = _sums(block, np.flatnonzero(in_block == b), n_genes, None if clip is None else clip[i])
            sums[i] += s
            squares[i] += q
    return sums, squares


def seurat_v3_ranks(blocks, n_genes: int, batches: np.ndarray, n_top_genes: int, span: float = 0.3) -> np.ndarray:
    """Each gene's ``highly_variable_rank`` as scanpy's seurat_v3 flavour gives it (NaN outside every batch's top
    ``n_top_genes``). ``blocks`` is a callable returning a fresh iterator of ``(start, stop, block)`` row blocks
    (read twice); ``batches`` holds each cell's batch code."""
    from skmisc.loess import loess  # scanpy's own dependency for this flavour

    codes = np.unique(batches)
    n_cells = np.array([(batches == b).sum() for b in codes], dtype=np.float64)
    total, squares = _batch_sums(blocks(), batches, codes, n_genes)
    mean = total / n_cells[:, None]
    var = (squares / n_cells[:, None] - mean**2) * (n_cells / np.maximum(n_cells - 1, 1))[:, None]
    reg_std = np.zeros_like(mean)
    for i in range(codes.size):
        varies = var[i] > 0
        model = loess(np.log10(mean[i, varies]), np.log10(var[i, varies]), span=span, degree=2)
        model.fit()
        fitted = np.zeros(n_genes)
        fitted[varies] = model.outputs.fitted_values
        reg_std[i] = np.sqrt(10**fitted)
    clip = reg_std * np.sqrt(n_cells)[:, None] + mean
    clipped, clipped_squares = _batch_sums(blocks(), batches, codes, n_genes, clip)
    n = n_cells[:, None]
    normalised = (n * mean**2 + clipped_squares - 2 * clipped * mean) / ((n - 1) * reg_std**2)
    ranks = np.argsort(np.argsort(-normalised, axis=1), axis=1).astype(np.float32)
    ranks[ranks >= n_top_genes] = np.nan
    return np.ma.median(np.ma.masked_invalid(ranks), axis=0).filled(np.nan)
