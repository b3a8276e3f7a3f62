"""FALCON on images: the engine of :mod:`falcon_sc.core` with ResNet backbones and augmented views.

Datasets (:mod:`.datasets`, :mod:`.imagenet`): CIFAR-100 and its CIFAR68 / CIFAR-SI variants, the BREEDS
benchmarks, tieredImageNet, Fashion-MNIST. Backbones (:mod:`.backbones`): ResNet-18 (CIFAR stem), ResNet-50,
checkpoint loading. Views (:mod:`.augment`), training and evaluation (:mod:`.train`), a SimCLR warm-up
(:mod:`.ssl`), per-benchmark settings (:mod:`.benchmarks`) and the resumable runner
(``python -m falcon_sc.image``, :mod:`.runner`).
"""

from .augment import Augmentation, AugmentedImages
from .backbones import CheckpointReport, FineNetwork, build_backbone, load_backbone_weights
from .benchmarks import BENCHMARKS, VISION, VISION_DELAYED_M, Benchmark, get_benchmark
from .datasets import ImageSet, ImageSplits, load_cifar100, load_fashion_mnist
from .imagenet import breeds_classes, load_imagenet_hierarchy, tiered_classes
from .ssl import simclr_warmup
from .train import ImageFalconResult, build_network, evaluate, find_neighbors, image_falcon

__all__ = [
    "BENCHMARKS",
    "VISION",
    "VISION_DELAYED_M",
    "Augmentation",
    "AugmentedImages",
    "Benchmark",
    "CheckpointReport",
    "FineNetwork",
    "ImageFalconResult",
    "ImageSet",
    "ImageSplits",
    "breeds_classes",
    "build_backbone",
    "build_network",
    "evaluate",
    "find_neighbors",
    "get_benchmark",
    "image_falcon",
    "load_backbone_weights",
    "load_cifar100",
    "load_fashion_mnist",
    "load_imagenet_hierarchy",
    "simclr_warmup",
    "tiered_classes",
]
