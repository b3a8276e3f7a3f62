"""A matrix that is never held whole: read as consecutive row blocks, again on every pass."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RowBlocks:
    """An ``(n_rows, n_columns)`` float matrix read block by block: each iteration calls ``read``, which yields its
    rows in order as float tensors on ``device`` (e.g. a backed file, normalised as it is read). The engine
    streams PCA fitting and projection over such a source (``falcon_sc.core.pca``), so memory holds one block at
    a time."""

    read: Callable[[], Iterator[torch.Tensor]]
    shape: tuple[int, int]
    device: torch.device

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.read()
