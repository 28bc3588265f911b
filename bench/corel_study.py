"""What the Corel-5k studies share: fit a model on the training split, score the test
split once, and report the top-5 row (C-P, C-R, C-F1, N+)."""

from __future__ import annotations

import time

import numpy as np

from phototag.data import AnnotationSet
from phototag.evaluation.decoding import TopK
from phototag.evaluation.metrics import annotation_report
from phototag.models import create_annotator


def top5_row(labels, scores: np.ndarray) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """C-P, C-R, C-F1, O-F1 (fractions, 4 digits) and N+ of the top 5 labels of `scores`."""
    report = annotation_report(labels, TopK(5).decode(scores), None)
    row = {k: round(float(report[k]), 4) for k in ("C-P", "C-R", "C-F1", "O-F1")}
    row["N+"] = int(report["N+"])
    return row


def fit_and_score(
    label: str,
    train: AnnotationSet,
    test: AnnotationSet,
    model_name: str,
    features: str | list[str],
    metric: str | list[str] | None = None,
) -> tuple[dict, np.ndarray]:  # type: ignore[type-arg]
    """`model_name` on `features` fitted on `train`: its test row (with the fit and
    scoring seconds, and TagProp's learned feature weights) and its test scores."""
    begin = time.perf_counter()
    options = {"metric": metric} if metric is not None else {}
    model = create_annotator(model_name, features=features, **options).fit(train)
    scores = model.scores(test)
    row: dict = {**top5_row(test.labels, scores), "seconds": round(time.perf_counter() - begin, 1)}
    if model_name == "tagprop":
        keys = [features] if isinstance(features, str) else features
        weights = np.round(model.weights_, 3).tolist()
        row["feature_weights"] = dict(zip(keys, weights, strict=True))
    print(f"{label}: {row}", flush=True)
    return row, scores
