"""Exact principal components of a dense matrix, by eigendecomposition of its covariance."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PCAProjection:
    """``scores = (z − mean) @ components`` where ``z`` is the input, optionally standardised.

    With standardisation ``z = clip((x − feature_mean) / feature_scale, ±max_value)`` (scanpy's
    ``pp.scale``); otherwise ``z = x``. ``scale`` holds the standard deviation of each score.
    """

    mean: torch.Tensor  # (d,)
    components: torch.Tensor  # (d, q), columns ordered by decreasing variance
    scale: torch.Tensor  # (q,)
    feature_mean: torch.Tensor | None = None  # (d,)
    feature_scale: torch.Tensor | None = None  # (d,)
    max_value: float | None = None

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        if self.feature_mean is None:
            return x
        z = (x - self.feature_mean) / self.feature_scale
        return z if self.max_value is None else z.clamp(-self.max_value, self.max_value)

    def transform(self, x: torch.Tensor, *, chunk_size: int = 65536) -> torch.Tensor:
        return torch.cat(
            [
                (self.standardize(x[i : i + chunk_size]) - self.mean) @ self.components
                for i in range(0, len(x), chunk_size)
            ]
        )


@torch.no_grad()
def fit_pca(
    x: torch.Tensor,
    n_components: int,
    *,
    standardize: bool = False,
    max_value: float | None = None,
    chunk_size: int = 65536,
) -> PCAProjection:
    """Top ``n_components`` principal axes of ``x`` (n × d), exact and deterministic.

    With ``standardize`` each feature is first scaled to unit variance (constant features become 0) and
    clipped at ``±max_value``, so that PCA follows correlated programmes of genes rather than the few
    most highly expressed ones. Moments and the d × d covariance are accumulated in float64 over row
    chunks, so memory stays O(d²) beyond the input.
    """
    n, d = x.shape
    q = max(1, min(n_components, d, n))
    feature_mean = feature_scale = None
    if standardize:
        feature_mean = x.double().mean(0)
        variance = torch.zeros(d, dtype=torch.float64, device=x.device)
        for start in range(0, n, chunk_size):
            variance += ((x[start : start + chunk_size].double() - feature_mean) ** 2).sum(0)
        std = (variance / max(n - 1, 1)).sqrt()
        feature_scale = torch.where(std > 0, std, torch.ones_like(std)).to(x.dtype)
        feature_mean = feature_mean.to(x.dtype)
    prep = PCAProjection(
        mean=torch.zeros(d, dtype=x.dtype, device=x.device),
        components=torch.empty(d, 0, dtype=x.dtype, device=x.device),
        scale=torch.empty(0, dtype=x.dtype, device=x.device),
        feature_mean=feature_mean,
        feature_scale=feature_scale,
        max_value=max_value if standardize else None,
    )
    mean = torch.zeros(d, dtype=torch.float64, device=x.device)
    for start in range(0, n, chunk_size):
        mean += prep.standardize(x[start : start + chunk_size]).double().sum(0)
    mean /= n
    cov = torch.zeros(d, d, dtype=torch.float64, device=x.device)
    for start in range(0, n, chunk_size):
        block = prep.standardize(x[start : start + chunk_size]).double() - mean
        cov += block.T @ block
    cov /= max(n - 1, 1)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    order = torch.argsort(eigenvalues, descending=True)[:q]
    components = eigenvectors[:, order]
    # Fix each axis' sign (largest loading positive) so results do not depend on the eigensolver.
    signs = torch.sign(components.gather(0, components.abs().argmax(0, keepdim=True)))
    components = components * signs
    scale = eigenvalues[order].clamp_min(0).sqrt()
    return PCAProjection(
        mean=mean.to(x.dtype),
        components=components.to(x.dtype),
        scale=scale.to(x.dtype),
        feature_mean=feature_mean,
        feature_scale=feature_scale,
        max_value=prep.max_value,
    )
