"""Nearest-neighbour search: exact and IVF (FAISS), or blocked NumPy, for several distances.

`NeighborIndex` is the one entry point: ``NeighborIndex(metric, method).fit(database)``, then
``search(queries, k) -> (distances, indices)``. ``search(None, k)`` queries the database with
itself and leaves every item out of its own result (leave-one-out), which is what a
nearest-neighbour model needs on its training set.

Distances (smaller = closer), for rows ``q`` (query) and ``x`` (database item):

============== ============================================================================
``l2``          Euclidean distance ``sqrt(sum (q - x)^2)``
``sqeuclidean`` squared Euclidean distance ``sum (q - x)^2``
``cosine``      ``|q/|q| - x/|x||^2 / 2`` = ``1 - cos(q, x)``; a zero vector stays zero, so
                its distance is 0.5 to any non-zero vector and 0 to another zero vector
``l1``          ``sum |q - x|``
``chi2``        ``sum (q - x)^2 / (q + x)``, terms with ``q + x = 0`` count 0 (histograms:
                inputs must be non-negative)
``kl``          ``KL(q || x) = sum q log((q + eps) / (x + eps))``, ``eps = 1e-10``, rows used
                as given (normalise histograms yourself); non-negative inputs; asymmetric
============== ============================================================================

Methods:

* ``"exact"``: brute force over the database in row blocks, each block scored by a FAISS kernel
  (BLAS for ``l2``/``sqeuclidean``/``cosine``, SIMD for ``l1``) or, for ``chi2``/``kl`` (which
  FAISS lacks), by the NumPy kernel. Memory is bounded by the block size, whatever the database
  size; the database is never copied, so a float16 (memory-mapped) database stays on disk
  until each block is converted to float32.
* ``"ivf"``: FAISS inverted file. ``l2``/``sqeuclidean``/``cosine`` use
  ``IndexIVFScalarQuantizer(QT_fp16)`` when the database is float16 (the index then holds
  exactly the float16 values, half the memory of float32) and ``IndexIVFFlat`` otherwise;
  ``l1`` uses ``IndexIVFFlat`` with ``METRIC_L1``. ``chi2``/``kl`` have no FAISS index: an
  L2 IVF over ``sqrt(x)`` (the Hellinger embedding: ``chi2/2 <= |sqrt(q) - sqrt(x)|^2 <=
  chi2`` term by term) proposes ``rerank * k`` candidates, re-ranked with the exact
  distance.
* ``"numpy"``: the blocked brute force with NumPy kernels for every metric (the reference,
  and the baseline of ``bench/bench_neighbors.py``).

Exactness and ties: the matrix-product kernels (``l2``, ``sqeuclidean``, ``cosine``, ``kl``)
round differently for equal rows at different database positions, so they propose
``k + 16`` candidates and every candidate whose value lies within rounding error of another
one's gets its distance recomputed pair by pair (equal rows then get bit-identical
distances); the first ``k`` in (distance, index) order are returned. So among equal
distances the lower database index comes first (for those kernels: as long as the items
tied at the k-th place fit in the 16 extra candidates; ``l1``/``chi2`` always). IVF results
are sorted the same way, but which tied items an IVF probe finds is FAISS's choice. If ``k``
exceeds the number of candidates (database size, minus one when leaving self out), ``k`` is
reduced to it; an IVF query whose probed lists hold fewer than ``k`` items is padded with
index -1 and distance ``inf``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import faiss
import numpy as np

from phototag.errors import InvalidInputError, NotFittedError, check_int

__all__ = [
    "KL_EPS",
    "METHODS",
    "METRICS",
    "NeighborIndex",
    "blocked_search",
    "check_metric",
    "normalize_rows",
    "paired_distances",
    "pairwise_distances",
    "smallest",
]

Metric = Literal["l2", "sqeuclidean", "cosine", "l1", "chi2", "kl"]
METRICS: tuple[str, ...] = ("l2", "sqeuclidean", "cosine", "l1", "chi2", "kl")
METHODS: tuple[str, ...] = ("exact", "ivf", "numpy")
KL_EPS = 1e-10
NONNEGATIVE = ("chi2", "kl")
GEMM_METRICS = ("l2", "sqeuclidean", "cosine", "kl")
RESCORE_EXTRA = 16

# cells of a temporary [queries, database rows(, dims)] array: 2^24 float32 = 64 MiB
_BLOCK_CELLS = 1 << 24


# ------------------------------------------------------------------------------ validation
def check_metric(metric: str, argument: str = "metric") -> str:
    """`metric` if it is one of `METRICS`, else `InvalidInputError` naming `argument`."""
    if metric not in METRICS:
        raise InvalidInputError(argument, f"one of {', '.join(METRICS)}", repr(metric))
    return metric


def _check_matrix(x: np.ndarray, argument: str, dim: int | None = None) -> np.ndarray:
    if not hasattr(x, "ndim") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    if x.ndim != 2:
        raise InvalidInputError(argument, "a 2-D array [n, dim]", f"a {x.ndim}-D array")
    if x.dtype.kind != "f" and x.dtype.kind not in "iub":
        raise InvalidInputError(argument, "a numeric array", f"dtype {x.dtype}")
    if dim is not None and x.shape[1] != dim:
        raise InvalidInputError(
            argument,
            f"{dim} columns (the database dimension)",
            f"{x.shape[1]}",
            "Use features from the same encoder as the database.",
        )
    return x


def _as_float32_block(x: np.ndarray, argument: str, metric: str, offset: int = 0) -> np.ndarray:
    """A float32 copy (or view) of `x` rows, checked finite (and non-negative if needed)."""
    block = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(block).all():
        row = int(np.argwhere(~np.isfinite(block))[0, 0]) + offset
        raise InvalidInputError(argument, "finite values", f"NaN or inf in row {row}")
    if metric in NONNEGATIVE and block.size and block.min() < 0:
        row = int(np.argwhere(block < 0)[0, 0]) + offset
        raise InvalidInputError(
            argument,
            f"non-negative values (histograms) for the {metric} distance",
            f"a negative value in row {row}",
            "Use l2, cosine or l1 for signed features.",
        )
    return block


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean length; zero rows stay zero."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32))
    norms[norms == 0] = 1.0
    return x / norms[:, None]


# --------------------------------------------------------------------------- kernels
def _sqeuclidean(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    qq = np.einsum("ij,ij->i", q, q)[:, None]
    xx = np.einsum("ij,ij->i", x, x)[None, :]
    d = q @ x.T
    d *= -2.0
    d += qq
    d += xx
    np.maximum(d, 0.0, out=d)
    return d


def _elementwise(
    q: np.ndarray, x: np.ndarray, term: Callable[[np.ndarray, np.ndarray], np.ndarray]
):
    """``sum_d term(q_d, x_d)`` for all pairs, in chunks of at most `_BLOCK_CELLS` cells."""
    out = np.empty((len(q), len(x)), dtype=np.float32)
    dim = max(q.shape[1], 1)
    cols = max(1, min(len(x), 256))
    rows = max(1, _BLOCK_CELLS // 4 // (cols * dim))
    for a in range(0, len(q), rows):
        for b in range(0, len(x), cols):
            out[a : a + rows, b : b + cols] = term(
                q[a : a + rows, None, :], x[None, b : b + cols, :]
            )
    return out


def _chi2_term(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    s = q + x
    d = q - x
    d *= d
    np.divide(d, s, out=d, where=s > 0)
    d[s <= 0] = 0.0
    return d.sum(axis=-1)


def _l1_term(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.abs(q - x).sum(axis=-1)


def _kl(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    h = np.einsum("ij,ij->i", q, np.log(q + np.float32(KL_EPS)))
    d = q @ np.log(x + np.float32(KL_EPS)).T
    np.subtract(h[:, None], d, out=d)
    return d


def pairwise_distances(
    queries: np.ndarray, database: np.ndarray, metric: str, *, check: bool = True
) -> np.ndarray:
    """float32 ``[n_queries, n_database]`` distances with the NumPy kernels (see module doc).

    Meant for blocks that fit in memory; `NeighborIndex` calls it block by block. With
    ``check=False`` the rows must already be float32, finite, of the same width, and
    non-negative for ``chi2``/``kl`` (a model's own validated features): nothing is copied
    or checked.
    """
    check_metric(metric)
    if not check:
        return _pairwise(queries, database, metric)
    q = _as_float32_block(_check_matrix(queries, "queries"), "queries", metric)
    x = _as_float32_block(_check_matrix(database, "database", q.shape[1]), "database", metric)
    return _pairwise(q, x, metric)


def _pairwise(q: np.ndarray, x: np.ndarray, metric: str) -> np.ndarray:
    if metric == "sqeuclidean":
        return _sqeuclidean(q, x)
    if metric == "l2":
        return np.sqrt(_sqeuclidean(q, x))
    if metric == "cosine":
        d = _sqeuclidean(normalize_rows(q), normalize_rows(x))
        d *= 0.5
        return d
    if metric == "l1":
        return _elementwise(q, x, _l1_term)
    if metric == "chi2":
        return _elementwise(q, x, _chi2_term)
    return _kl(q, x)


def paired_distances(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """float32 distances between the rows ``a[i]`` and ``b[i]`` (same shapes)."""
    check_metric(metric)
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.shape != b.shape:
        raise InvalidInputError("b", f"shape {a.shape} (the shape of a)", f"{b.shape}")
    if metric == "cosine":
        a, b = normalize_rows(a), normalize_rows(b)
    if metric in ("l2", "sqeuclidean", "cosine"):
        diff = a - b
        d = np.einsum("ij,ij->i", diff, diff)
        if metric == "l2":
            return np.sqrt(d)
        return d * 0.5 if metric == "cosine" else d
    if metric == "l1":
        return np.abs(a - b).sum(axis=1)
    if metric == "chi2":
        return _chi2_term(a, b)
    eps = np.float32(KL_EPS)
    return np.einsum("ij,ij->i", a, np.log(a + eps) - np.log(b + eps))


# ------------------------------------------------------------------- top-k selection
def smallest(dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the `k` smallest entries and their columns, in (distance, column) order.

    Exact tie handling: of equal distances, the lower column comes first and is kept.
    """
    n_rows, n_cols = dist.shape
    if k >= n_cols:
        idx = np.argsort(dist, axis=1, kind="stable")
    else:  # all entries below the k-th value, then its ties from the lowest column on
        kth = np.partition(dist, k - 1, axis=1)[:, k - 1 : k]
        below = dist < kth
        ties = dist == kth
        needed = k - below.sum(axis=1, keepdims=True)
        take = below | (ties & (np.cumsum(ties, axis=1) <= needed))
        idx = np.nonzero(take)[1].reshape(n_rows, k)
    d = np.take_along_axis(dist, idx, axis=1)
    order = np.lexsort((idx, d), axis=1)
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(idx, order, axis=1)


def _merge(
    best: tuple[np.ndarray, np.ndarray] | None, d: np.ndarray, i: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` first of two candidate lists in (distance, index) order."""
    if best is not None:
        d = np.concatenate([best[0], d], axis=1)
        i = np.concatenate([best[1], i], axis=1)
    order = np.lexsort((i, d), axis=1)[:, :k]
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)


def _drop_self(
    d: np.ndarray, i: np.ndarray, self_index: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index from a list of k+1 (or the last entry if it is absent)."""
    is_self = i == self_index[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)


def blocked_search(
    distance_block: Callable[[np.ndarray, int, int], np.ndarray],
    query_rows: np.ndarray,
    n_database: int,
    k: int,
    exclude_self: bool = False,
    block_rows: int = 65536,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-NN from a function giving distance blocks, in bounded memory.

    ``distance_block(query_rows, start, stop)`` returns float32 distances of those queries
    to database rows ``start:stop``. With `exclude_self`, query ``query_rows[r]`` is database
    item ``query_rows[r]`` and is left out of its own result. Ties: lower index first.
    """
    n_queries = len(query_rows)
    k = min(k, n_database - (1 if exclude_self else 0))
    if k <= 0 or n_queries == 0:
        return np.zeros((n_queries, max(k, 0)), np.float32), np.zeros(
            (n_queries, max(k, 0)), np.int64
        )
    best: tuple[np.ndarray, np.ndarray] | None = None
    for start in range(0, n_database, block_rows):
        stop = min(n_database, start + block_rows)
        dist = distance_block(query_rows, start, stop)
        if exclude_self:
            inside = (query_rows >= start) & (query_rows < stop)
            dist[np.flatnonzero(inside), query_rows[inside] - start] = np.inf
        d, i = smallest(dist, min(k, stop - start))
        best = _merge(best, d, i + start, k)
    assert best is not None
    return best[0].astype(np.float32), best[1].astype(np.int64)


# ------------------------------------------------------------------------ the index
class NeighborIndex:
    """k-nearest-neighbour search over one feature matrix.

    Args:
        metric: one of `METRICS` (see the module docstring for the definitions).
        method: ``"exact"`` (FAISS kernels, blocked), ``"ivf"`` (FAISS inverted file) or
            ``"numpy"`` (blocked NumPy brute force).
        nlist: IVF lists; default ``4 * sqrt(n)`` clipped to ``[1, n / 39]``.
        nprobe: IVF lists visited per query (may be changed between searches).
        rerank: for IVF with ``chi2``/``kl``, candidates per result re-ranked exactly.
        block_rows: database rows per block of the exact methods (memory bound: about
            ``block_rows x dim`` float32 plus ``queries x block_rows`` distances);
            default: blocks of about 256 MiB of float32.
        train_size: IVF k-means training sample (default ``64 * nlist``), drawn with `seed`.
        seed: random seed of the IVF training sample and k-means.
    """

    def __init__(
        self,
        metric: str = "l2",
        method: str = "exact",
        nlist: int | None = None,
        nprobe: int = 16,
        rerank: int = 4,
        block_rows: int | None = None,
        train_size: int | None = None,
        seed: int = 0,
    ) -> None:
        self.metric = check_metric(metric)
        if method not in METHODS:
            raise InvalidInputError("method", f"one of {', '.join(METHODS)}", repr(method))
        self.method = method
        self.nlist = None if nlist is None else check_int("nlist", nlist, 1)
        self.nprobe = check_int("nprobe", nprobe, 1)
        self.rerank = check_int("rerank", rerank, 1)
        self.block_rows = block_rows
        self.train_size = train_size
        self.seed = seed
        self._database: np.ndarray | None = None
        self._ivf: faiss.Index | None = None

    # ------------------------------------------------------------------------ fitting
    @property
    def n_items(self) -> int:
        return 0 if self._database is None else len(self._database)

    @property
    def dim(self) -> int:
        if self._database is None:
            raise NotFittedError("This NeighborIndex is not fitted yet: call fit(database).")
        return int(self._database.shape[1])

    def fit(self, database: np.ndarray) -> NeighborIndex:
        """Index `database` (``[n, dim]``, float16/float32, memory-mapped arrays welcome).

        The exact methods keep a reference to `database` (no copy; do not modify it
        afterwards); IVF copies it into the FAISS index block by block.
        """
        database = _check_matrix(database, "database")
        if len(database) == 0:
            raise InvalidInputError("database", "at least one row", "an empty array")
        self._database = database
        self._ivf = None
        self._checked = False  # every row validated (first full pass of a search)
        self._max_sqnorm = 0.0  # largest squared row norm (l2/sqeuclidean rounding bound)
        if self.method == "ivf":
            self._build_ivf()
        return self

    def _rows_per_block(self) -> int:
        if self.block_rows is not None:
            return max(1, int(self.block_rows))
        return max(1024, (1 << 26) // max(1, self.dim))

    def _ivf_space(self, block: np.ndarray) -> np.ndarray:
        """Rows as the IVF index stores them."""
        if self.metric == "cosine":
            return normalize_rows(block)
        if self.metric in NONNEGATIVE:
            return np.sqrt(block)
        return block

    def _build_ivf(self) -> None:
        db = self._database
        assert db is not None
        n, dim = db.shape
        nlist = self.nlist or int(round(4 * np.sqrt(n)))
        nlist = int(max(1, min(nlist, n // 39 or 1, n)))
        faiss_metric = faiss.METRIC_L1 if self.metric == "l1" else faiss.METRIC_L2
        quantizer = faiss.IndexFlat(dim, faiss_metric)
        if db.dtype == np.float16 and self.metric != "l1":
            index = faiss.IndexIVFScalarQuantizer(
                quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16, faiss_metric
            )
        else:
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss_metric)
        index.cp.seed = self.seed
        index.cp.niter = 10
        train_size = min(n, self.train_size or 64 * nlist)
        rng = np.random.default_rng(self.seed)
        sample = np.sort(rng.choice(n, size=train_size, replace=False))
        index.train(self._ivf_space(_as_float32_block(db[sample], "database", self.metric)))
        step = self._rows_per_block()
        for start in range(0, n, step):
            block = _as_float32_block(db[start : start + step], "database", self.metric, start)
            index.add(self._ivf_space(block))
        index.nprobe = min(self.nprobe, nlist)
        self._quantizer = quantizer  # the IVF index does not own it
        self._ivf = index

    # ------------------------------------------------------------------------ search
    def search(self, queries: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The `k` nearest database items of each query: float32 distances, int64 indices.

        ``queries=None`` searches every database item among the others (leave-one-out).
        Rows are sorted by (distance, index).
        """
        if self._database is None:
            raise NotFittedError("This NeighborIndex is not fitted yet: call fit(database).")
        k = check_int("k", k, 1)
        exclude_self = queries is None
        if exclude_self:
            query_rows = np.arange(self.n_items, dtype=np.int64)
        else:
            queries = _check_matrix(queries, "queries", self.dim)
            query_rows = np.arange(len(queries), dtype=np.int64)
        n_out = min(k, self.n_items - (1 if exclude_self else 0))
        if n_out <= 0 or len(query_rows) == 0:
            empty = (len(query_rows), max(n_out, 0))
            return np.zeros(empty, np.float32), np.zeros(empty, np.int64)

        # query blocks bound the [queries x block_rows] distance temporaries
        db_block = min(self._rows_per_block(), self.n_items)
        q_step = max(1, min(len(query_rows), 4 * _BLOCK_CELLS // db_block, 8192))
        parts_d, parts_i = [], []
        for a in range(0, len(query_rows), q_step):
            rows = query_rows[a : a + q_step]
            if exclude_self:
                q = _as_float32_block(self._database[rows], "database", self.metric, a)
            else:
                assert queries is not None
                q = _as_float32_block(queries[rows], "queries", self.metric, a)
            d, i = self._search_block(q, n_out, rows if exclude_self else None)
            parts_d.append(d)
            parts_i.append(i)
        return np.concatenate(parts_d), np.concatenate(parts_i)

    def _search_block(
        self, q: np.ndarray, k: int, self_rows: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.method == "ivf":
            return self._search_ivf(q, k, self_rows)
        db = self._database
        assert db is not None
        gemm = self.metric in GEMM_METRICS
        extra = RESCORE_EXTRA if gemm else 0
        k_raw = min(len(db), k + extra + (1 if self_rows is not None else 0))
        step = self._rows_per_block()
        prepared = self._prepare_queries(q)

        def block(rows: np.ndarray, start: int, stop: int) -> np.ndarray:
            """Raw kernel values: squared distances (of unit vectors for cosine), or KL."""
            x = self._database_block(start, stop)
            if self.metric == "cosine":
                return _sqeuclidean(prepared, normalize_rows(x))
            raw = "sqeuclidean" if self.metric == "l2" else self.metric
            return _pairwise(prepared, x, raw)

        if self.method == "exact" and self.metric not in NONNEGATIVE:
            best = None
            for start in range(0, len(db), step):
                x = self._database_block(start, start + step)
                d, i = self._faiss_knn(prepared, x, min(k_raw, len(x)))
                best = _merge(best, d, i + start, k_raw)
            assert best is not None
            raw, i = best
        else:
            raw, i = blocked_search(block, np.arange(len(q)), len(db), k_raw, False, step)
        self._checked = True
        d = self._finish(raw)
        if gemm:
            rows, cols = self._near_ties(q, raw, self._max_sqnorm)
            if len(rows):
                d[rows, cols] = self._pair_distances(q, rows, i[rows, cols])
        if self_rows is not None:
            d[i == self_rows[:, None]] = np.inf
        order = np.lexsort((i, d), axis=1)[:, :k]
        return np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)

    def _database_block(self, start: int, stop: int) -> np.ndarray:
        """Database rows as float32; validated (and measured) on the first pass only."""
        db = self._database
        assert db is not None
        if self._checked:
            return np.ascontiguousarray(db[start:stop], dtype=np.float32)
        x = _as_float32_block(db[start:stop], "database", self.metric, start)
        if self.metric in ("l2", "sqeuclidean") and len(x):
            self._max_sqnorm = max(self._max_sqnorm, float(np.einsum("ij,ij->i", x, x).max()))
        return x

    def _near_ties(
        self, q: np.ndarray, raw: np.ndarray, max_sqnorm: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(query, candidate) cells whose raw kernel value lies within rounding error of
        another candidate's of the same query.

        Matrix products round differently for equal rows at different database positions;
        such cells get their distance recomputed pair by pair, so equal rows tie exactly and
        fall back to index order. The bound, 5e-7 relative to the magnitudes entering the
        products (``|q|^2 + max |x|^2``, or the KL terms), is a few float32 roundings.
        """
        if self.metric == "cosine":
            tol = np.full(len(q), 1e-6)
        elif self.metric == "kl":
            h = np.abs(np.einsum("ij,ij->i", q, np.log(q + np.float32(KL_EPS))))
            tol = 5e-7 * (2 * h + np.abs(raw).max(axis=1))
        else:
            tol = 5e-7 * (np.einsum("ij,ij->i", q, q) + max_sqnorm)
        order = np.argsort(raw, axis=1, kind="stable")
        close = np.diff(np.take_along_axis(raw, order, axis=1), axis=1) <= tol[:, None] + 1e-30
        involved = np.zeros(raw.shape, dtype=bool)
        involved[:, :-1] |= close
        involved[:, 1:] |= close
        cells = np.zeros(raw.shape, dtype=bool)
        np.put_along_axis(cells, order, involved, axis=1)
        return np.nonzero(cells)

    def _pair_distances(self, q: np.ndarray, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Exact distances of queries ``q[rows]`` to database items `items`, pair by pair."""
        db = self._database
        assert db is not None
        out = np.empty(len(rows), dtype=np.float32)
        step = max(1, _BLOCK_CELLS // max(1, self.dim))
        for a in range(0, len(rows), step):
            part = items[a : a + step]
            order = np.argsort(part, kind="stable")  # sorted gathers read memmaps faster
            x = np.empty((len(part), self.dim), dtype=np.float32)
            x[order] = np.asarray(db[part[order]], dtype=np.float32)
            out[a : a + step] = paired_distances(q[rows[a : a + step]], x, self.metric)
        return out

    def _prepare_queries(self, q: np.ndarray) -> np.ndarray:
        return normalize_rows(q) if self.metric == "cosine" else q

    def _faiss_knn(self, q: np.ndarray, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.metric == "l1":
            return faiss.knn(q, x, k, metric=faiss.METRIC_L1)
        if self.metric == "cosine":
            x = normalize_rows(x)
        d, i = faiss.knn(q, x, k, metric=faiss.METRIC_L2)
        np.maximum(d, 0.0, out=d)
        return d, i

    def _finish(self, d: np.ndarray) -> np.ndarray:
        """FAISS L2 kernels give squared distances; map them to the metric's values."""
        if self.metric == "l2":
            return np.sqrt(d)
        if self.metric == "cosine":
            return d * np.float32(0.5)
        return d

    def _search_ivf(
        self, q: np.ndarray, k: int, self_rows: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self._ivf is not None and self._database is not None
        k_raw = k + 1 if self_rows is not None else k
        exact_rerank = self.metric in NONNEGATIVE
        if exact_rerank:
            k_raw = k_raw * self.rerank
        self._ivf.nprobe = min(self.nprobe, self._ivf.nlist)  # `nprobe` may change after fit
        d, i = self._ivf.search(np.ascontiguousarray(self._ivf_space(q)), k_raw)
        missing = i < 0
        if exact_rerank:
            d = self._exact_candidate_distances(q, i)
        else:
            d = self._finish(np.maximum(d, 0.0))
        d[missing] = np.inf
        i = np.where(missing, np.iinfo(np.int64).max, i)  # sorts after every real index
        order = np.lexsort((i, d), axis=1)
        d, i = np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)
        if self_rows is not None:
            d, i = _drop_self(d, i, self_rows, k_raw)
        d, i = d[:, :k], i[:, :k]
        i[i == np.iinfo(np.int64).max] = -1
        return d.astype(np.float32), i.astype(np.int64)

    def _exact_candidate_distances(self, q: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """Exact distances of each query to its candidate rows (-1 = none: inf)."""
        db = self._database
        assert db is not None
        out = np.full(cand.shape, np.inf, dtype=np.float32)
        per = max(1, _BLOCK_CELLS // max(1, cand.shape[1] * self.dim))
        for a in range(0, len(q), per):
            c = cand[a : a + per]
            valid = c >= 0
            flat = c[valid]
            order = np.argsort(flat, kind="stable")  # sorted gathers read memmaps faster
            rows = np.empty((len(flat), self.dim), dtype=np.float32)
            rows[order] = np.asarray(db[flat[order]], dtype=np.float32)
            owner = np.repeat(np.arange(len(c)), valid.sum(axis=1))
            d = paired_distances(q[a : a + per][owner], rows, self.metric)
            block = out[a : a + per]
            block[valid] = d
        return out
