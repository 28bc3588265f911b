"""The torch side of the encoders: the backbone base class and eager-PyTorch inference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from phototag.features.encoders.base import NetworkLayout, StageSpec
from phototag.features.encoders.preprocess import Preprocess, normalize


class Backbone(nn.Module):
    """Base of the encoder networks.

    ``forward(x)`` returns a dict: one entry per stage in :attr:`stages` (feature maps
    ``(N, C, H, W)``), ``"pooled"`` (global average of the last map, ``(N,
    num_features)``) and, when the network has a classifier, ``"logits"`` ``(N,
    num_classes)``. Gradients flow as usual (fine-tuning calls the module directly);
    :class:`~phototag.features.encoders.base.ImageEncoder` wraps it for inference.
    """

    stages: tuple[StageSpec, ...] = ()
    #: The final map of each stride level /2, /4, /8, /16, /32 (the multi-scale set).
    scales: tuple[str, ...] = ()
    num_features: int = 0
    num_classes: int = 0

    @property
    def layout(self) -> NetworkLayout:
        return NetworkLayout(self.stages, self.scales, self.num_features, self.num_classes)

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.layout.output_names


class TorchBackend:
    """Eager PyTorch, under ``torch.inference_mode()`` and in eval mode.

    The returned tensors are copied out of inference mode (about 1% of the forward
    time) so that they are ordinary tensors, usable as inputs of training code;
    inference tensors cannot be saved for backward.
    """

    runtime = "torch"

    def __init__(self, model: Backbone) -> None:
        self.model = model

    def run(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                out = self.model(x)
        finally:
            self.model.train(was_training)
        return {name: out[name].clone() for name in names}

    def run_pixels(
        self, pixels: np.ndarray, preprocess: Preprocess, names: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        return self.run(normalize(pixels, preprocess), names)
