"""Neighbourhoods from metadata (Eq. 1-2, 4-7 of Tesan et al.): the M nearest items of a
database by a metadata distance, and size-m subsets of them.

- `jaccard_neighbours`: binary tag (or group) vectors, Jaccard distance (Eq. 5) from
  sparse intersection counts ``Q @ X.T`` computed in row blocks (threads over blocks); no
  Python loop over pairs. Per block, each row keeps only the entries in its top histogram
  bins of similarity before one sort, so the cost stays that of the sparse product.
- `cosine_neighbours`: summed tag embeddings (Eq. 6) by cosine distance (Eq. 7) through
  FAISS (`phototag.search.NeighborIndex`): exact up to `EXACT_COSINE_LIMIT` database
  items, an IVF index above (200,000 items: exact takes minutes on 2 cores).
- `sample_subsets`: size-m subsets of the M nearest, each kept in distance order.

Ties: Jaccard ties (common: many items share one tag) are broken by a seeded random
priority per database item, so a group neighbourhood (every member at distance 0) is a
random draw of its members, not the lowest indices; items left with fewer than M items
sharing a tag are filled with random items at distance 1. Cosine ties go to the lower
database index (`NeighborIndex`'s rule).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp

from phototag.errors import InvalidInputError, check_choice, check_int

#: Histogram bins of Jaccard similarity used to prune each row before sorting.
_BINS = 256
#: Intersection entries per block (bounds memory: about 40 bytes each).
_BLOCK_ENTRIES = 4_000_000
#: Database rows up to which `cosine_neighbours` searches exactly ("auto"); IVF above.
EXACT_COSINE_LIMIT = 50_000
#: IVF lists probed per query (of about 4 sqrt(n) lists; 200,000 random 50-d sums: recall@24
#: 0.72 with 16, 0.83 with 64, bench/bench_neighbourhoods.py).
IVF_NPROBE = 64
#: What the blocks of the running `jaccard_neighbours` read (inherited by forked workers).
_SHARED: Any = None


def jaccard_distances(a: sp.spmatrix, b: sp.spmatrix) -> np.ndarray:
    """Dense Jaccard distances ``1 - |a_i ∩ b_j| / |a_i ∪ b_j|`` between the rows of two
    binary matrices (the reference of small cases; a pair of empty rows is at 1)."""
    a, b = _binary(a, "a"), _binary(b, "b")
    inter = (a @ b.T).toarray()
    union = np.asarray(a.sum(1)) + np.asarray(b.sum(1)).T - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        similarity = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return 1.0 - similarity


def jaccard_neighbours(
    queries: sp.spmatrix | None,
    database: sp.spmatrix,
    k: int,
    *,
    query_sizes: np.ndarray | None = None,
    database_sizes: np.ndarray | None = None,
    seed: int = 0,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` nearest database rows of each query by Jaccard distance.

    `queries` None: the database queries itself, each item left out of its own list
    (training neighbourhoods). `query_sizes` / `database_sizes` are the tag counts in
    the union of Eq. 5 when rows hold only part of an item's tags (tags outside a
    model's vocabulary still count); default: the row sums. Returns ``(distances,
    indices)``, float32 and int64 ``[n_queries, k']`` with ``k' = min(k, candidates)``,
    nearest first (ties by a random priority drawn from `seed`).
    """
    x = _binary(database, "database")
    leave_out = queries is None
    q = x if leave_out else _binary(queries, "queries")
    if q.shape[1] != x.shape[1]:
        raise InvalidInputError("queries", f"{x.shape[1]} tag columns", str(q.shape[1]))
    n = x.shape[0]
    k = min(check_int("k", k, 1), n - 1 if leave_out else n)
    qs = _sizes(q, query_sizes, "query_sizes").astype(np.float32)
    xs = _sizes(x, database_sizes, "database_sizes").astype(np.float32)
    priority = np.random.default_rng(seed).permutation(n).astype(np.int64)
    if k <= 0:
        return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
    xt = sp.csr_matrix(x.T, dtype=np.float32)
    frequency = np.asarray(x.sum(0)).ravel().astype(np.float64)
    cost = q @ frequency + 1.0  # intersection entries each query row produces (at most)
    bounds = _blocks(np.asarray(cost).ravel(), _BLOCK_ENTRIES)
    q = sp.csr_matrix(q, dtype=np.float32)
    check_int("workers", workers, 1)
    global _SHARED
    _SHARED = (q, xt, qs, xs, k, priority, leave_out)
    try:
        if workers == 1 or len(bounds) == 1:
            parts = [_run_block(span) for span in bounds]
        else:  # forked processes read the matrices set above without copying them
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                parts = list(pool.map(_run_block, bounds))
    finally:
        _SHARED = None
    distances = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, k), np.float32)
    indices = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, k), np.int64)
    _fill_missing(distances, indices, n, priority, leave_out, seed)
    return distances, indices


def _run_block(span: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    q, xt, qs, xs, k, priority, leave_out = _SHARED
    start, stop = span
    return _jaccard_block(q[start:stop], xt, qs[start:stop], xs, k, priority,
                          start if leave_out else None)  # fmt: skip


def _jaccard_block(
    q: sp.csr_matrix,
    xt: sp.csr_matrix,
    qs: np.ndarray,
    xs: np.ndarray,
    k: int,
    priority: np.ndarray,
    offset: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-`k` of one block of query rows (`offset`: their database rows, left out)."""
    b = q.shape[0]
    wanted = k + (offset is not None)  # the item itself is among its own nearest
    product = q @ xt
    counts = np.diff(product.indptr)
    rows = np.repeat(np.arange(b, dtype=np.int32), counts)
    cols = product.indices
    inter = product.data
    similarity = inter / (np.repeat(qs, counts) + xs[cols] - inter)
    # Keep, per row, the entries of its highest bins that hold at least `wanted` entries.
    key = rows * _BINS
    key += (similarity * (_BINS - 1)).astype(np.int32)
    histogram = np.bincount(key, minlength=b * _BINS).reshape(b, _BINS)
    reached = np.cumsum(histogram[:, ::-1], axis=1) >= wanted
    lowest = np.where(reached.any(1), _BINS - 1 - reached.argmax(1), 0).astype(np.int32)
    lowest += np.arange(b, dtype=np.int32) * _BINS
    kept = np.flatnonzero(key >= np.repeat(lowest, counts))
    rows, cols, similarity = rows[kept], cols[kept].astype(np.int64), similarity[kept]
    if offset is not None:
        other = cols != rows + offset
        rows, cols, similarity = rows[other], cols[other], similarity[other]
    order = np.lexsort((priority[cols], -similarity, rows))
    rows, cols, similarity = rows[order], cols[order], similarity[order]
    starts = np.searchsorted(rows, np.arange(b))
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < k
    distances = np.ones((b, k), np.float32)
    indices = np.full((b, k), -1, np.int64)
    distances[rows[keep], rank[keep]] = 1.0 - similarity[keep]
    indices[rows[keep], rank[keep]] = cols[keep]
    return distances, indices


def _fill_missing(
    distances: np.ndarray,
    indices: np.ndarray,
    n: int,
    priority: np.ndarray,
    leave_out: bool,
    seed: int,
) -> None:
    """Fill the slots of queries with fewer than k items sharing a tag with random other
    items (distance 1), in place."""
    short = np.flatnonzero((indices < 0).any(1))
    if not len(short):
        return
    k = indices.shape[1]
    width = min(n, 2 * k + 1)
    rng = np.random.default_rng(seed + 1)
    order = np.argsort(priority)
    start = rng.integers(n, size=len(short))
    candidates = order[(start[:, None] + np.arange(width)) % n]
    taken = indices[short]
    usable = ~(candidates[:, :, None] == taken[:, None, :]).any(2)
    if leave_out:
        usable &= candidates != short[:, None]
    rank = np.cumsum(usable, axis=1) - 1
    by_rank = np.full((len(short), width), -1, np.int64)
    where = np.nonzero(usable)
    by_rank[where[0], rank[where]] = candidates[where]
    empty = taken < 0
    slot = np.cumsum(empty, axis=1) - 1
    taken[empty] = by_rank[np.nonzero(empty)[0], slot[empty]]
    indices[short] = taken
    distances[short] = np.where(empty, 1.0, distances[short])


def cosine_neighbours(
    queries: np.ndarray | None,
    database: np.ndarray,
    k: int,
    *,
    method: str = "auto",
    nprobe: int = IVF_NPROBE,
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` nearest database rows by cosine distance ``1 - cos`` (Eq. 7) via FAISS;
    `queries` None leaves each database item out of its own list. Returns
    ``(distances, indices)`` as `jaccard_neighbours` does.

    `method`: ``"exact"`` (brute force), ``"ivf"`` (an inverted file probing `nprobe`
    lists: approximate, recall measured in bench/bench_neighbourhoods.py) or ``"auto"``
    (exact up to `EXACT_COSINE_LIMIT` database rows, IVF above). Zero vectors (items
    without a known tag) are at distance 0 from each other and 0.5 from the rest, as in
    the exact search; the IVF index holds only the non-zero ones. A query whose probed
    lists hold fewer than `k` items is searched again exactly."""
    from phototag.search import NeighborIndex

    method = check_choice("method", method, ("auto", "exact", "ivf"))
    database = np.ascontiguousarray(database, dtype=np.float32)
    n = database.shape[0]
    k = min(check_int("k", k, 1), n - 1 if queries is None else n)
    q = None if queries is None else np.ascontiguousarray(queries, dtype=np.float32)
    if k <= 0:
        rows = n if q is None else len(q)
        return np.zeros((rows, 0), np.float32), np.zeros((rows, 0), np.int64)
    if method == "auto":
        method = "exact" if n <= EXACT_COSINE_LIMIT else "ivf"
    if method == "exact":
        found = NeighborIndex("cosine", "exact").fit(database).search(q, k)
        return found[0].astype(np.float32), found[1].astype(np.int64)
    distances, indices = _cosine_ivf(q, database, k, check_int("nprobe", nprobe, 1))
    short = np.flatnonzero((indices < 0).any(1))
    if len(short):  # too few items in the probed lists
        exact = NeighborIndex("cosine", "exact").fit(database)
        if q is None:
            d, i = _leave_out(exact.search(database[short], k + 1), short, k)
        else:
            d, i = exact.search(q[short], k)
        distances[short], indices[short] = d, i
    return distances, indices


def _cosine_ivf(
    q: np.ndarray | None, database: np.ndarray, k: int, nprobe: int
) -> tuple[np.ndarray, np.ndarray]:
    """IVF search among the non-zero database rows, merged with the zero rows (distance
    0 to a zero query, 0.5 to any other); -1 where too few were found."""
    from phototag.search import NeighborIndex

    leave_out = q is None
    queries = database if q is None else q
    zero_rows = np.flatnonzero(~database.any(axis=1))
    live_rows = np.flatnonzero(database.any(axis=1))
    zero_query = ~queries.any(axis=1)
    distances = np.full((len(queries), k), np.inf, np.float32)
    indices = np.full((len(queries), k), -1, np.int64)
    # zero candidates for every query: the lowest zero rows (one more to drop the query)
    zero_d = np.where(zero_query, 0.0, 0.5).astype(np.float32)[:, None]
    head = zero_rows[: k + leave_out]
    cand_i = np.broadcast_to(head, (len(queries), len(head)))
    cand_d = np.broadcast_to(zero_d, cand_i.shape)
    live = np.flatnonzero(~zero_query)
    if len(live_rows) and len(live):
        index = NeighborIndex("cosine", "ivf", nprobe=nprobe).fit(database[live_rows])
        kk = min(k + leave_out, len(live_rows))
        d, i = index.search(queries[live], kk)
        i = np.where(i >= 0, live_rows[np.maximum(i, 0)], -1)
        d = np.where(i >= 0, d, np.inf).astype(np.float32)
    else:
        d, i = np.zeros((len(live), 0), np.float32), np.zeros((len(live), 0), np.int64)
    # zero queries: the lowest non-zero rows at 0.5 fill what the zero rows leave
    tail = live_rows[: k + leave_out]
    parts_d = [cand_d, np.full((len(queries), len(tail)), 0.5, np.float32)]
    parts_i = [cand_i, np.broadcast_to(tail, (len(queries), len(tail)))]
    all_d = np.concatenate(parts_d, axis=1)
    all_i = np.concatenate(parts_i, axis=1)
    if len(live):  # non-zero queries: their IVF results in place of the live tail
        width = max(all_i.shape[1], len(head) + i.shape[1])
        grown_d = np.full((len(queries), width), np.inf, np.float32)
        grown_i = np.full((len(queries), width), -1, np.int64)
        grown_d[:, : all_d.shape[1]], grown_i[:, : all_i.shape[1]] = all_d, all_i
        grown_d[live] = np.inf
        grown_i[live] = -1
        grown_d[live, : len(head)], grown_i[live, : len(head)] = cand_d[live], cand_i[live]
        grown_d[live, len(head) : len(head) + i.shape[1]] = d
        grown_i[live, len(head) : len(head) + i.shape[1]] = i
        all_d, all_i = grown_d, grown_i
    if leave_out:  # the item itself is no neighbour
        own = all_i == np.arange(len(queries))[:, None]
        all_d = np.where(own, np.inf, all_d)
        all_i = np.where(own, -1, all_i)
    missing = all_i < 0
    order = np.lexsort((np.where(missing, np.iinfo(np.int64).max, all_i), all_d), axis=1)
    all_d = np.take_along_axis(all_d, order, axis=1)[:, :k]
    all_i = np.take_along_axis(all_i, order, axis=1)[:, :k]
    distances[:, : all_i.shape[1]], indices[:, : all_i.shape[1]] = all_d, all_i
    indices[~np.isfinite(distances)] = -1
    return distances, indices


def _leave_out(
    found: tuple[np.ndarray, np.ndarray], rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """`k + 1` neighbours of database `rows` less the row itself (else the last)."""
    d, i = found
    own = i == rows[:, None]
    keep = ~own
    keep[~own.any(1), -1] = False
    return d[keep].reshape(len(rows), k), i[keep].reshape(len(rows), k)


def sample_subsets(
    n_items: int, max_rank: int, m: int, n_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """`n_samples` size-`m` subsets of ranks ``0..max_rank-1`` per item (Eq. 1: the
    candidate neighbourhoods), each in increasing rank (distance) order: int64
    ``[n_items, n_samples, m]``."""
    if not 1 <= m <= max_rank:
        raise InvalidInputError("m", f"a neighbourhood size in 1..{max_rank}", repr(m))
    keys = rng.random((n_items, n_samples, max_rank))
    return np.sort(np.argsort(keys, axis=2)[:, :, :m], axis=2)


def _binary(matrix: sp.spmatrix, argument: str) -> sp.csr_matrix:
    if not sp.issparse(matrix) or matrix.ndim != 2:
        raise InvalidInputError(argument, "a 2-D scipy.sparse binary matrix", type(matrix).__name__)
    csr = sp.csr_matrix(matrix, dtype=np.float32)
    csr.sum_duplicates()
    csr.data[:] = 1.0
    csr.eliminate_zeros()
    return csr


def _sizes(matrix: sp.csr_matrix, sizes: np.ndarray | None, argument: str) -> np.ndarray:
    own = np.diff(matrix.indptr).astype(np.float64)
    if sizes is None:
        return own
    given = np.asarray(sizes, dtype=np.float64).ravel()
    if given.shape != own.shape or (given < own).any():
        raise InvalidInputError(argument, f"{len(own)} tag counts, each at least its row's", "")
    return given


def _blocks(cost: np.ndarray, budget: float) -> list[tuple[int, int]]:
    """Consecutive row ranges whose summed `cost` stays near `budget` (one row at least)."""
    if not len(cost):
        return []
    total = np.cumsum(cost)
    cuts = [0]
    while cuts[-1] < len(cost):
        done = total[cuts[-1] - 1] if cuts[-1] else 0.0
        stop = int(np.searchsorted(total, done + budget, side="right"))
        cuts.append(min(len(cost), max(stop, cuts[-1] + 1)))
    return list(zip(cuts[:-1], cuts[1:], strict=True))
