"""Ranking metrics: average precision per label and per image."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from phototag.evaluation.metrics import _arrays
from phototag.evaluation.metrics._arrays import (
    AbsentLabels,
    LabelMatrix,
    _as_binary,
    _as_scores,
    _Binary,
    _check_absent,
    _check_same_shape,
    _FloatArray,
    _mean,
    _row_chunks,
)


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
    width = max(1, min(n_labels, 4 * _arrays._CHUNK_CELLS // n))
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
