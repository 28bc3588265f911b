"""Evaluation metrics for multi-label image annotation.

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

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from phototag.errors import InvalidInputError

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

LabelMatrix: TypeAlias = "npt.ArrayLike | sp.spmatrix | sp.sparray"
"""A binary ``[n_images, n_labels]`` matrix: numpy array (bool/int/float 0-1) or scipy.sparse."""

AbsentLabels: TypeAlias = Literal["exclude", "include"]
"""How per-class averages treat labels with no positive in ``y_true``."""

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

_TOP_K_KEYS: tuple[str, ...] = REPORT_KEYS[:10]

# Work is done in blocks of about this many matrix cells (16 MiB of float32 scores), which
# keeps temporaries small and cache-friendly whatever the input size.
_CHUNK_CELLS = 1 << 22

_Binary: TypeAlias = "np.ndarray | sp.csr_array"
_Int64Array: TypeAlias = "npt.NDArray[np.int64]"
_FloatArray: TypeAlias = "npt.NDArray[np.float64]"


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def _describe(x: object) -> str:
    shape = getattr(x, "shape", None)
    kind = "scipy.sparse matrix" if sp.issparse(x) else type(x).__name__
    return f"{kind} of shape {shape}" if shape is not None else kind


def _as_binary(y: LabelMatrix, argument: str) -> _Binary:
    """Validate a binary label matrix; return a dense bool array or a canonical CSR array."""
    if sp.issparse(y):
        if len(y.shape) != 2:
            raise InvalidInputError(
                argument,
                "a 2-D binary matrix of shape (n_images, n_labels)",
                f"a {len(y.shape)}-D {_describe(y)}",
                "Pass one row per image and one column per label.",
            )
        csr = sp.csr_array(y, copy=True)
        csr.sum_duplicates()
        csr.eliminate_zeros()
        if csr.data.size and not np.all(csr.data == 1):
            bad = csr.data[csr.data != 1][0]
            raise InvalidInputError(
                argument,
                "a binary matrix (stored values 0 or 1)",
                f"a sparse matrix storing the value {bad!r}",
                "Threshold scores into label sets first (e.g. y >= 0.5 or a top-k decoder); "
                "duplicate COO entries are summed, so store each cell once.",
            )
        return csr
    arr = np.asarray(y)
    if arr.ndim != 2:
        fix = "Pass one row per image and one column per label"
        if arr.ndim == 1:
            fix += "; for a single image use y.reshape(1, -1)"
        raise InvalidInputError(
            argument,
            "a 2-D binary matrix of shape (n_images, n_labels)",
            f"a {arr.ndim}-D array of shape {arr.shape}",
            fix + ".",
        )
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iuf":
        raise InvalidInputError(
            argument,
            "a binary matrix of dtype bool, int or float",
            f"dtype {arr.dtype}",
            "Convert the labels with np.asarray(y, dtype=bool).",
        )
    for r0, r1 in _row_chunks(arr.shape[0], arr.shape[1]):
        block = arr[r0:r1]
        ok = (block == 0) | (block == 1)
        if not ok.all():
            i, j = np.argwhere(~ok)[0]
            raise InvalidInputError(
                argument,
                "a binary matrix (values 0 or 1)",
                f"the value {block[i, j]!r} at row {r0 + i}, column {j}",
                "Threshold scores into label sets first (e.g. y >= 0.5 or a top-k decoder), "
                "or pass real-valued scores as y_score to an average-precision metric.",
            )
    return arr.astype(bool)


def _as_scores(y_score: npt.ArrayLike, argument: str = "y_score") -> np.ndarray:
    """Validate a real-valued score matrix; NaN/inf are rejected."""
    if sp.issparse(y_score):
        raise InvalidInputError(
            argument,
            "a dense 2-D array of real-valued scores",
            _describe(y_score),
            "Convert it with y_score.toarray().",
        )
    arr = np.asarray(y_score)
    if arr.ndim != 2:
        raise InvalidInputError(
            argument,
            "a 2-D score array of shape (n_images, n_labels)",
            f"a {arr.ndim}-D array of shape {arr.shape}",
            "Pass one row per image and one column per label.",
        )
    kind = arr.dtype.kind
    if kind == "b":
        return arr.view(np.uint8)
    if kind in "iu":
        return arr
    if kind != "f":
        raise InvalidInputError(
            argument,
            "real-valued scores (float or int dtype)",
            f"dtype {arr.dtype}",
            "Convert the scores with np.asarray(y_score, dtype=np.float32).",
        )
    if arr.dtype.itemsize < 4:
        arr = arr.astype(np.float32)
    elif arr.dtype.itemsize > 8:
        arr = arr.astype(np.float64)
    for r0, r1 in _row_chunks(arr.shape[0], arr.shape[1]):
        finite = np.isfinite(arr[r0:r1])
        if not finite.all():
            i, j = np.argwhere(~finite)[0]
            raise InvalidInputError(
                argument,
                "finite scores",
                f"{arr[r0 + i, j]} at row {r0 + i}, column {j}",
                "Replace NaN/inf before evaluating, e.g. np.nan_to_num(y_score, nan=0.0, "
                "posinf=1.0, neginf=0.0), or fix the model that produced them.",
            )
    return arr


def _check_same_shape(shape: tuple[int, ...], other: tuple[int, ...], argument: str) -> None:
    if tuple(shape) != tuple(other):
        raise InvalidInputError(
            argument,
            f"the same shape as y_true, {tuple(shape)}",
            f"shape {tuple(other)}",
            "Both matrices must have one row per image and one column per label, in the "
            "same order.",
        )


def _check_absent(absent_labels: str) -> None:
    if absent_labels not in ("exclude", "include"):
        raise InvalidInputError(
            "absent_labels", '"exclude" or "include"', repr(absent_labels), "Use one of the two."
        )


def _row_chunks(n_rows: int, n_cols: int) -> Iterator[tuple[int, int]]:
    step = max(1, _CHUNK_CELLS // max(n_cols, 1))
    for r0 in range(0, n_rows, step):
        yield r0, min(n_rows, r0 + step)


def _dense_rows(y: _Binary, r0: int, r1: int) -> np.ndarray:
    return y[r0:r1].toarray() if sp.issparse(y) else y[r0:r1]


def _row_col_sums(y: _Binary) -> tuple[_Int64Array, _Int64Array]:
    """Per-row and per-column counts of ones."""
    n, n_labels = y.shape
    if sp.issparse(y):
        rows = np.diff(y.indptr).astype(np.int64)
        cols = np.bincount(y.indices, minlength=n_labels).astype(np.int64)
        return rows, cols
    rows = np.empty(n, dtype=np.int64)
    cols = np.zeros(n_labels, dtype=np.int64)
    for r0, r1 in _row_chunks(n, n_labels):
        block = y[r0:r1].view(np.uint8)
        rows[r0:r1] = block.sum(axis=1, dtype=np.int64)
        cols += block.sum(axis=0, dtype=np.int64)
    return rows, cols


def _coords(y: sp.csr_array) -> tuple[np.ndarray, np.ndarray]:
    rows = np.repeat(np.arange(y.shape[0], dtype=np.int64), np.diff(y.indptr))
    return rows, y.indices.astype(np.int64)


def _safe_div(num: np.ndarray, den: np.ndarray) -> _FloatArray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape), dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def _harmonic(a: float, b: float) -> float:
    return 2.0 * a * b / (a + b) if a + b > 0 else 0.0


def _mean(values: np.ndarray, mask: np.ndarray | None = None, size: int | None = None) -> float:
    """Mean of ``values[mask]``; divides by ``size`` when given; 0.0 when nothing is averaged."""
    if mask is not None:
        values = values[mask]
    den = values.size if size is None else size
    return float(values.sum() / den) if den else 0.0


# --------------------------------------------------------------------------------------------
# Counts
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Set-based metrics
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Average precision
# --------------------------------------------------------------------------------------------


def _rowwise_searchsorted_left(
    sorted_rows: np.ndarray, rows: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """For each query, the number of entries of ``sorted_rows[rows[q]]`` below ``values[q]``.

    A vectorised binary search over many short sorted rows (``np.searchsorted`` is 1-D only).
    """
    n_cols = sorted_rows.shape[1]
    flat = sorted_rows.reshape(-1)
    base = rows * n_cols
    lo = np.zeros(rows.shape[0], dtype=np.int64)
    hi = np.full(rows.shape[0], n_cols, dtype=np.int64)
    for _ in range(int(n_cols).bit_length()):
        mid = (lo + hi) >> 1
        right = (lo < hi) & (flat[base + np.minimum(mid, n_cols - 1)] < values)
        lo = np.where(right, mid + 1, lo)
        hi = np.where(right, hi, mid)
    return lo


def _chunk_positives(t: _Binary, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
    """(row - r0, column) of every positive of rows ``r0:r1``, in row-major order."""
    if sp.issparse(t):
        rows = np.repeat(np.arange(r1 - r0, dtype=np.int64), np.diff(t.indptr[r0 : r1 + 1]))
        return rows, t.indices[t.indptr[r0] : t.indptr[r1]].astype(np.int64)
    return np.divmod(np.flatnonzero(t[r0:r1]), t.shape[1])


def _columns(scores: np.ndarray, j0: int, j1: int) -> np.ndarray:
    """Contiguous copy of ``scores[:, j0:j1].T``, transposed tile by tile (cache-friendly)."""
    n = scores.shape[0]
    out = np.empty((j1 - j0, n), dtype=scores.dtype)
    tile = max(1, 65536 // (j1 - j0))
    for r0 in range(0, n, tile):
        out[:, r0 : r0 + tile] = scores[r0 : r0 + tile, j0:j1].T
    return out


def _per_label_ap(t: _Binary, scores: np.ndarray) -> _FloatArray:
    """AP of every column's ranking (NaN for labels without positives)."""
    n, n_labels = scores.shape
    ap = np.full(n_labels, np.nan)
    if n == 0 or n_labels == 0:
        return ap
    # Scores of the positives, grouped by label: one row-major pass, then a radix sort.
    values, labels = [], []
    for r0, r1 in _row_chunks(n, n_labels):
        rows, cols = _chunk_positives(t, r0, r1)
        values.append(scores[r0:r1][rows, cols])
        labels.append(cols.astype(np.int16 if n_labels <= np.iinfo(np.int16).max else np.int32))
    label = np.concatenate(labels)
    pos_scores = np.concatenate(values)[np.argsort(label, kind="stable")]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(label, minlength=n_labels))])
    width = max(1, min(n_labels, 4 * _CHUNK_CELLS // n))
    for j0 in range(0, n_labels, width):
        j1 = min(n_labels, j0 + width)
        if bounds[j1] == bounds[j0]:
            continue
        block = _columns(scores, j0, j1)
        block.sort(axis=1)
        for j in range(j0, j1):
            v = np.sort(pos_scores[bounds[j] : bounds[j + 1]])
            n_pos = v.size
            if n_pos == 0:
                continue
            # Each positive counts as precision at its score's threshold: (positives with
            # score >= v) / (items with score >= v). Ties share one threshold, as in sklearn.
            below = np.searchsorted(block[j - j0], v, side="left")
            pos_below = np.searchsorted(v, v, side="left")
            ap[j] = np.sum((n_pos - pos_below) / (n - below)) / n_pos
    return ap


def _per_image_ap(t: _Binary, scores: np.ndarray) -> _FloatArray:
    """AP of every row's ranking (NaN for images without true labels)."""
    n, n_labels = scores.shape
    ap = np.full(n, np.nan)
    for r0, r1 in _row_chunks(n, n_labels):
        rows, cols = _chunk_positives(t, r0, r1)
        if rows.size == 0:
            continue
        block = scores[r0:r1]
        v = block[rows, cols]
        below = _rowwise_searchsorted_left(np.sort(block, axis=1), rows, v)
        # Positives of the same row with a strictly lower score have a smaller `below`.
        key = rows * n_labels + below
        ordered_keys = np.sort(key)
        pos_below = np.searchsorted(ordered_keys, key, side="left") - np.searchsorted(
            ordered_keys, rows * n_labels, side="left"
        )
        n_pos = np.bincount(rows, minlength=r1 - r0)
        precision = (n_pos[rows] - pos_below) / (n_labels - below)
        sums = np.bincount(rows, weights=precision, minlength=r1 - r0)
        has = n_pos > 0
        chunk = ap[r0:r1]
        chunk[has] = sums[has] / n_pos[has]
    return ap


def _validated_scores(y_true: LabelMatrix, y_score: npt.ArrayLike) -> tuple[_Binary, np.ndarray]:
    t = _as_binary(y_true, "y_true")
    s = _as_scores(y_score)
    _check_same_shape(t.shape, s.shape, "y_score")
    return t, s


def label_average_precision_score(
    y_true: LabelMatrix, y_score: npt.ArrayLike, *, absent_labels: AbsentLabels = "exclude"
) -> float:
    """mAP per label: the mean over labels of the average precision of each column's ranking.

    Called mAP_lab in the metadata paper (and MAP in the JVSP paper). Each label's AP is
    scikit-learn's ``average_precision_score(y_true[:, j], y_score[:, j])``: non-interpolated,
    ``sum_t (R_t - R_{t-1}) P_t`` over distinct score thresholds, so tied scores form one step.

    Parameters
    ----------
    y_true : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth.
    y_score : array-like of shape (n_images, n_labels)
        Finite real scores, higher = more relevant. float32 is the fastest dtype.
    absent_labels : {"exclude", "include"}, default="exclude"
        "exclude" averages over labels with a positive in ``y_true`` (AP is undefined for the
        others); "include" averages over all ``n_labels``, absent labels scoring 0.

    Returns
    -------
    float
        In [0, 1]; 0.0 if no label is averaged.
    """
    _check_absent(absent_labels)
    t, s = _validated_scores(y_true, y_score)
    ap = _per_label_ap(t, s)
    present = ~np.isnan(ap)
    return _mean(ap, present, ap.size if absent_labels == "include" else None)


def image_average_precision_score(y_true: LabelMatrix, y_score: npt.ArrayLike) -> float:
    """mAP per image: the mean over images of the average precision of each row's ranking.

    Called mAP_img in the metadata paper. Each image's AP is scikit-learn's
    ``average_precision_score(y_true[i], y_score[i])`` (tied scores form one threshold step);
    the mean equals ``label_ranking_average_precision_score`` over images with a true label.

    Parameters
    ----------
    y_true : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth.
    y_score : array-like of shape (n_images, n_labels)
        Finite real scores, higher = more relevant. float32 is the fastest dtype.

    Returns
    -------
    float
        In [0, 1]. Images without true labels are left out; 0.0 if no image is averaged.
    """
    t, s = _validated_scores(y_true, y_score)
    ap = _per_image_ap(t, s)
    return _mean(ap, ~np.isnan(ap))


# --------------------------------------------------------------------------------------------
# Label quantity
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Fixed-k upper bound
# --------------------------------------------------------------------------------------------


def _top_k_oracle(t: _Binary, k: int) -> np.ndarray:
    """The k-label prediction used by :func:`top_k_upper_bound` (dense bool)."""
    n, n_labels = t.shape
    n_true, support = _row_col_sums(t)
    pred = np.zeros((n, n_labels), dtype=bool)
    # 1) Keep each image's min(n_i, k) rarest true labels (ties: lower label index).
    keep_order = np.argsort(support, kind="stable")
    for r0, r1 in _row_chunks(n, n_labels):
        true_sorted = _dense_rows(t, r0, r1)[:, keep_order]
        kept = true_sorted & (np.cumsum(true_sorted, axis=1, dtype=np.int32) <= k)
        pred[r0:r1, keep_order] = kept
    tp = _row_col_sums(pred)[1]
    # 2) Fill up to k with wrong labels, taken in a fixed order: first labels whose precision
    #    a false positive cannot lower (absent, or no correct prediction), then labels by
    #    decreasing number of correct predictions (an extra false positive costs them least).
    harmless = (support == 0) | (tp == 0)
    fill_order = np.lexsort((np.arange(n_labels), -tp, ~harmless))
    for r0, r1 in _row_chunks(n, n_labels):
        needed = np.maximum(k - n_true[r0:r1], 0)
        if not needed.any():
            continue
        free = ~_dense_rows(t, r0, r1)[:, fill_order]
        fill = free & (np.cumsum(free, axis=1, dtype=np.int32) <= needed[:, None])
        pred[r0:r1, fill_order] |= fill
    return pred


def top_k_upper_bound(
    y_true: LabelMatrix, k: int, *, absent_labels: AbsentLabels = "exclude"
) -> dict[str, float]:
    """Best set-based scores achievable when every image must receive exactly ``k`` labels.

    With a fixed annotation length (k = 3 on NUS-WIDE, k = 5 on Corel-5k) even a perfect
    ranker is capped: images with fewer than ``k`` true labels must take wrong ones, images with
    more lose some. This is the "real upper bound" row of the metadata paper (Table 1).

    The scores are those of an oracle prediction that gives each image its ``min(n_i, k)``
    rarest true labels (ties: lower label index) and fills the remaining slots with wrong
    labels taken in a fixed order: first labels whose precision a false positive cannot lower
    (absent from ``y_true``, or without any correct oracle prediction), then labels by
    decreasing number of correct oracle predictions (ties: lower index).

    * O-P = ``sum_i min(n_i, k) / (N k)``, O-R = ``sum_i min(n_i, k) / sum_i n_i``,
      I-P = ``mean_i min(n_i, k) / k``, I-R = ``mean_i min(n_i, k) / n_i`` (images with
      ``n_i > 0``) and their F1s are exact maxima, reached by any prediction that keeps
      ``min(n_i, k)`` true labels per image.
    * C-R is the exact maximum: it is a sum of ``1 / support_j`` over kept (image, label)
      pairs, maximised image by image by keeping the rarest labels.
    * C-P (and so C-F1, H-F1) is the oracle's value: achievable, but not guaranteed maximal
      (maximising mean per-label precision under the k-label constraint is combinatorial).

    Parameters
    ----------
    y_true : array-like or scipy.sparse matrix of shape (n_images, n_labels)
        Binary ground truth.
    k : int
        Labels per image, ``1 <= k <= n_labels``.
    absent_labels : {"exclude", "include"}, default="exclude"
        Label set of the per-class averages (see :func:`class_precision_score`).

    Returns
    -------
    dict
        Keys "C-P", "C-R", "C-F1", "O-P", "O-R", "O-F1", "I-P", "I-R", "I-F1", "H-F1".

    Examples
    --------
    >>> top_k_upper_bound([[1, 0, 0], [1, 1, 1]], k=2)["O-P"]
    0.75
    """
    _check_absent(absent_labels)
    t = _as_binary(y_true, "y_true")
    n_labels = t.shape[1]
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= n_labels:
        raise InvalidInputError(
            "k",
            f"an integer number of labels per image between 1 and n_labels={n_labels}",
            repr(k),
            "Use the annotation length of the protocol, e.g. k=3 for NUS-WIDE.",
        )
    report = _counts(t, _top_k_oracle(t, int(k))).report(absent_labels)
    return {key: float(report[key]) for key in _TOP_K_KEYS}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


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
