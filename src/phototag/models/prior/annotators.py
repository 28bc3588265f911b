"""Label-frequency prior: scores every image by how common each label is in training.

The reference point every real model must beat, and the smallest complete `Annotator`.
"""

from __future__ import annotations

import numpy as np

from phototag.data import AnnotationSet
from phototag.errors import check_float
from phototag.models.base import Annotator
from phototag.models.registry import register_annotator


@register_annotator("prior")
class PriorAnnotator(Annotator):
    """Score of label ``j`` = (items with ``j`` + `smoothing`) / (items + 2 `smoothing`)."""

    def __init__(self, smoothing: float = 1.0) -> None:
        self.smoothing = check_float("smoothing", smoothing, 0.0, strict=False)

    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        counts = train.label_frequencies().astype(np.float64)
        self.label_frequency_ = (
            (counts + self.smoothing) / (train.n_items + 2 * self.smoothing)
        ).astype(np.float32)

    def _scores(self, inputs: AnnotationSet) -> np.ndarray:
        return np.broadcast_to(self.label_frequency_, (inputs.n_items, len(self.label_frequency_)))
