"""ResNet-50/101 (He et al. 2016) with torchvision's parameter names.

A torchvision-format state dict (``conv1.weight``, ``layer3.22.bn2.running_var``,
``fc.bias``; timm's ResNets use the same names) loads strictly. The layout is
torchvision's "v1.5": the stride-2 of a stage's first bottleneck sits on the 3x3
convolution. Nothing ships or downloads: the user names a weights file.

Feature maps follow the multi-scale (M3) paper's names for ResNet-101: ``conv1``
(after BN and ReLU, before max-pooling; 64 ch, /2), ``conv2_3``, ``conv3_4``,
``conv4_23``, ``conv5_3`` (the last bottleneck of layer1..layer4; 256, 512, 1024,
2048 ch at /4, /8, /16, /32), i.e. 112, 56, 28, 14, 7 pixels at 224 px input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import torch
from torch import nn

from phototag.errors import InvalidInputError
from phototag.features.encoders.base import LOGITS, POOLED, ImageEncoder, StageSpec
from phototag.features.encoders.imagenet import imagenet_classes
from phototag.features.encoders.network import Backbone
from phototag.features.encoders.preprocess import Preprocess
from phototag.features.encoders.runtime import attach_runtime
from phototag.features.encoders.weights import (
    load_state_dict_file,
    load_strict,
    state_dict_digest,
)

#: torchvision's ImageNet normalisation on the 0-255 scale.
IMAGENET_MEAN: Final = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD: Final = (0.229 * 255, 0.224 * 255, 0.225 * 255)
DEPTHS: Final = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand (x4), plus shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + shortcut)


class ResNet(Backbone):
    """Bottleneck ResNet; ``forward`` returns the five scales, ``pooled``, ``logits``."""

    num_features = 2048

    def __init__(self, depths: tuple[int, int, int, int], num_classes: int = 1000) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        specs = [StageSpec("conv1", 64, 2)]
        in_channels, reduction = 64, 2
        for i, (blocks, width) in enumerate(zip(depths, (64, 128, 256, 512), strict=True)):
            stride = 1 if i == 0 else 2
            layer = nn.Sequential(
                *(
                    Bottleneck(in_channels if j == 0 else width * 4, width, stride if j == 0 else 1)
                    for j in range(blocks)
                )
            )
            self.add_module(f"layer{i + 1}", layer)
            in_channels = width * 4
            reduction *= 4 if i == 0 else 2  # layer1 follows the max-pool
            specs.append(StageSpec(f"conv{i + 2}_{blocks}", in_channels, reduction))
        self.stages = tuple(specs)
        self.scales = tuple(s.name for s in specs)
        self.fc = nn.Linear(2048, num_classes) if num_classes else None
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        names = [s.name for s in self.stages]
        x = self.relu(self.bn1(self.conv1(x)))
        out = {names[0]: x}
        x = self.maxpool(x)
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            out[names[i + 1]] = x
        pooled = x.mean(dim=(2, 3))
        out[POOLED] = pooled
        if self.fc is not None:
            out[LOGITS] = self.fc(pooled)
        return out


def build_resnet(
    arch: str,
    *,
    weights: str | Path | None,
    pretrained: bool,
    runtime: str,
    input_size: int,
    resize: str,
    crop_fraction: float,
    cache_dir: str | Path | None,
) -> ImageEncoder:
    preprocess = Preprocess(
        input_size=input_size,
        resize=resize,
        crop_fraction=crop_fraction,
        interpolation="bilinear",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
    if weights is None:
        if pretrained:
            raise InvalidInputError(
                "weights",
                f"a path to {arch} weights in torchvision layout (.pth or .safetensors)",
                "None",
                "phototag downloads nothing: pass weights='resnet101.pth' (see "
                "docs/encoders.md for where to get them), or weights=None, "
                "pretrained=False for random weights (tests only).",
            )
        model = ResNet(DEPTHS[arch])
        state = model.state_dict()
        source = "random initialisation"
        class_names = None
    else:
        if not pretrained:
            raise InvalidInputError(
                "pretrained", "True when weights is given", "False", "Leave pretrained out."
            )
        state = load_state_dict_file(weights)
        num_classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else 0
        model = ResNet(DEPTHS[arch], num_classes=num_classes)
        source = str(weights)
        load_strict(model, state, source)
        class_names = imagenet_classes() if num_classes == 1000 else None
    encoder = ImageEncoder(
        arch,
        model,
        preprocess,
        weights_sha256=state_dict_digest(state),
        weights_source=source,
        class_names=class_names,
    )
    attach_runtime(encoder, runtime, cache_dir)
    return encoder
