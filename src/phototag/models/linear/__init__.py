"""A linear tag classifier on frozen features, its losses, and the M3 paper's CNN +
logistic / softmax / WARP baselines as presets of it."""

from phototag.models.linear.annotators import (
    LOSSES,
    CNNLogisticAnnotator,
    CNNSoftmaxAnnotator,
    CNNWarpAnnotator,
    LinearAnnotator,
)
from phototag.models.linear.losses import (
    asymmetric_loss,
    logistic_loss,
    softmax_loss,
    warp_loss,
    warp_rank_weights,
)

__all__ = [
    "LOSSES",
    "CNNLogisticAnnotator",
    "CNNSoftmaxAnnotator",
    "CNNWarpAnnotator",
    "LinearAnnotator",
    "asymmetric_loss",
    "logistic_loss",
    "softmax_loss",
    "warp_loss",
    "warp_rank_weights",
]
