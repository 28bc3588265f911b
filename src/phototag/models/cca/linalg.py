"""Numerical core of the CCA family: regularised CCA, kernels, Nystroem maps, distances.

Pure functions on numpy arrays (float64 inside), shared by `phototag.models.cca` and
usable on their own. Equations refer to Murthy, Maji & Manmatha (ICMR 2015) and are
written out in ``docs/models/cca.md``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from phototag.errors import InvalidInputError

# Row blocks are sized to about this many matrix cells (32 MiB of float64).
BLOCK_CELLS = 1 << 22

KERNELS = ("chi2", "rbf", "linear")


# ----------------------------------------------------------------------------- linear CCA
@dataclass(frozen=True)
class CCASolution:
    """Projections of a regularised CCA between centred views ``X`` (p) and ``T`` (q).

    ``weights_x`` (p x d) and ``weights_t`` (q x d) satisfy
    ``weights_x.T @ (Cxx + lx I) @ weights_x = I`` (same for ``t``), and
    ``weights_x.T @ Cxt @ weights_t = diag(correlations)``: the correlations are the
    singular values of ``(Cxx + lx I)^-1/2 Cxt (Ctt + lt I)^-1/2``, in decreasing order.
    With no regularisation they are the canonical correlations of the data.
    """

    weights_x: np.ndarray
    weights_t: np.ndarray
    correlations: np.ndarray
    ridge_x: float
    ridge_t: float


def ridge(cov: np.ndarray, reg: float) -> float:
    """Absolute ridge ``reg * trace(cov)``: `reg` is relative to the view's total variance.

    The total variance does not change with a rotation of the view or with extra
    zero-variance dimensions, so the same `reg` means the same thing for raw features
    and for their kernel (Nystroem) map whatever the number of landmarks.
    """
    return float(reg) * float(np.trace(cov))


def _whitener(cov: np.ndarray, lam: float, view: str) -> np.ndarray:
    """Lower Cholesky factor of ``cov + lam I``, with a clear error when it is singular."""
    reg = cov + lam * np.eye(cov.shape[0])
    try:
        factor = sla.cholesky(reg, lower=True, check_finite=False)
        pivots = np.diag(factor) ** 2
        if pivots.min() <= 1e-14 * pivots.max():  # positive definite only by rounding
            raise sla.LinAlgError("numerically singular")
        return factor
    except sla.LinAlgError:
        raise InvalidInputError(
            f"reg_{view}",
            "a regularisation that makes the covariance of the view positive definite",
            f"a singular covariance (dimension {cov.shape[0]}, ridge {lam:.3g})",
            f"Increase reg_{view} above 0 (constant or collinear columns, or fewer items "
            "than dimensions, make the unregularised problem ill-posed).",
        ) from None


def regularized_cca(
    x: np.ndarray, t: np.ndarray, reg_x: float, reg_t: float, dim: int | None = None
) -> CCASolution:
    """Regularised CCA of two centred views, the generalised eigenproblem of Eq. (2).

    Solved stably as the SVD of the whitened cross-covariance
    ``Lx^-1 Cxt Lt^-T`` with ``Lx Lx^T = Cxx + lx I`` (Cholesky), which gives the same
    directions and eigenvalues ``eta = rho^2`` as Eq. (2) with a ``lambda I`` ridge.
    Covariances are divided by the number of rows; ``lx = reg_x * trace(Cxx)``.
    """
    n = x.shape[0]
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    cxx = x.T @ x / n
    ctt = t.T @ t / n
    cxt = x.T @ t / n
    lam_x, lam_t = ridge(cxx, reg_x), ridge(ctt, reg_t)
    lx = _whitener(cxx, lam_x, "x")
    lt = _whitener(ctt, lam_t, "t")
    m = sla.solve_triangular(lx, cxt, lower=True, check_finite=False)
    m = sla.solve_triangular(lt, m.T, lower=True, check_finite=False).T
    a, s, bt = sla.svd(m, full_matrices=False, check_finite=False, lapack_driver="gesvd")
    d = len(s) if dim is None else min(int(dim), len(s))
    wx = sla.solve_triangular(lx.T, a[:, :d], lower=False, check_finite=False)
    wt = sla.solve_triangular(lt.T, bt[:d].T, lower=False, check_finite=False)
    # Fix each pair's sign so that its largest-magnitude text weight is positive: the text
    # view is the same for CCA and KCCA, so both get the same signs (the correlation
    # distance, which centres across coordinates, depends on them).
    signs = np.sign(wt[np.argmax(np.abs(wt), axis=0), np.arange(d)])
    signs[signs == 0] = 1.0
    return CCASolution(wx * signs, wt * signs, np.clip(s[:d], 0.0, None), lam_x, lam_t)


# -------------------------------------------------------------------------------- kernels
def chi2_distances(a: np.ndarray, b: np.ndarray, n_threads: int = 2) -> np.ndarray:
    """``sum_i (a_i - b_i)^2 / (a_i + b_i)`` between rows (0/0 counts 0); non-negative inputs."""
    from sklearn.metrics.pairwise import additive_chi2_kernel  # slow to import: on first use

    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    step = max(1, BLOCK_CELLS // max(1, b.shape[0] * 8))
    blocks = [a[i : i + step] for i in range(0, len(a), step)]

    def one(block: np.ndarray) -> np.ndarray:
        return -additive_chi2_kernel(block, b)

    if n_threads > 1 and len(blocks) > 1:
        with ThreadPoolExecutor(n_threads) as pool:
            parts = list(pool.map(one, blocks))
    else:
        parts = [one(block) for block in blocks]
    out = np.concatenate(parts) if parts else np.zeros((0, len(b)))
    return np.maximum(out, 0.0)


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between rows."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def kernel_distances(kernel: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The distance inside the exponential kernel: chi-square or squared Euclidean."""
    return chi2_distances(a, b) if kernel == "chi2" else squared_distances(a, b)


def kernel_matrix(kernel: str, a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """``exp(-gamma d(a, b))`` for chi2 / rbf, or ``a b^T`` for linear."""
    if kernel == "linear":
        return np.asarray(a, dtype=np.float64) @ np.asarray(b, dtype=np.float64).T
    return np.exp(-gamma * kernel_distances(kernel, a, b))


def mean_offdiagonal(d: np.ndarray) -> float:
    """Mean of the off-diagonal entries of a square distance matrix (bandwidth heuristic)."""
    n = d.shape[0]
    if n < 2:
        return 1.0
    return float((d.sum() - np.trace(d)) / (n * (n - 1)))


def nystroem_map(k_mm: np.ndarray, rel_tol: float = 1e-10) -> np.ndarray:
    """``U_r diag(lambda_r)^-1/2`` of the landmark kernel, so ``K_nm @ map`` has Gram ~ K.

    Eigenvalues below ``rel_tol * lambda_max`` are dropped (pseudo-inverse square root),
    so a rank-deficient kernel (e.g. linear with more landmarks than dimensions) works.
    """
    k_mm = (k_mm + k_mm.T) / 2.0
    lam, vec = sla.eigh(k_mm, check_finite=False)
    keep = lam > rel_tol * max(float(lam[-1]), 0.0)
    if not keep.any():
        raise InvalidInputError(
            "kernel", "a non-zero kernel on the landmarks", "an all-zero kernel matrix"
        )
    lam, vec = lam[keep][::-1], vec[:, keep][:, ::-1]
    return vec / np.sqrt(lam)


# ------------------------------------------------------------------------------ distances
def prepare_rows(z: np.ndarray, distance: str) -> np.ndarray:
    """Rows made ready for ``D = 1 - a . b``: correlation = centre each row then unit norm."""
    z = np.asarray(z, dtype=np.float64)
    if distance == "correlation":
        z = z - z.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return np.divide(z, norms, out=np.zeros_like(z), where=norms > 0).astype(np.float32)


def row_blocks(n_rows: int, n_cols: int) -> list[tuple[int, int]]:
    """``(start, stop)`` row ranges of about `BLOCK_CELLS` cells each."""
    step = max(1, BLOCK_CELLS // max(1, n_cols))
    return [(r, min(n_rows, r + step)) for r in range(0, n_rows, step)]
