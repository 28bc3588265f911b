"""Input checks and array helpers shared by the metric modules (not public API)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from phototag.errors import InvalidInputError

LabelMatrix: TypeAlias = "npt.ArrayLike | sp.spmatrix | sp.sparray"
"""A binary ``[n_images, n_labels]`` matrix: numpy array (bool/int/float 0-1) or scipy.sparse."""

AbsentLabels: TypeAlias = Literal["exclude", "include"]
"""How per-class averages treat labels with no positive in ``y_true``."""


# Work is done in blocks of about this many matrix cells (16 MiB of float32 scores), which
# keeps temporaries small and cache-friendly whatever the input size.
_CHUNK_CELLS = 1 << 22

_Binary: TypeAlias = "np.ndarray | sp.csr_array"
_Int64Array: TypeAlias = "npt.NDArray[np.int64]"
_FloatArray: TypeAlias = "npt.NDArray[np.float64]"


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
