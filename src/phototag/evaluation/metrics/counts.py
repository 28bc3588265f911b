"""Per-label and per-image counts: the additive state of every set-based metric."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from phototag.errors import InvalidInputError
from phototag.evaluation.metrics._arrays import (
    AbsentLabels,
    LabelMatrix,
    _as_binary,
    _Binary,
    _check_absent,
    _check_same_shape,
    _coords,
    _FloatArray,
    _harmonic,
    _Int64Array,
    _mean,
    _ratio,
    _row_chunks,
    _row_col_sums,
    _safe_div,
)

REPORT_KEYS: tuple[str, ...] = (
    "C-P",
    "C-R",
    "C-F1",
    "O-P",
    "O-R",
    "O-F1",
    "I-P",
    "I-R",
    "I-F1",
    "H-F1",
    "N+",
    "mAP_label",
    "mAP_image",
    "hamming_loss",
)
"""Keys of :func:`annotation_report`, in order."""


@dataclass(frozen=True, eq=False)
class LabelCounts:
    """Sufficient statistics of every set-based metric, additive over batches of images.

    Per-label arrays (shape ``(n_labels,)``) add element-wise; per-image arrays (shape
    ``(n_images,)``) concatenate, so ``label_counts(a_true, a_pred) + label_counts(b_true,
    b_pred)`` equals the counts of the stacked batches. All arrays are read-only int64.

    Attributes
    ----------
    tp, fp, fn : ndarray of shape (n_labels,)
        Per label: images correctly given the label, wrongly given it, and missing it.
    n_correct, n_predicted, n_true : ndarray of shape (n_images,)
        Per image: correct predicted labels, predicted labels, ground-truth labels.

    Examples
    --------
    >>> total = LabelCounts.empty(n_labels=2)
    >>> for t, p in [([[1, 0]], [[1, 1]]), ([[0, 1]], [[0, 1]])]:
    ...     total = total + label_counts(t, p)
    >>> total.overall_precision_score()
    0.6666666666666666
    """

    tp: _Int64Array
    fp: _Int64Array
    fn: _Int64Array
    n_correct: _Int64Array
    n_predicted: _Int64Array
    n_true: _Int64Array

    def __post_init__(self) -> None:
        for name in ("tp", "fp", "fn", "n_correct", "n_predicted", "n_true"):
            arr = np.array(getattr(self, name), dtype=np.int64, copy=True)
            if arr.ndim != 1 or (arr.size and arr.min() < 0):
                raise InvalidInputError(
                    name,
                    "a 1-D array of non-negative counts",
                    f"shape {arr.shape}, minimum {arr.min() if arr.size else None}",
                    "Build counts with label_counts().",
                )
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        if not self.tp.shape == self.fp.shape == self.fn.shape:
            raise InvalidInputError(
                "fp, fn",
                f"per-label arrays of the same shape as tp, {self.tp.shape}",
                f"{self.fp.shape} and {self.fn.shape}",
                "Build counts with label_counts().",
            )
        if not self.n_correct.shape == self.n_predicted.shape == self.n_true.shape:
            raise InvalidInputError(
                "n_predicted, n_true",
                f"per-image arrays of the same shape as n_correct, {self.n_correct.shape}",
                f"{self.n_predicted.shape} and {self.n_true.shape}",
                "Build counts with label_counts().",
            )

    @classmethod
    def empty(cls, n_labels: int) -> LabelCounts:
        """Counts of zero images, the neutral start of an accumulation."""
        zeros = np.zeros(n_labels, dtype=np.int64)
        none = np.zeros(0, dtype=np.int64)
        return cls(zeros, zeros, zeros, none, none, none)

    @property
    def n_labels(self) -> int:
        return int(self.tp.shape[0])

    @property
    def n_images(self) -> int:
        return int(self.n_true.shape[0])

    def __add__(self, other: object) -> LabelCounts:
        if not isinstance(other, LabelCounts):
            return NotImplemented
        if other.n_labels != self.n_labels:
            raise InvalidInputError(
                "other",
                f"LabelCounts over {self.n_labels} labels",
                f"LabelCounts over {other.n_labels} labels",
                "Only counts computed on the same label vocabulary can be added.",
            )
        return LabelCounts(
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
            np.concatenate([self.n_correct, other.n_correct]),
            np.concatenate([self.n_predicted, other.n_predicted]),
            np.concatenate([self.n_true, other.n_true]),
        )

    def __radd__(self, other: object) -> LabelCounts:
        # Lets ``sum(batches)`` start from the integer 0.
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    # -- per-class ---------------------------------------------------------------------------

    def _label_set(self, absent_labels: AbsentLabels) -> np.ndarray | None:
        _check_absent(absent_labels)
        return (self.tp + self.fn) > 0 if absent_labels == "exclude" else None

    def class_precision_score(self, absent_labels: AbsentLabels = "exclude") -> float:
        """C-P from counts; see :func:`class_precision_score`."""
        return _mean(_safe_div(self.tp, self.tp + self.fp), self._label_set(absent_labels))

    def class_recall_score(self, absent_labels: AbsentLabels = "exclude") -> float:
        """C-R from counts; see :func:`class_recall_score`."""
        return _mean(_safe_div(self.tp, self.tp + self.fn), self._label_set(absent_labels))

    def class_f1_score(self, absent_labels: AbsentLabels = "exclude") -> float:
        """C-F1 from counts; see :func:`class_f1_score`."""
        return _harmonic(
            self.class_precision_score(absent_labels), self.class_recall_score(absent_labels)
        )

    def mean_class_f1_score(self, absent_labels: AbsentLabels = "exclude") -> float:
        """Mean per-label F1 from counts; see :func:`mean_class_f1_score`."""
        f1 = _safe_div(2 * self.tp, 2 * self.tp + self.fp + self.fn)
        return _mean(f1, self._label_set(absent_labels))

    def n_plus(self) -> int:
        """N+ from counts; see :func:`n_plus`."""
        return int(np.count_nonzero(self.tp))

    # -- overall (micro) ---------------------------------------------------------------------

    def overall_precision_score(self) -> float:
        """O-P from counts; see :func:`overall_precision_score`."""
        return _ratio(self.tp.sum(), self.tp.sum() + self.fp.sum())

    def overall_recall_score(self) -> float:
        """O-R from counts; see :func:`overall_recall_score`."""
        return _ratio(self.tp.sum(), self.tp.sum() + self.fn.sum())

    def overall_f1_score(self) -> float:
        """O-F1 from counts; see :func:`overall_f1_score`."""
        return _harmonic(self.overall_precision_score(), self.overall_recall_score())

    # -- per-image ---------------------------------------------------------------------------

    def image_precision_score(self) -> float:
        """I-P from counts; see :func:`image_precision_score`."""
        return _mean(_safe_div(self.n_correct, self.n_predicted), self.n_true > 0)

    def image_recall_score(self) -> float:
        """I-R from counts; see :func:`image_recall_score`."""
        return _mean(_safe_div(self.n_correct, self.n_true), self.n_true > 0)

    def image_f1_score(self) -> float:
        """I-F1 from counts; see :func:`image_f1_score`."""
        return _harmonic(self.image_precision_score(), self.image_recall_score())

    # -- combined ----------------------------------------------------------------------------

    def harmonic_f1_score(self, absent_labels: AbsentLabels = "exclude") -> float:
        """H-F1 from counts; see :func:`harmonic_f1_score`."""
        return _harmonic(self.class_f1_score(absent_labels), self.overall_f1_score())

    def hamming_loss(self) -> float:
        """Hamming loss from counts; see :func:`hamming_loss`."""
        return _ratio(self.fp.sum() + self.fn.sum(), self.n_images * self.n_labels)

    # -- average precision of the predictions used as scores ------------------------------------

    def _binary_label_ap(self) -> _FloatArray:
        # Scores in {0, 1}: thresholds 1 (the predicted set) and 0 (everything).
        # AP = recall@1 * precision@1 + (1 - recall@1) * prevalence = tp^2/(P(tp+fp)) + fn/n.
        support = self.tp + self.fn
        first = _safe_div(self.tp.astype(np.float64) ** 2, support * (self.tp + self.fp))
        return first + _safe_div(self.fn, self.n_images)

    def _binary_image_ap(self) -> _FloatArray:
        first = _safe_div(self.n_correct.astype(np.float64) ** 2, self.n_true * self.n_predicted)
        return first + _safe_div(self.n_true - self.n_correct, self.n_labels)

    def report(self, absent_labels: AbsentLabels = "exclude") -> dict[str, float | int]:
        """All :data:`REPORT_KEYS`, as :func:`annotation_report` without ``y_score``.

        The two mAP entries rank by the binary predictions (all that counts can know); compute
        them from real scores with :func:`annotation_report` or the average-precision functions.
        """
        present = self._label_set(absent_labels)
        n_averaged = self.n_labels if present is None else None
        c_f1 = self.class_f1_score(absent_labels)
        o_f1 = self.overall_f1_score()
        return {
            "C-P": self.class_precision_score(absent_labels),
            "C-R": self.class_recall_score(absent_labels),
            "C-F1": c_f1,
            "O-P": self.overall_precision_score(),
            "O-R": self.overall_recall_score(),
            "O-F1": o_f1,
            "I-P": self.image_precision_score(),
            "I-R": self.image_recall_score(),
            "I-F1": self.image_f1_score(),
            "H-F1": _harmonic(c_f1, o_f1),
            "N+": self.n_plus(),
            "mAP_label": _mean(self._binary_label_ap(), present, n_averaged),
            "mAP_image": _mean(self._binary_image_ap(), self.n_true > 0),
            "hamming_loss": self.hamming_loss(),
        }


def _counts(t: _Binary, p: _Binary) -> LabelCounts:
    n, n_labels = t.shape
    true_rows, true_cols = _row_col_sums(t)
    pred_rows, pred_cols = _row_col_sums(p)
    if not sp.issparse(t) and not sp.issparse(p):
        n_correct = np.empty(n, dtype=np.int64)
        tp = np.zeros(n_labels, dtype=np.int64)
        for r0, r1 in _row_chunks(n, n_labels):
            both = (t[r0:r1] & p[r0:r1]).view(np.uint8)
            n_correct[r0:r1] = both.sum(axis=1, dtype=np.int64)
            tp += both.sum(axis=0, dtype=np.int64)
    else:
        if sp.issparse(t) and sp.issparse(p):
            both = sp.csr_array(t.multiply(p))
            both.eliminate_zeros()
            rows, cols = _coords(both)
        else:
            sparse, dense = (t, p) if sp.issparse(t) else (p, t)
            rows, cols = _coords(sparse)
            hit = dense[rows, cols]
            rows, cols = rows[hit], cols[hit]
        n_correct = np.bincount(rows, minlength=n).astype(np.int64)
        tp = np.bincount(cols, minlength=n_labels).astype(np.int64)
    return LabelCounts(
        tp=tp,
        fp=pred_cols - tp,
        fn=true_cols - tp,
        n_correct=n_correct,
        n_predicted=pred_rows,
        n_true=true_rows,
    )


def _validated_pair(y_true: LabelMatrix, y_pred: LabelMatrix) -> tuple[_Binary, _Binary]:
    t = _as_binary(y_true, "y_true")
    p = _as_binary(y_pred, "y_pred")
    _check_same_shape(t.shape, p.shape, "y_pred")
    return t, p


def label_counts(y_true: LabelMatrix, y_pred: LabelMatrix) -> LabelCounts:
    """Count tp/fp/fn per label and correct/predicted/true labels per image.

    Parameters
    ----------
    y_true, y_pred : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth and predicted label sets.

    Returns
    -------
    LabelCounts
        Additive over batches of images: ``label_counts(a) + label_counts(b)``.

    Examples
    --------
    >>> c = label_counts([[1, 0, 1], [0, 1, 0]], [[1, 1, 0], [0, 1, 0]])
    >>> c.tp.tolist(), c.fp.tolist(), c.fn.tolist(), c.n_correct.tolist()
    ([1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 1])
    """
    return _counts(*_validated_pair(y_true, y_pred))
