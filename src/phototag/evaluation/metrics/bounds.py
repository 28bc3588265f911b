"""The best scores a fixed-length (top-k) annotation can reach."""

from __future__ import annotations

import numpy as np

from phototag.errors import InvalidInputError
from phototag.evaluation.metrics._arrays import (
    AbsentLabels,
    LabelMatrix,
    _as_binary,
    _Binary,
    _check_absent,
    _dense_rows,
    _row_chunks,
    _row_col_sums,
)
from phototag.evaluation.metrics.counts import REPORT_KEYS, _counts

_TOP_K_KEYS: tuple[str, ...] = REPORT_KEYS[:10]


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
