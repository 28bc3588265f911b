"""Every headline metric at once."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from phototag.evaluation.metrics._arrays import (
    AbsentLabels,
    LabelMatrix,
    _as_scores,
    _check_absent,
    _check_same_shape,
    _mean,
)
from phototag.evaluation.metrics.counts import _counts, _validated_pair
from phototag.evaluation.metrics.ranking import _per_image_ap, _per_label_ap


def annotation_report(
    y_true: LabelMatrix,
    y_pred: LabelMatrix,
    y_score: npt.ArrayLike | None = None,
    *,
    absent_labels: AbsentLabels = "exclude",
) -> dict[str, float | int]:
    """Every headline metric at once, from a single pass of counting.

    Keys, in order: "C-P", "C-R", "C-F1", "O-P", "O-R", "O-F1", "I-P", "I-R", "I-F1", "H-F1",
    "N+", "mAP_label", "mAP_image", "hamming_loss" (:data:`REPORT_KEYS`). "O-*" are the
    overall (micro) scores that the M3 paper calls I-P/I-R/I-F1; "I-*" are per-image averages.

    Parameters
    ----------
    y_true, y_pred : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth and predicted label sets.
    y_score : array-like of shape (n_images, n_labels), optional
        Real scores for the two mAP entries. Without it the binary predictions are the scores
        (a two-step ranking: predicted labels first).
    absent_labels : {"exclude", "include"}, default="exclude"
        Label set of the per-class averages ("C-*" and "mAP_label").

    Returns
    -------
    dict
        Python floats in [0, 1], except "N+" (int).

    Examples
    --------
    >>> r = annotation_report([[1, 0], [0, 1]], [[1, 0], [1, 0]])
    >>> r["O-P"], r["N+"], r["hamming_loss"]
    (0.5, 1, 0.5)
    """
    _check_absent(absent_labels)
    t, p = _validated_pair(y_true, y_pred)
    s = None
    if y_score is not None:
        s = _as_scores(y_score)
        _check_same_shape(t.shape, s.shape, "y_score")
    counts = _counts(t, p)
    report = counts.report(absent_labels)
    if s is not None:
        label_ap = _per_label_ap(t, s)
        image_ap = _per_image_ap(t, s)
        n_averaged = label_ap.size if absent_labels == "include" else None
        report["mAP_label"] = _mean(label_ap, ~np.isnan(label_ap), n_averaged)
        report["mAP_image"] = _mean(image_ap, ~np.isnan(image_ap))
    return report
