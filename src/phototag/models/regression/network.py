"""CNN-R's network and training data: the encoder's last block + a linear projection,
trained on stored trunk maps (`phototag.features.maps`) with an L2 loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from phototag.errors import InvalidInputError
from phototag.features.encoders import Backbone
from phototag.features.store import MappedRows


def split_backbone(model: Backbone) -> tuple[nn.Module, nn.Module, str]:
    """The frozen trunk, the fine-tuned last block, and the name of the trunk's output map.

    EfficientNet-Lite: the last MBConv stage (``stage7``) and the 1x1 ``head`` conv are
    fine-tuned; ResNet: ``layer4`` (``conv5_x``). The modules share the backbone's weights.
    """
    from phototag.features.encoders.efficientnet_lite import EfficientNetLite
    from phototag.features.encoders.resnet import ResNet

    if isinstance(model, EfficientNetLite):
        trunk = nn.Sequential(model.stem, *model.blocks[:-1])
        block = nn.Sequential(model.blocks[-1], model.head)
        return trunk, block, model.stages[-3].name
    if isinstance(model, ResNet):
        parts = [model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2]
        trunk = nn.Sequential(*parts, model.layer3)
        return trunk, model.layer4, model.stages[-2].name
    raise InvalidInputError(
        "encoder",
        "an EfficientNet-Lite or ResNet encoder (whose last block CNN-R fine-tunes)",
        type(model).__name__,
    )


class Regressor(nn.Module):
    """Fine-tuned block -> global average pool -> dropout -> linear projection."""

    def __init__(self, block: nn.Module, channels: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.block = block
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(channels, dim)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.projection(self.dropout(self.block(maps).mean(dim=(2, 3))))

    def train(self, mode: bool = True) -> Self:
        """Training mode, except batch norms: they keep their ImageNet statistics."""
        super().train(mode)
        for module in self.block.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self


def float_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Floating-point tensors of `module`'s state (BatchNorm step counters left out)."""
    return {k: v for k, v in module.state_dict().items() if v.is_floating_point()}


def l2_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance, averaged over the batch (the paper's L2 loss)."""
    return ((predicted - target) ** 2).sum(dim=1).mean()


class MapsDataset(Dataset):
    """Items ``(maps, target)``: rows `rows` of stored maps as float32 ``[C, H, W]``.

    With several views (the photo and its mirror image) each item reads one of them,
    drawn from torch's generator, which the trainer seeds: the flip augmentation.
    """

    def __init__(
        self, views: Sequence[MappedRows | np.ndarray], rows: np.ndarray, targets: np.ndarray
    ) -> None:
        self.views = tuple(views)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = torch.from_numpy(np.asarray(targets, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        view = int(torch.randint(len(self.views), ())) if len(self.views) > 1 else 0
        maps = self.views[view][int(self.rows[index])].astype(np.float32)
        return torch.from_numpy(maps), self.targets[index]
