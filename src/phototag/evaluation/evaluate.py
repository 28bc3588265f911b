"""Evaluate label sets or scores against a dataset split with the full metric suite."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phototag.data import AnnotationSet
from phototag.errors import InvalidInputError
from phototag.evaluation.decoding import Decoder, parse_protocol
from phototag.evaluation.metrics import annotation_report
from phototag.evaluation.predictions import Predictions
from phototag.evaluation.protocols import FittedModel


@dataclass(frozen=True)
class EvaluationResult:
    metrics: dict[str, float | int]
    protocol: str


def evaluate_scores(
    target: AnnotationSet,
    scores: np.ndarray,
    decoder: Decoder,
    quantities: np.ndarray | None = None,
) -> EvaluationResult:
    """Decode `scores` with `decoder`; ranking metrics use the raw scores."""
    label_sets = decoder.decode(scores, quantities)
    metrics = annotation_report(target.labels, label_sets, scores)
    return EvaluationResult(metrics, f"protocol {decoder.to_config()}")


def evaluate_predictions(
    target: AnnotationSet, predictions: Predictions, protocol: str = "top5"
) -> EvaluationResult:
    """Metrics of predictions read by `read_predictions` for `target`.

    Label sets are evaluated as given (the protocol does not apply, and the ranking
    metrics rank the 0/1 sets, so tied labels share one threshold step).
    """
    if predictions.label_sets is not None:
        sets = predictions.label_sets
        metrics = annotation_report(target.labels, sets, sets.astype(np.float32))
        return EvaluationResult(metrics, "label sets as given")
    scores = predictions.scores
    if scores is None:
        raise InvalidInputError("predictions", "scores or label sets", "neither")
    return evaluate_scores(target, scores, parse_protocol(protocol), predictions.quantities)


def evaluate_model(
    model: FittedModel, target: AnnotationSet, protocol: str = "top5"
) -> EvaluationResult:
    """Score `target` with `model`; ``protocol="model"`` uses the model's own decoder."""
    decoder = model.decoder_ if protocol == "model" else parse_protocol(protocol)
    scores = model.scores(target)
    if model.vocabulary_ != target.vocabulary:
        scores = _align_columns(scores, model, target)
    return evaluate_scores(target, scores, decoder)


def _align_columns(scores: np.ndarray, model: FittedModel, target: AnnotationSet) -> np.ndarray:
    """Model scores re-ordered to the dataset vocabulary; labels the model lacks score lowest."""
    aligned = np.full((len(scores), target.n_labels), scores.min() - 1.0, dtype=np.float32)
    shared = [name for name in model.vocabulary_ if name in target.vocabulary]
    if not shared:
        raise InvalidInputError(
            "--model", "a model sharing labels with the dataset", "no common label"
        )
    aligned[:, target.vocabulary.indices(shared)] = scores[:, model.vocabulary_.indices(shared)]
    return aligned
