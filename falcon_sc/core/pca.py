"""Exact principal components of a dense matrix, by eigendecomposition of its covariance."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PCAProjection:
    """``scores = (x − mean) @ components``; ``scale`` holds the standard deviation of each score."""

    mean: torch.Tensor  # (d,)
    components: torch.Tensor  # (d, q), columns ordered by decreasing variance
    scale: torch.Tensor  # (q,)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.components


@torch.no_grad()
def fit_pca(x: torch.Tensor, n_components: int, *, chunk_size: int = 65536) -> PCAProjection:
    """Top ``n_components`` principal axes of ``x`` (n × d), exact and deterministic.

    The d × d covariance is accumulated in float64 over row chunks, so memory stays O(d²) beyond the input.
    """
    n, d = x.shape
    q = max(1, min(n_components, d, n))
    mean = x.double().mean(0)
    cov = torch.zeros(d, d, dtype=torch.float64, device=x.device)
    for start in range(0, n, chunk_size):
        block = x[start : start + chunk_size].double() - mean
        cov += block.T @ block
    cov /= max(n - 1, 1)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    order = torch.argsort(eigenvalues, descending=True)[:q]
    components = eigenvectors[:, order]
    # Fix each axis' sign (largest loading positive) so results do not depend on the eigensolver.
    signs = torch.sign(components.gather(0, components.abs().argmax(0, keepdim=True)))
    components = components * signs
    scale = eigenvalues[order].clamp_min(0).sqrt()
    return PCAProjection(mean=mean.to(x.dtype), components=components.to(x.dtype), scale=scale.to(x.dtype))
