"""The trained fine classifier as a self-contained function of expression values.

What a run learned to map cells to fine classes: the input projection (principal components of the selected
genes, whitened; none with ``representation="genes"``) followed by the EMA teacher network. Applied to the
training input it gives the run's probabilities again; applied to new cells it transfers the fine classes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .model import make_mlp
from .pca import PCAProjection

_PROJECTION_FIELDS = ("mean", "components", "scale", "feature_mean", "feature_scale")


@dataclass
class FineClassifier:
    """``network(inputs(x))``: logits over the fine classes for log-normalised expression ``x``."""

    network: nn.Sequential
    projection: PCAProjection | None = None

    @property
    def n_inputs(self) -> int:
        """Genes the classifier reads (columns of ``x``)."""
        if self.projection is not None:
            return self.projection.components.shape[0]
        return self.network[0].in_features

    @property
    def n_outputs(self) -> int:
        return self.network[-1].out_features

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the network sees: whitened principal-component scores, or ``x`` itself."""
        if self.projection is None:
            return x.float()
        return self.projection.whiten(self.projection.transform(x))

    @torch.no_grad()
    def probs(self, x: torch.Tensor, chunk_size: int = 65536) -> torch.Tensor:
        """Softmax over all fine classes, one row chunk at a time."""
        self.network.eval()
        chunks = [x[i : i + chunk_size] for i in range(0, x.shape[0], chunk_size)]
        return torch.cat([F.softmax(self.network(self.inputs(c)), dim=1) for c in chunks])

    def reorder_outputs(self, order) -> FineClassifier:
        """A copy whose output ``j`` is this classifier's output ``order[j]``."""
        network = _copy_network(self.network)
        head = network[-1]
        with torch.no_grad():
            head.weight.copy_(head.weight[order])
            head.bias.copy_(head.bias[order])
        return FineClassifier(network, self.projection)

    def to(self, device: str | torch.device) -> FineClassifier:
        projection = self.projection.to(device) if self.projection is not None else None
        return FineClassifier(_copy_network(self.network).to(device), projection)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every learned or fitted tensor by name (contiguous, on the CPU): what a saved model stores."""
        out = {f"network.{k}": v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        if self.projection is not None:
            for f in _PROJECTION_FIELDS:
                value = getattr(self.projection, f)
                if value is not None:
                    out[f"projection.{f}"] = value.detach().cpu().contiguous()
        return out

    @classmethod
    def from_tensors(
        cls, tensors: dict[str, torch.Tensor], *, n_layers: int, hidden_dim: int, max_value: float | None
    ) -> FineClassifier:
        """The inverse of :meth:`tensors`; raises ValueError when the tensors do not fit the architecture."""
        weights = {k.removeprefix("network."): v for k, v in tensors.items() if k.startswith("network.")}
        try:
            first, head = weights["0.weight"], weights[f"{2 * n_layers}.weight"]
            network = make_mlp(first.shape[1], head.shape[0], n_layers=n_layers, hidden_dim=hidden_dim)
            network.load_state_dict(weights, strict=True)
        except (KeyError, RuntimeError) as err:
            raise ValueError(f"The stored weights do not fit a {n_layers}-layer network: {err}") from None
        projection = None
        if "projection.components" in tensors:
            fields = {f: tensors.get(f"projection.{f}") for f in _PROJECTION_FIELDS}
            projection = PCAProjection(**fields, max_value=max_value if fields["feature_mean"] is not None else None)
            if projection.components.shape[1] != network[0].in_features:
                raise ValueError("The stored projection does not match the network's input width.")
        return cls(network.eval(), projection)


def _copy_network(network: nn.Sequential) -> nn.Sequential:
    return copy.deepcopy(network).eval()


def within_coarse(probs: torch.Tensor, allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each cell's most probable fine class among the ``allowed`` ones (cells × K_F, bool), and that class's
    probability renormalised over them."""
    within = probs.masked_fill(~allowed, 0.0)
    within = within / within.sum(1, keepdim=True).clamp_min(1e-12)
    confidence, labels = within.max(1)
    return labels, confidence
