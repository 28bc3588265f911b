"""Example-based set metrics: per-image averages and the Hamming loss."""

from __future__ import annotations

from phototag.evaluation.metrics._arrays import (
    LabelMatrix,
)
from phototag.evaluation.metrics.counts import label_counts


def image_precision_score(y_true: LabelMatrix, y_pred: LabelMatrix) -> float:
    """Per-image precision, I-P: the mean over images of ``NLc_i / NLp_i``.

    Called prec_img in the metadata paper. (The M3 paper's "I-P" is the overall precision,
    :func:`overall_precision_score`.)

    Parameters
    ----------
    y_true, y_pred : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth and predicted label sets.

    Returns
    -------
    float
        In [0, 1]. Images without true labels are left out of the mean; an image with true
        labels and no prediction scores 0; 0.0 if no image is averaged.
    """
    return label_counts(y_true, y_pred).image_precision_score()


def image_recall_score(y_true: LabelMatrix, y_pred: LabelMatrix) -> float:
    """Per-image recall, I-R: the mean over images of ``NLc_i / NLg_i``.

    Called rec_img in the metadata paper. (The M3 paper's "I-R" is the overall recall,
    :func:`overall_recall_score`.)

    Parameters
    ----------
    y_true, y_pred : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth and predicted label sets.

    Returns
    -------
    float
        In [0, 1]. Images without true labels are left out; 0.0 if no image is averaged.
    """
    return label_counts(y_true, y_pred).image_recall_score()


def image_f1_score(y_true: LabelMatrix, y_pred: LabelMatrix) -> float:
    """Per-image F1, I-F1: the harmonic mean of I-P and I-R.

    Like C-F1, this is the harmonic mean of the two averages. It differs from scikit-learn's
    ``f1_score(..., average="samples")``, which averages per-image F1 scores.

    Parameters
    ----------
    y_true, y_pred : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth and predicted label sets.

    Returns
    -------
    float
        In [0, 1]; 0.0 when I-P + I-R = 0.
    """
    return label_counts(y_true, y_pred).image_f1_score()


def hamming_loss(y_true: LabelMatrix, y_pred: LabelMatrix) -> float:
    """Hamming loss: the fraction of (image, label) cells predicted wrongly.

    ``(sum fp + sum fn) / (n_images * n_labels)``; equals ``sklearn.metrics.hamming_loss``.
    Used by the modality-fusion paper.

    Parameters
    ----------
    y_true, y_pred : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth and predicted label sets.

    Returns
    -------
    float
        In [0, 1], lower is better; 0.0 for an empty matrix.
    """
    return label_counts(y_true, y_pred).hamming_loss()
