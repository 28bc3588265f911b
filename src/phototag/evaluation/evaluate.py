"""Evaluate label sets or scores against a dataset split with the full metric suite."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phototag.data import AnnotationSet
from phototag.errors import InvalidInputError
from phototag.evaluation.decoding import Decoder, parse_protocol
from phototag.evaluation.metrics import annotation_report
from phototag.evaluation.predictions import Prediction
from phototag.evaluation.protocols import FittedModel


@dataclass(frozen=True)
class EvaluationResult:
    metrics: dict[str, float | int]
    protocol: str


def evaluate_prediction(
    target: AnnotationSet, prediction: Prediction, decoder: Decoder
) -> EvaluationResult:
    """Decode `prediction` with `decoder`; ranking metrics use its raw scores."""
    label_sets = decoder.decode_prediction(prediction)
    metrics = annotation_report(target.labels, label_sets, prediction.scores)
    return EvaluationResult(metrics, f"protocol {decoder.to_config()}")


def evaluate_predictions(
    target: AnnotationSet, predictions: Prediction, protocol: str = "top5"
) -> EvaluationResult:
    """Metrics of predictions read by `read_predictions` for `target`.

    Label sets are evaluated as given (the protocol does not apply, and the ranking
    metrics rank the 0/1 sets, so tied labels share one threshold step).
    """
    if predictions.scores is None:
        sets = predictions.label_sets
        metrics = annotation_report(target.labels, sets, sets.astype(np.float32))
        return EvaluationResult(metrics, "label sets as given")
    return evaluate_prediction(target, predictions, parse_protocol(protocol))


def evaluate_model(
    model: FittedModel, target: AnnotationSet, protocol: str = "top5"
) -> EvaluationResult:
    """Predict `target` with `model`; ``protocol="model"`` uses the model's own decoder
    (so a model's own quantities or label sets decide its label sets)."""
    decoder = model.decoder_ if protocol == "model" else parse_protocol(protocol)
    prediction = model.predict(target)
    if model.vocabulary_ != target.vocabulary:
        prediction = _align_columns(prediction, model, target)
    return evaluate_prediction(target, prediction, decoder)


def _align_columns(prediction: Prediction, model: FittedModel, target: AnnotationSet) -> Prediction:
    """A prediction re-ordered to the dataset vocabulary; labels the model lacks score
    lowest and are in no label set."""
    shared = [name for name in model.vocabulary_ if name in target.vocabulary]
    if not shared:
        raise InvalidInputError(
            "--model", "a model sharing labels with the dataset", "no common label"
        )
    fill = float(prediction.scores.min()) - 1.0
    return prediction.moved(
        model.vocabulary_.indices(shared), target.vocabulary.indices(shared), target.n_labels, fill
    )
