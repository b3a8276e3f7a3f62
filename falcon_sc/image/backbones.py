"""ResNet backbones, checkpoint loading with key-prefix mapping, and the fine classifier built on them.

The ResNets follow torchvision's architecture and parameter names exactly (``conv1``, ``bn1``,
``layer1.0.conv1`` …), so torchvision and solo-learn state dicts load without renaming. They are defined
here rather than imported because torchvision's compiled operators must match the installed torch build
exactly (a mismatched wheel fails at import), and only the architecture is needed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)


def _conv3x3(n_in: int, n_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, n_in: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(n_in, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, n_in: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(n_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)  # stride on the 3×3 conv (torchvision's "ResNet v1.5")
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """A ResNet trunk returning pooled features (``fc`` is an identity, kept for torchvision's key layout).

    ``cifar_stem`` replaces the 7×7 stride-2 convolution and max-pool by one 3×3 stride-1 convolution, the
    usual stem for 32 × 32 images. ``width`` is the first stage's channel count (64 in the published
    ResNets; the later stages double it); a narrower network trains on a CPU in a fraction of the time.
    """

    def __init__(
        self, block, layers: tuple[int, ...], *, in_channels: int = 3, cifar_stem: bool = False, width: int = 64
    ):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be a positive channel count, got {width}.")
        self.n_in = width
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if cifar_stem else nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._stage(block, width, layers[0], 1)
        self.layer2 = self._stage(block, 2 * width, layers[1], 2)
        self.layer3 = self._stage(block, 4 * width, layers[2], 2)
        self.layer4 = self._stage(block, 8 * width, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Identity()
        self.feature_dim = 8 * width * block.expansion
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def _stage(self, block, width: int, n_blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.n_in != width * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.n_in, width * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(width * block.expansion),
            )
        blocks = [block(self.n_in, width, stride, downsample)]
        self.n_in = width * block.expansion
        blocks += [block(self.n_in, width) for _ in range(n_blocks - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


BACKBONES = {
    "resnet18": dict(block=BasicBlock, layers=(2, 2, 2, 2), cifar_stem=True),
    "resnet50": dict(block=Bottleneck, layers=(3, 4, 6, 3)),
}


def build_backbone(name: str, *, in_channels: int = 3, width: int = 64) -> ResNet:
    """``"resnet18"`` (CIFAR stem) or ``"resnet50"`` (ImageNet stem); ``width`` channels in the first stage
    (64 as published; pretrained checkpoints need it)."""
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; choose one of {sorted(BACKBONES)}.")
    return ResNet(**BACKBONES[name], in_channels=in_channels, width=width)


class FineNetwork(nn.Module):
    """Backbone + linear head to the K_F fine classes; the whole network is fine-tuned."""

    def __init__(self, backbone: ResNet, n_fine: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.feature_dim, n_fine)

    def forward(self, x):
        return self.head(self.backbone(x))


@dataclass
class CheckpointReport:
    """What loading a checkpoint into a backbone did."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # backbone parameters the checkpoint lacked
    unexpected: list[str] = field(default_factory=list)  # mapped checkpoint keys the backbone has no use for
    ignored: list[str] = field(default_factory=list)  # keys outside every mapped prefix (e.g. projector heads)

    def summary(self) -> str:
        return (
            f"{len(self.loaded)} tensors loaded, {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.ignored)} ignored"
            + (f"; missing: {self.missing[:5]}" if self.missing else "")
            + (f"; unexpected: {self.unexpected[:5]}" if self.unexpected else "")
        )


#: Prefix mappings for common checkpoint layouts; the first that matches any key is used.
DEFAULT_PREFIXES = ({"backbone.": ""}, {"module.encoder_q.": ""}, {"module.": ""}, {"encoder.": ""}, {"": ""})


def load_backbone_weights(
    backbone: nn.Module, path: str | Path, *, prefix_map: dict[str, str] | None = None
) -> CheckpointReport:
    """Load the weights of a checkpoint file into ``backbone`` and report what matched.

    The file is a state dict or a dict holding one under ``"state_dict"`` or ``"model"`` (solo-learn and
    Lightning checkpoints use ``"state_dict"`` with ``backbone.`` keys). ``prefix_map`` renames keys
    (``{"backbone.": ""}`` strips solo-learn's prefix); keys under no mapped prefix are ignored. Without it,
    the first of ``DEFAULT_PREFIXES`` matching any key is used. Shape mismatches raise a ValueError
    naming the keys. Files are read with ``weights_only=True``: no code in them runs.
    """
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(f"{path} holds no state dict of tensors (looked at the top level, 'state_dict', 'model').")
    if prefix_map is None:
        prefix_map = next(m for m in DEFAULT_PREFIXES if any(k.startswith(p) for k in checkpoint for p in m))
    report = CheckpointReport()
    mapped = {}
    longest_first = sorted(prefix_map, key=len, reverse=True)
    for key, value in checkpoint.items():
        prefix = next((p for p in longest_first if key.startswith(p)), None)
        if prefix is None:
            report.ignored.append(key)
        else:
            mapped[prefix_map[prefix] + key[len(prefix) :]] = value
    own = backbone.state_dict()
    wrong_shape = [k for k, v in mapped.items() if k in own and own[k].shape != v.shape]
    if wrong_shape:
        details = ", ".join(f"{k} {tuple(mapped[k].shape)} vs {tuple(own[k].shape)}" for k in wrong_shape[:5])
        raise ValueError(f"{len(wrong_shape)} checkpoint tensors do not fit the backbone: {details}.")
    result = backbone.load_state_dict(mapped, strict=False)
    report.missing, report.unexpected = list(result.missing_keys), list(result.unexpected_keys)
    report.loaded = [k for k in mapped if k in own]
    if not report.loaded:
        raise ValueError(f"No tensor of {path} matched the backbone after the prefix mapping {prefix_map}.")
    logger.info("checkpoint %s: %s", path, report.summary())
    return report
