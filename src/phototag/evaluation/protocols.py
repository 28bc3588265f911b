"""What evaluation needs of a model: structural types that `phototag.models.Annotator` meets.

Evaluation sits below the models (models use its metrics and decoders), so it names a model
by what it does rather than by its class.
"""

from __future__ import annotations

from typing import Any, Protocol, Self

import numpy as np

from phototag.data import AnnotationSet, Vocabulary
from phototag.evaluation.decoding import Decoder
from phototag.evaluation.predictions import Prediction


class ScoringModel(Protocol):
    """A model that learns from an `AnnotationSet` and scores one: ``[n, L]``, higher first."""

    def fit(self, train: AnnotationSet, valid: AnnotationSet | None = None) -> Self: ...
    def scores(self, inputs: AnnotationSet) -> np.ndarray: ...
    def clone(self, *, keep_state: bool = False, **params: Any) -> Self: ...


class FittedModel(Protocol):
    """A fitted model with its label vocabulary and its own decoder."""

    vocabulary_: Vocabulary
    decoder_: Decoder

    def predict(self, inputs: AnnotationSet) -> Prediction: ...
