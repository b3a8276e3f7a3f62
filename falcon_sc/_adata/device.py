"""Which torch device a run uses."""

from __future__ import annotations

import os

import torch


def resolve_device(device: str) -> torch.device:
    """``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a torch device;
    a ValueError naming the valid choices otherwise."""
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
