"""Batched image augmentations on the training device, and the views FALCON trains on.

Each transformation draws its random parameters for the whole batch from the trainer's generator, so a run
repeats exactly from a seed and continues exactly after a resume; no per-image Python runs in training.
Weak view (teacher, targets, neighbours): random resized crop + horizontal flip. Strong view (the trained
network): the same, then colour jitter (brightness, contrast, saturation), random grayscale and Gaussian blur.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import ImageSet


@dataclass(frozen=True)
class Augmentation:
    """Parameters of the two views (probabilities are per image)."""

    crop_scale: tuple[float, float] = (0.2, 1.0)  # area of the crop, as a fraction of the image
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    jitter: float = 0.4  # brightness, contrast and saturation factors drawn from [1 − jitter, 1 + jitter]
    p_jitter: float = 0.8
    p_grayscale: float = 0.2
    p_blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # in pixels of a 224-pixel image, scaled with the size


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _chance(n: int, p: float, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) < p


def random_resized_crop(x: torch.Tensor, size: int, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """Crops of random area and aspect ratio, resized to ``size`` × ``size``, half of them mirrored."""
    n, dev = x.shape[0], x.device
    area = _uniform(n, *aug.crop_scale, generator, dev)
    aspect = torch.exp(_uniform(n, math.log(aug.crop_ratio[0]), math.log(aug.crop_ratio[1]), generator, dev))
    width = torch.sqrt(area * aspect).clamp(max=1.0)
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    # Crop centres in normalised coordinates [-1, 1], keeping the crop inside the image.
    cx = (1 - width) * _uniform(n, -1.0, 1.0, generator, dev)
    cy = (1 - height) * _uniform(n, -1.0, 1.0, generator, dev)
    sign = torch.where(_chance(n, 0.5, generator, dev), -1.0, 1.0) if aug.flip else torch.ones(n, device=dev)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = width * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = height, cy
    grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def color_jitter(x: torch.Tensor, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    low, high = 1 - aug.jitter, 1 + aug.jitter
    brightness, contrast, saturation = (_uniform(n, low, high, generator, dev).view(n, 1, 1, 1) for _ in range(3))
    apply = _chance(n, aug.p_jitter, generator, dev).view(n, 1, 1, 1)
    out = (x * brightness).clamp(0, 1)
    mean = _gray(out).mean((1, 2, 3), keepdim=True)
    out = ((out - mean) * contrast + mean).clamp(0, 1)
    gray = _gray(out)
    out = ((out - gray) * saturation + gray).clamp(0, 1)
    return torch.where(apply, out, x)


def random_grayscale(x: torch.Tensor, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    apply = _chance(x.shape[0], aug.p_grayscale, generator, x.device).view(-1, 1, 1, 1)
    return torch.where(apply, _gray(x).expand_as(x), x)


def gaussian_blur(x: torch.Tensor, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur with a per-image σ; the kernel spans about a tenth of the image."""
    n, c, h, w = x.shape
    scale = h / 224
    sigma = _uniform(n, aug.blur_sigma[0] * scale, aug.blur_sigma[1] * scale, generator, x.device)
    apply = _chance(n, aug.p_blur, generator, x.device).view(n, 1, 1, 1)
    radius = max(1, int(0.05 * h))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n·c, 2r + 1)
    flat = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel.view(n * c, 1, -1, 1), groups=n * c)
    flat = F.conv2d(flat, kernel.view(n * c, 1, 1, -1), groups=n * c)
    return torch.where(apply, flat.view(n, c, h, w), x)


class AugmentedImages:
    """:class:`~falcon_sc.core.views.InputViews` of an :class:`~.datasets.ImageSet`: strong views for the
    student, weak views for the teacher, the plain (resized, normalised) image for prediction.

    In-memory images are moved to ``device`` once, as uint8, if they take at most ``device_bytes``;
    larger arrays (e.g. a memory-mapped decoded cache) stay on the host and each batch's rows are gathered
    from them; file-based images are decoded per batch.
    """

    predict_chunk = 1024

    def __init__(
        self,
        images: ImageSet,
        *,
        size: int,
        augmentation: Augmentation,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: str | torch.device = "cpu",
        device_bytes: int = 8 << 30,
    ):
        self.images = images
        self.size = size
        self.augmentation = augmentation
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1)
        self.pixels = None
        if images.pixels is not None and images.pixels.nbytes <= device_bytes:
            self.pixels = images.load(np.arange(len(images))).contiguous().to(self.device)

    @property
    def n_examples(self) -> int:
        return len(self.images)

    def _batch(self, idx: torch.Tensor) -> torch.Tensor:
        if self.pixels is not None:
            return self.pixels[idx].float() / 255.0
        return self.images.load(idx.cpu().numpy()).to(self.device).float() / 255.0

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def teacher(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self._normalise(random_resized_crop(self._batch(idx), self.size, self.augmentation, generator))

    def student(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        aug = self.augmentation
        x = random_resized_crop(self._batch(idx), self.size, aug, generator)
        x = random_grayscale(color_jitter(x, aug, generator), aug, generator)
        if aug.p_blur > 0:
            x = gaussian_blur(x, aug, generator)
        return self._normalise(x)

    def plain(self, idx: torch.Tensor) -> torch.Tensor:
        x = self._batch(idx)
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return self._normalise(x)


def channel_stats(images: ImageSet, sample: int = 10_000, seed: int = 0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of (a sample of) the images, in [0, 1] units."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(images), min(sample, len(images)), replace=False)
    x = images.load(np.sort(idx)).float() / 255.0
    return tuple(x.mean((0, 2, 3)).tolist()), tuple(x.std((0, 2, 3)).clamp_min(1e-3).tolist())
