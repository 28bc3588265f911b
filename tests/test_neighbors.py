"""Neighbour search against a slow brute-force NumPy reference, for every metric and method."""

from __future__ import annotations

import numpy as np
import pytest

from phototag.errors import InvalidInputError, NotFittedError
from phototag.search import METRICS, NeighborIndex, paired_distances, pairwise_distances


def reference_matrix(q: np.ndarray, x: np.ndarray, metric: str) -> np.ndarray:
    """All distances, straight from the definitions in the module docstring (float64)."""
    q = q.astype(np.float64)[:, None, :]
    x = x.astype(np.float64)[None, :, :]
    if metric in ("l2", "sqeuclidean"):
        d = ((q - x) ** 2).sum(-1)
        return np.sqrt(d) if metric == "l2" else d
    if metric == "cosine":
        nq = np.linalg.norm(q, axis=-1, keepdims=True)
        nx = np.linalg.norm(x, axis=-1, keepdims=True)
        qn = np.divide(q, nq, out=np.zeros_like(q), where=nq > 0)
        xn = np.divide(x, nx, out=np.zeros_like(x), where=nx > 0)
        return ((qn - xn) ** 2).sum(-1) / 2
    if metric == "l1":
        return np.abs(q - x).sum(-1)
    if metric == "chi2":
        s = q + x
        return np.divide((q - x) ** 2, s, out=np.zeros(np.broadcast(q, x).shape), where=s > 0).sum(
            -1
        )
    eps = 1e-10
    return (q * (np.log(q + eps) - np.log(x + eps))).sum(-1)


def reference_knn(queries, database, k, metric, exclude_self=False):
    """(distance, index)-ordered top-k by a full sort of the reference distances."""
    d = reference_matrix(queries, database, metric)
    if exclude_self:
        d[np.arange(len(d)), np.arange(len(d))] = np.inf
    k = min(k, d.shape[1] - exclude_self)
    ids = np.broadcast_to(np.arange(d.shape[1]), d.shape)
    order = np.lexsort((ids, d), axis=1)[:, :k]
    return np.take_along_axis(d, order, axis=1), order


def data(metric: str, n: int = 300, dim: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, dim)).astype(np.float32)
    if metric in ("chi2", "kl"):
        x[rng.random(x.shape) < 0.3] = 0.0  # sparse histograms
        x /= x.sum(axis=1, keepdims=True) + 1e-12
    else:
        x -= 0.5
    m = min(40, n)
    q = x[:m] + 0.05 * rng.standard_normal((m, dim)).astype(np.float32)
    if metric in ("chi2", "kl"):
        q = np.abs(q)
    return q, x


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_and_paired_match_the_definitions(metric):
    q, x = data(metric, n=30)
    x[3] = 0.0  # a zero row (cosine / chi2 edge cases)
    expected = reference_matrix(q[:7], x, metric)
    assert np.allclose(pairwise_distances(q[:7], x, metric), expected, rtol=1e-4, atol=1e-4)
    paired = paired_distances(q[:7], x[:7], metric)
    assert np.allclose(paired, np.diag(expected[:, :7]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["exact", "numpy"])
@pytest.mark.parametrize("metric", METRICS)
def test_exact_search_matches_brute_force(metric, method):
    q, x = data(metric)
    index = NeighborIndex(metric, method, block_rows=64).fit(x)  # several blocks
    d, i = index.search(q, 10)
    ref_d, ref_i = reference_knn(q, x, 10, metric)
    assert d.dtype == np.float32 and i.dtype == np.int64 and d.shape == (40, 10)
    assert np.allclose(d, ref_d, rtol=1e-4, atol=1e-4)
    # indices agree wherever the reference distances are not (nearly) tied
    gaps = np.diff(ref_d, axis=1)
    separated = np.ones_like(ref_i, dtype=bool)
    separated[:, 1:] &= gaps > 1e-4
    separated[:, :-1] &= gaps > 1e-4
    assert np.array_equal(i[separated], ref_i[separated])
    assert set(map(tuple, i.tolist())) and (np.diff(d, axis=1) >= 0).all()


@pytest.mark.parametrize("method", ["exact", "numpy", "ivf"])
@pytest.mark.parametrize("metric", METRICS)
def test_leave_one_out_never_returns_the_query(metric, method):
    _, x = data(metric, n=400)
    index = NeighborIndex(metric, method, nlist=4, nprobe=4, block_rows=128).fit(x)
    d, i = index.search(None, 5)
    assert i.shape == (400, 5)
    assert not (i == np.arange(400)[:, None]).any()
    if method != "ivf":
        ref_d, _ = reference_knn(x[:20], x, 5, metric, exclude_self=True)
        assert np.allclose(d[:20], ref_d, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", METRICS)
def test_ivf_probing_every_list_is_exact(metric):
    q, x = data(metric, n=500)
    exact_d, exact_i = NeighborIndex(metric).fit(x).search(q, 8)
    ivf = NeighborIndex(metric, "ivf", nlist=8, nprobe=8, rerank=100).fit(x)
    d, i = ivf.search(q, 8)
    assert np.allclose(d, exact_d, rtol=1e-3, atol=1e-4)
    assert (i == exact_i).mean() > 0.95  # only near-ties may swap


def test_ivf_recall_is_high_with_a_few_probes():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((20, 16)).astype(np.float32) * 4
    x = (centres[rng.integers(0, 20, 4000)] + rng.standard_normal((4000, 16))).astype(np.float32)
    q = x[:100] + 0.1
    _, exact = NeighborIndex("l2").fit(x).search(q, 20)
    _, approx = NeighborIndex("l2", "ivf", nlist=20, nprobe=5).fit(x).search(q, 20)
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(exact, approx, strict=True)])
    assert recall > 0.9


@pytest.mark.parametrize("method", ["exact", "numpy"])
@pytest.mark.parametrize("metric", METRICS)
def test_ties_put_the_lower_index_first(metric, method):
    _, base = data(metric, n=10)
    x = np.concatenate([base] * 12)  # item r repeats at r + 10, r + 20, ...
    index = NeighborIndex(metric, method, block_rows=35).fit(x)
    d, i = index.search(base[:3], 6)
    for r in range(3):
        assert i[r].tolist() == list(range(r, 120, 10))[:6]
    _, i = index.search(None, 4)
    assert i[0].tolist() == [10, 20, 30, 40] and i[15].tolist() == [5, 25, 35, 45]


def test_float16_memmap_database(tmp_path):
    q, x = data("l2", n=500, dim=32)
    path = tmp_path / "db.f16"
    mm = np.memmap(path, dtype=np.float16, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    db = np.memmap(path, dtype=np.float16, mode="r", shape=x.shape)
    x16 = x.astype(np.float16).astype(np.float32)
    for method in ("exact", "numpy", "ivf"):
        index = NeighborIndex("cosine", method, nlist=4, nprobe=4, block_rows=100).fit(db)
        d, i = index.search(q, 5)
        ref_d, ref_i = reference_knn(q, x16, 5, "cosine")
        assert np.allclose(d, ref_d, atol=1e-3)
        assert (i == ref_i).mean() > 0.95


def test_k_larger_than_the_database_is_clipped():
    _, x = data("l2", n=6)
    d, i = NeighborIndex("l2").fit(x).search(x[:2], 50)
    assert i.shape == (2, 6) and sorted(i[0].tolist()) == list(range(6))
    _, i = NeighborIndex("l2").fit(x).search(None, 50)
    assert i.shape == (6, 5)


def test_errors_are_clear():
    with pytest.raises(InvalidInputError, match="metric"):
        NeighborIndex("hamming")
    with pytest.raises(InvalidInputError, match="method"):
        NeighborIndex("l2", "hnsw")
    with pytest.raises(NotFittedError):
        NeighborIndex("l2").search(np.zeros((1, 3)), 1)
    index = NeighborIndex("chi2").fit(np.ones((5, 3), np.float32))
    with pytest.raises(InvalidInputError, match="3 columns"):
        index.search(np.ones((1, 4), np.float32), 1)
    with pytest.raises(InvalidInputError, match="non-negative"):
        index.search(-np.ones((1, 3), np.float32), 1)
    with pytest.raises(InvalidInputError, match="finite"):
        NeighborIndex("l2").fit(np.ones((5, 3), np.float32)).search(np.full((1, 3), np.nan), 1)
