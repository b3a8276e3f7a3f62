"""FALCON on images: backbone features → within-class neighbours → the engine's alternating optimisation.

The training loop, losses, EMA teacher, M-step and schedules are the engine's (:func:`~falcon_sc.core.
trainer.train_falcon`); this module supplies the augmented views, the ResNet classifier and the evaluation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import metrics
from ..core import distributed
from ..core.classifier import within_coarse
from ..core.config import FalconConfig
from ..core.initial_relationship import proportional_relationship
from ..core.neighbors import NeighborGraph, training_neighbors
from ..core.trainer import FalconResult, predict_logits, train_falcon
from ..core.training_state import TrainingProgress
from .augment import Augmentation, AugmentedImages, channel_stats
from .backbones import CheckpointReport, FineNetwork, build_backbone, load_backbone_weights
from .datasets import ImageSet

logger = logging.getLogger(__name__)


@dataclass
class ImageFalconResult:
    """A finished image run: the engine's result, the trained teacher network and evaluation metrics."""

    result: FalconResult
    network: torch.nn.Module
    metrics: dict[str, dict[str, float]]  # per evaluated set (e.g. "val", "test"): ACC, ARI, GED, ...
    checkpoint: CheckpointReport | None
    timings: dict[str, float]


def make_views(
    images: ImageSet,
    *,
    size: int,
    augmentation: Augmentation,
    stats: tuple[tuple[float, ...], tuple[float, ...]],
    device,
) -> AugmentedImages:
    return AugmentedImages(images, size=size, augmentation=augmentation, mean=stats[0], std=stats[1], device=device)


@torch.no_grad()
def eval_outputs(module: torch.nn.Module, views: AugmentedImages, device, amp: bool) -> torch.Tensor:
    """``module``'s float32 outputs on the plain views, in eval mode (its mode is restored afterwards):
    pooled features for a backbone, logits for a :class:`~.backbones.FineNetwork`."""
    was_training = module.training
    module.eval()
    outputs = predict_logits(module, views, torch.device(device), amp)
    module.train(was_training)
    return outputs


def predict_fine(
    network: torch.nn.Module, views: AugmentedImages, relationship: np.ndarray, device, amp: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Fine labels restricted to the classes M gives each image's coarse class, and unrestricted argmax."""
    probs = torch.softmax(eval_outputs(network, views, device, amp), dim=1)
    coarse = torch.as_tensor(views.images.coarse, device=probs.device)
    allowed = torch.as_tensor(relationship, device=probs.device)[:, coarse].T.bool()
    restricted, _ = within_coarse(probs, allowed)
    return restricted.cpu().numpy(), probs.argmax(1).cpu().numpy()


def evaluate(
    network: torch.nn.Module, views: AugmentedImages, relationship: np.ndarray, device, amp: bool
) -> dict[str, float]:
    """ACC (Hungarian-matched) and ARI of the fine predictions against the true fine labels, with labels
    restricted to each image's coarse class through M (``acc``, ``ari``) and without (``acc_unrestricted``);
    and the graph edit distance between M and the true hierarchy (``ged``: edits; ``ged_normalized`` in [0, 1])."""
    restricted, free = predict_fine(network, views, relationship, device, amp)
    images = views.images
    # Both trees as DataFrames over coarse class ids: the true one only has the coarse classes present.
    true_tree = metrics.true_relationship(images.fine, images.coarse)
    learned = pd.DataFrame(relationship, columns=[str(c) for c in range(relationship.shape[1])])
    return {
        "acc": 100 * metrics.cluster_accuracy(images.fine, restricted),
        "ari": 100 * metrics.adjusted_rand_index(images.fine, restricted),
        "acc_unrestricted": 100 * metrics.cluster_accuracy(images.fine, free),
        "ged": metrics.graph_edit_distance(learned, true_tree),
        "ged_normalized": metrics.graph_edit_distance(learned, true_tree, normalized=True),
    }


def build_network(
    backbone: str,
    n_fine: int,
    *,
    in_channels: int = 3,
    weights: str | Path | None = None,
    prefix_map: dict[str, str] | None = None,
    seed: int = 0,
    width: int = 64,
) -> tuple[FineNetwork, CheckpointReport | None]:
    """A seeded :class:`~.backbones.FineNetwork` (``width`` as in :func:`~falcon_sc.image.build_backbone`), its
    backbone loaded from ``weights`` if given."""
    torch.manual_seed(seed)
    network = FineNetwork(build_backbone(backbone, in_channels=in_channels, width=width), n_fine)
    report = load_backbone_weights(network.backbone, weights, prefix_map=prefix_map) if weights is not None else None
    return network, report


def find_neighbors(network: FineNetwork, views: AugmentedImages, config: FalconConfig, device) -> NeighborGraph:
    """The within-class neighbours the engine trains with (:func:`~falcon_sc.core.neighbors.training_neighbors`),
    in the backbone's features: an embedding, for which any ``"auto"`` of ``config`` is resolved. With
    ``config.neighbor_share``, a class's fine classes are counted in proportion to its size (the image backend has
    no allocation)."""
    config = config.resolved(n_genes=None, n_cells=len(views.images.coarse))
    amp = config.mixed_precision and torch.device(device).type == "cuda"
    features = eval_outputs(network.backbone, views, device, amp)
    coarse = np.asarray(views.images.coarse)
    fine_per_class = proportional_relationship(np.bincount(coarse), network.head.out_features).sum(0)
    return training_neighbors(features, coarse, config, fine_per_class, device=device)


def image_falcon(
    train: ImageSet,
    *,
    n_fine: int,
    config: FalconConfig,
    backbone: str = "resnet18",
    image_size: int = 32,
    augmentation: Augmentation | None = None,
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    weights: str | Path | None = None,
    prefix_map: dict[str, str] | None = None,
    network: torch.nn.Module | None = None,
    views: AugmentedImages | None = None,
    neighbors: NeighborGraph | None = None,
    evaluation: dict[str, ImageSet | AugmentedImages] | None = None,
    device: str | torch.device = "cpu",
    random_state: int = 0,
    on_epoch_end: Callable[[TrainingProgress], None] | None = None,
    resume: dict[str, Any] | None = None,
    progress: bool = True,
) -> ImageFalconResult:
    """Discover ``n_fine`` fine classes in ``train`` (coarse labels only) with FALCON on a ResNet.

    The network is ``backbone`` (see :func:`~falcon_sc.image.build_backbone`) with a linear head to ``n_fine``,
    initialised from ``weights`` if given (:func:`~falcon_sc.image.load_backbone_weights`), or the given
    ``network``. ``views`` are ``train``'s views if the caller already built them (``make_views`` with
    the same size, augmentation, statistics and device), so its pixels are not copied to the device twice.
    Neighbours (``config.n_neighbors`` within each coarse class, cosine) come from the network's features
    before training unless ``neighbors`` is given. The whole network is then fine-tuned by the engine, with
    strong views for the student and weak views for the EMA teacher. Each set of ``evaluation`` (e.g. val,
    test; an :class:`~.datasets.ImageSet` or its views, if already built) is scored with :func:`evaluate`
    after training.
    """
    if views is not None and views.images is not train:
        raise ValueError("image_falcon: `views` were built from another ImageSet than `train`; pass views=None.")
    config = config.resolved(n_genes=None, n_cells=len(train.coarse))  # backbone features: an embedding
    device = torch.device(device)
    amp = config.mixed_precision and device.type == "cuda"
    augmentation = augmentation or Augmentation()
    stats = stats or channel_stats(train)
    timings: dict[str, float] = {}
    report = None
    if network is None:
        network, report = build_network(
            backbone, n_fine, in_channels=train.n_channels, weights=weights, prefix_map=prefix_map, seed=random_state
        )
    if distributed.world()[1] > 1 and device.type == "cuda":
        # Under data parallelism each rank sees a slice of the batch; batch statistics span all of them.
        network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
    network = network.to(device).to(memory_format=torch.channels_last)
    if views is None:
        views = make_views(train, size=image_size, augmentation=augmentation, stats=stats, device=device)
    if neighbors is None:
        t0 = time.perf_counter()
        neighbors = find_neighbors(network, views, config, device)
        timings["neighbors"] = time.perf_counter() - t0
    result = train_falcon(
        views,
        train.coarse,
        neighbors,
        n_fine=n_fine,
        n_coarse=len(train.coarse_names),
        config=config,
        random_state=random_state,
        device=device,
        progress=progress,
        network=network,
        on_epoch_end=on_epoch_end,
        resume=resume,
    )
    timings.update(result.timings)
    teacher = result.classifier.network.to(device)
    scores = {}
    for name, images in (evaluation or {}).items():
        if not isinstance(images, AugmentedImages):
            images = make_views(images, size=image_size, augmentation=augmentation, stats=stats, device=device)
        scores[name] = evaluate(teacher, images, result.relationship, device, amp)
    return ImageFalconResult(result=result, network=teacher, metrics=scores, checkpoint=report, timings=timings)
