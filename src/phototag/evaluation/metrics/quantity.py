"""Label-quantity metrics: how well a model predicts how many labels an image has."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from phototag.errors import InvalidInputError
from phototag.evaluation.metrics._arrays import (
    LabelMatrix,
    _as_binary,
    _FloatArray,
    _Int64Array,
    _mean,
    _row_col_sums,
)


def _validated_quantity(
    y_true: LabelMatrix, predicted_quantity: npt.ArrayLike
) -> tuple[_Int64Array, _FloatArray]:
    t = _as_binary(y_true, "y_true")
    q = np.asarray(predicted_quantity)
    if q.ndim != 1 or q.shape[0] != t.shape[0]:
        raise InvalidInputError(
            "predicted_quantity",
            f"a 1-D array with one count per image, shape ({t.shape[0]},)",
            f"shape {q.shape}",
            "Pass one predicted number of labels per row of y_true (use .ravel() on a column).",
        )
    if q.dtype.kind not in "iuf":
        raise InvalidInputError(
            "predicted_quantity", "real numbers", f"dtype {q.dtype}", "Convert with np.asarray."
        )
    q = q.astype(np.float64)
    if not np.isfinite(q).all():
        i = int(np.flatnonzero(~np.isfinite(q))[0])
        raise InvalidInputError(
            "predicted_quantity",
            "finite numbers",
            f"{q[i]} at index {i}",
            "Replace NaN/inf predictions before evaluating.",
        )
    return _row_col_sums(t)[0], q


def label_quantity_accuracy_score(y_true: LabelMatrix, predicted_quantity: npt.ArrayLike) -> float:
    """Fraction of images whose rounded predicted number of labels equals the true number.

    The label-quantity accuracy of the M3 paper (Tables V-VI). Predictions are rounded half
    up, ``floor(q + 0.5)`` (2.5 -> 3, unlike numpy's round-half-to-even).

    Parameters
    ----------
    y_true : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth; the true quantity is each row's number of labels.
    predicted_quantity : array-like of shape (n_images,)
        Predicted number of labels per image (real-valued regression output or integers).

    Returns
    -------
    float
        In [0, 1]; 0.0 for zero images.

    Examples
    --------
    >>> label_quantity_accuracy_score([[1, 1, 0], [1, 0, 0]], [1.5, 1.49])
    1.0
    """
    n_true, q = _validated_quantity(y_true, predicted_quantity)
    return _mean(np.floor(q + 0.5) == n_true)


def label_quantity_mse_loss(y_true: LabelMatrix, predicted_quantity: npt.ArrayLike) -> float:
    """Mean squared error of the predicted number of labels per image (M3 paper, Eq. 5).

    Computed on the unrounded predictions: ``mean_i (q_i - NLg_i)^2``.

    Parameters
    ----------
    y_true : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth; the true quantity is each row's number of labels.
    predicted_quantity : array-like of shape (n_images,)
        Predicted number of labels per image.

    Returns
    -------
    float
        Non-negative, lower is better; 0.0 for zero images.
    """
    n_true, q = _validated_quantity(y_true, predicted_quantity)
    return _mean((q - n_true) ** 2)
