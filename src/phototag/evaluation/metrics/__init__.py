"""Evaluation metrics for multi-label image annotation, one module per kind.

``counts`` (the additive `LabelCounts`), ``label_based`` (per-class and overall),
``example_based`` (per-image, Hamming loss), ``ranking`` (average precision), ``quantity``
(label-quantity prediction), ``bounds`` (the top-k upper bound) and ``report`` (all at once).

Inputs are ``y_true`` (binary ``[n_images, n_labels]``, dense or ``scipy.sparse``), ``y_pred``
(binary label sets of the same shape) or ``y_score`` (real-valued, higher = more relevant).
Arguments are always ordered ``(y_true, y_pred)`` or ``(y_true, y_score)``. Names ending in
``_score`` are higher-is-better, names ending in ``_loss`` lower-is-better.

Every set-based metric is a function of a :class:`LabelCounts` (per-label tp/fp/fn, per-image
correct/predicted/true counts). Counts of batches add up exactly, so large evaluations can be
accumulated batch by batch without averaging per-batch scores.

Conventions (see ``docs/metrics.md`` for the full table of paper names):

* Labels with no positive in ``y_true`` ("absent labels") are left out of every per-class
  average (C-P, C-R, C-F1, mean class F1, mAP per label) unless ``absent_labels="include"``,
  which averages over all ``n_labels`` and scores absent labels 0.
* A label never predicted has precision 0; an image with true labels but no prediction has
  precision 0.
* Images with no true labels are left out of the per-image averages (I-P, I-R, mAP per image).
* A ratio with an empty denominator (nothing predicted at all, every label or image left out,
  F1 of two zeros) is 0.0.
* Tied scores form one threshold step in average precision, as in scikit-learn.
"""

from phototag.evaluation.metrics._arrays import AbsentLabels, LabelMatrix
from phototag.evaluation.metrics.bounds import top_k_upper_bound
from phototag.evaluation.metrics.counts import REPORT_KEYS, LabelCounts, label_counts
from phototag.evaluation.metrics.example_based import (
    hamming_loss,
    image_f1_score,
    image_precision_score,
    image_recall_score,
)
from phototag.evaluation.metrics.label_based import (
    class_f1_score,
    class_precision_score,
    class_recall_score,
    harmonic_f1_score,
    mean_class_f1_score,
    n_plus,
    overall_f1_score,
    overall_precision_score,
    overall_recall_score,
)
from phototag.evaluation.metrics.quantity import (
    label_quantity_accuracy_score,
    label_quantity_mse_loss,
)
from phototag.evaluation.metrics.ranking import (
    image_average_precision_score,
    label_average_precision_score,
)
from phototag.evaluation.metrics.report import annotation_report

__all__ = [
    "AbsentLabels",
    "LabelCounts",
    "LabelMatrix",
    "REPORT_KEYS",
    "annotation_report",
    "class_f1_score",
    "class_precision_score",
    "class_recall_score",
    "hamming_loss",
    "harmonic_f1_score",
    "image_average_precision_score",
    "image_f1_score",
    "image_precision_score",
    "image_recall_score",
    "label_average_precision_score",
    "label_counts",
    "label_quantity_accuracy_score",
    "label_quantity_mse_loss",
    "mean_class_f1_score",
    "n_plus",
    "overall_f1_score",
    "overall_precision_score",
    "overall_recall_score",
    "top_k_upper_bound",
]
