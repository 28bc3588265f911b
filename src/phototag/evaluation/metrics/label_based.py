"""Label-based set metrics: per-class (macro) and overall (micro) averages over labels."""

from __future__ import annotations

from phototag.evaluation.metrics._arrays import (
    AbsentLabels,
    LabelMatrix,
)
from phototag.evaluation.metrics.counts import label_counts


def class_precision_score(
    y_true: LabelMatrix, y_pred: LabelMatrix, *, absent_labels: AbsentLabels = "exclude"
) -> float:
    """Per-class precision, C-P: the mean over labels of ``tp / (tp + fp)``.

    Called C-P in the M3 paper (Eq. 6) and the JVSP paper, prec_lab in the metadata paper and
    P (per-word precision) in the CCA-KNN paper.

    Parameters
    ----------
    y_true, y_pred : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth and predicted label sets.
    absent_labels : {"exclude", "include"}, default="exclude"
        "exclude" averages over labels with at least one positive in ``y_true``; "include"
        averages over all ``n_labels`` (equals ``sklearn.metrics.precision_score(...,
        average="macro", zero_division=0)``).

    Returns
    -------
    float
        In [0, 1]. A label never predicted has precision 0; 0.0 if no label is averaged.

    Examples
    --------
    >>> class_precision_score([[1, 0], [1, 1]], [[1, 1], [0, 1]])
    0.75
    """
    return label_counts(y_true, y_pred).class_precision_score(absent_labels)


def class_recall_score(
    y_true: LabelMatrix, y_pred: LabelMatrix, *, absent_labels: AbsentLabels = "exclude"
) -> float:
    """Per-class recall, C-R: the mean over labels of ``tp / (tp + fn)``.

    Called C-R in the M3 paper (Eq. 6) and the JVSP paper, rec_lab in the metadata paper and
    R (per-word recall) in the CCA-KNN paper.

    Parameters
    ----------
    y_true, y_pred : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth and predicted label sets.
    absent_labels : {"exclude", "include"}, default="exclude"
        "exclude" averages over labels with at least one positive in ``y_true``; "include"
        averages over all ``n_labels``, absent labels scoring recall 0 (equals scikit-learn's
        ``recall_score(..., average="macro", zero_division=0)``).

    Returns
    -------
    float
        In [0, 1]; 0.0 if no label is averaged.

    Examples
    --------
    >>> class_recall_score([[1, 0], [1, 1]], [[1, 1], [0, 1]])
    0.75
    """
    return label_counts(y_true, y_pred).class_recall_score(absent_labels)


def class_f1_score(
    y_true: LabelMatrix, y_pred: LabelMatrix, *, absent_labels: AbsentLabels = "exclude"
) -> float:
    """Per-class F1, C-F1: the harmonic mean of C-P and C-R.

    ``C-F1 = 2 C-P C-R / (C-P + C-R)`` as the M3 paper (Eq. 6), the JVSP paper and the
    CCA-KNN paper (F) compute it. This is *not* the mean of per-label F1 scores (that is
    :func:`mean_class_f1_score`, scikit-learn's macro F1).

    Parameters
    ----------
    y_true, y_pred : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth and predicted label sets.
    absent_labels : {"exclude", "include"}, default="exclude"
        Label set of the C-P and C-R averages (see :func:`class_precision_score`).

    Returns
    -------
    float
        In [0, 1]; 0.0 when C-P + C-R = 0.
    """
    return label_counts(y_true, y_pred).class_f1_score(absent_labels)


def mean_class_f1_score(
    y_true: LabelMatrix, y_pred: LabelMatrix, *, absent_labels: AbsentLabels = "exclude"
) -> float:
    """Mean over labels of the per-label F1 ``2 tp / (2 tp + fp + fn)``.

    This is scikit-learn's ``f1_score(..., average="macro", zero_division=0)`` (restricted to
    labels present in ``y_true`` by default). The papers' C-F1 is :func:`class_f1_score`.

    Parameters
    ----------
    y_true, y_pred : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth and predicted label sets.
    absent_labels : {"exclude", "include"}, default="exclude"
        "exclude" averages over labels with a positive in ``y_true``; "include" over all
        ``n_labels`` (absent labels score 0).

    Returns
    -------
    float
        In [0, 1]; a label with tp = 0 scores 0; 0.0 if no label is averaged.
    """
    return label_counts(y_true, y_pred).mean_class_f1_score(absent_labels)


def overall_precision_score(y_true: LabelMatrix, y_pred: LabelMatrix) -> float:
    """Overall precision, O-P: correct labels over all images / predicted labels.

    ``O-P = sum_i NLc_i / sum_i NLp_i``. Called O-P in the JVSP paper and **I-P** in the M3
    paper (Eq. 6, "overall per-image precision"); equals scikit-learn's micro-averaged
    precision. Predictions on images without true labels count as wrong.

    Parameters
    ----------
    y_true, y_pred : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth and predicted label sets.

    Returns
    -------
    float
        In [0, 1]; 0.0 when nothing is predicted.
    """
    return label_counts(y_true, y_pred).overall_precision_score()


def overall_recall_score(y_true: LabelMatrix, y_pred: LabelMatrix) -> float:
    """Overall recall, O-R: correct labels over all images / ground-truth labels.

    ``O-R = sum_i NLc_i / sum_i NLg_i``. Called O-R in the JVSP paper and **I-R** in the M3
    paper (Eq. 6); equals scikit-learn's micro-averaged recall.

    Parameters
    ----------
    y_true, y_pred : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth and predicted label sets.

    Returns
    -------
    float
        In [0, 1]; 0.0 when ``y_true`` has no positive.
    """
    return label_counts(y_true, y_pred).overall_recall_score()


def overall_f1_score(y_true: LabelMatrix, y_pred: LabelMatrix) -> float:
    """Overall F1, O-F1: the harmonic mean of O-P and O-R.

    Called O-F1 in the JVSP paper and **I-F1** in the M3 paper (Eq. 6); equals scikit-learn's
    micro-averaged F1.

    Parameters
    ----------
    y_true, y_pred : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth and predicted label sets.

    Returns
    -------
    float
        In [0, 1]; 0.0 when O-P + O-R = 0.
    """
    return label_counts(y_true, y_pred).overall_f1_score()


def harmonic_f1_score(
    y_true: LabelMatrix, y_pred: LabelMatrix, *, absent_labels: AbsentLabels = "exclude"
) -> float:
    """H-F1: the harmonic mean of C-F1 and O-F1 (M3 paper, Eq. 7).

    The M3 paper writes it as the harmonic mean of C-F1 and "I-F1"; its I-F1 is the overall F1
    (:func:`overall_f1_score`), not the per-image F1.

    Parameters
    ----------
    y_true, y_pred : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth and predicted label sets.
    absent_labels : {"exclude", "include"}, default="exclude"
        Label set of the C-F1 term (see :func:`class_precision_score`).

    Returns
    -------
    float
        In [0, 1]; 0.0 when C-F1 + O-F1 = 0.
    """
    return label_counts(y_true, y_pred).harmonic_f1_score(absent_labels)


def n_plus(y_true: LabelMatrix, y_pred: LabelMatrix) -> int:
    """N+: the number of labels with non-zero recall (at least one correct prediction).

    Reported as N+ by the CCA-KNN and JVSP papers.

    Parameters
    ----------
    y_true, y_pred : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth and predicted label sets.

    Returns
    -------
    int
        In [0, n_labels].
    """
    return label_counts(y_true, y_pred).n_plus()
