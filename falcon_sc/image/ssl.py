"""A short self-supervised warm-up (SimCLR) for a backbone when no pretrained weights are at hand.

FALCON's neighbours and first predictions need features in which similar images lie close; a randomly
initialised ResNet gives none. Two strong views of every image are pulled together and pushed away from the
rest of the batch (the NT-Xent loss) through a small projection head, which is dropped afterwards.
"""

from __future__ import annotations

import logging
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..core.progress import progress_bar
from .augment import AugmentedImages

logger = logging.getLogger(__name__)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner among the other ``2B − 1`` views of the batch."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = z1.shape[0]
    sim = (z @ z.T) / temperature
    sim.fill_diagonal_(float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, partner)


def simclr_warmup(
    backbone: nn.Module,
    views: AugmentedImages,
    *,
    epochs: int = 20,
    batch_size: int = 512,
    lr: float = 1e-3,
    weight_decay: float = 1e-6,
    temperature: float = 0.2,
    projection_dim: int = 128,
    random_state: int = 0,
    device: str | torch.device = "cpu",
    mixed_precision: bool = True,
    progress: bool = True,
) -> list[float]:
    """Train ``backbone`` in place with SimCLR on the strong views of ``views``; returns the loss per epoch.

    AdamW with a cosine learning-rate decay; bfloat16 autocast on CUDA when ``mixed_precision``.
    """
    device = torch.device(device)
    amp = mixed_precision and device.type == "cuda"
    torch.manual_seed(random_state)
    generator = torch.Generator(device=device).manual_seed(random_state)
    width = backbone.feature_dim
    head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, projection_dim)).to(device)
    backbone.to(device).train()
    params = list(backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    n = views.n_examples
    batch_size = min(batch_size, n)
    steps = max(1, n // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps)
    losses = []
    t0 = time.perf_counter()
    for _ in progress_bar(range(epochs), enabled=progress, desc="SimCLR warm-up", unit="epoch"):
        perm = torch.randperm(n, generator=generator, device=device)
        total = torch.zeros((), device=device)
        for b in range(steps):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                z1 = head(backbone(views.student(idx, generator)))
                z2 = head(backbone(views.student(idx, generator)))
            loss = nt_xent(z1, z2, temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.detach()
        losses.append(float(total) / steps)
        if not torch.isfinite(torch.tensor(losses[-1])):
            raise FloatingPointError(f"SimCLR warm-up diverged (loss {losses[-1]}); lower lr.")
    logger.info(
        "SimCLR warm-up: %d epochs in %.1f s, loss %.3f → %.3f", epochs, time.perf_counter() - t0, losses[0], losses[-1]
    )
    return losses
