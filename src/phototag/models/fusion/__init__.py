"""Multimodal similarity learning with exponentiated-gradient modality weights (the
modality-fusion paper); docs/models/fusion.md."""

from phototag.models.fusion.annotators import FusionAnnotator
from phototag.models.fusion.eg import (
    EGResult,
    eg_step,
    hamming_thresholds,
    hinge_losses,
    learn_weights,
    misranked_fraction,
    pair_differences,
    ranked_pairs,
)

__all__ = [
    "EGResult",
    "FusionAnnotator",
    "eg_step",
    "hamming_thresholds",
    "hinge_losses",
    "learn_weights",
    "misranked_fraction",
    "pair_differences",
    "ranked_pairs",
]
