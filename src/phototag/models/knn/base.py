"""Shared machinery of the nearest-neighbour annotators: features, labels, distances.

A kNN model's state is its training set: the feature matrices it was configured with
(``train_features_<f>_``, float32 or float16) and the multi-hot labels as CSR arrays
(``label_indptr_``, ``label_indices_``), so a saved model scores new items on its own.

Distances. Each feature type ``f`` has a base distance ``d_f`` (`phototag.search`
metrics) and a scale ``s_f`` estimated on training pairs (``distance_scale_``: the mean or
the max of ``d_f`` over up to 1,000 x 5,000 training pairs, self-pairs left out). The
combined distance used to choose neighbours is the equally weighted mean
``D = (1/F) sum_f d_f / s_f`` (JEC's "joint equal contribution").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import scipy.sparse as sp

from phototag.data import AnnotationSet
from phototag.errors import InvalidInputError
from phototag.models.base import Annotator
from phototag.search import (
    METHODS,
    NeighborIndex,
    blocked_search,
    check_metric,
    paired_distances,
    pairwise_distances,
)

FEATURE_DTYPES = ("float32", "float16")
SCALE_QUERIES = 1000
SCALE_DATABASE = 5000
# cells of one [queries x training items] distance block (float32): 32 MiB
BLOCK_CELLS = 1 << 23


def as_list(value: str | Sequence[str], argument: str) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    if not items or not all(isinstance(v, str) and v for v in items):
        raise InvalidInputError(argument, "a non-empty name or list of names", repr(value))
    return items


def ragged_arange(counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(c) for c in counts])`` without a Python loop."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


class NeighborAnnotator(Annotator):
    """Base of the kNN annotators (not registered itself).

    Subclass constructors take ``features``, ``metric``, ``feature_dtype``, ``search``,
    ``nlist``, ``nprobe`` and call `_init_neighbors` with them.
    """

    features: str | list[str]
    metric: str | list[str]
    feature_dtype: str
    search: str
    nlist: int | None
    nprobe: int
    scale: str = "mean"

    def _init_neighbors(
        self,
        features: str | list[str],
        metric: str | list[str],
        feature_dtype: str,
        search: str,
        nlist: int | None,
        nprobe: int,
    ) -> None:
        self.features = features if isinstance(features, str) else list(features)
        self.metric = metric if isinstance(metric, str) else list(metric)
        keys = as_list(features, "features")
        if len(set(keys)) != len(keys):
            raise InvalidInputError("features", "distinct feature keys", repr(features))
        metrics = as_list(metric, "metric")
        if len(metrics) == 1:
            metrics = metrics * len(keys)
        if len(metrics) != len(keys):
            raise InvalidInputError(
                "metric",
                f"one metric or one per feature ({len(keys)})",
                f"{len(metrics)} metrics",
            )
        for m in metrics:
            check_metric(m)
        if feature_dtype not in FEATURE_DTYPES:
            raise InvalidInputError(
                "feature_dtype", " or ".join(FEATURE_DTYPES), repr(feature_dtype)
            )
        if search not in METHODS:
            raise InvalidInputError("search", f"one of {', '.join(METHODS)}", repr(search))
        if search == "ivf" and len(keys) > 1:
            raise InvalidInputError(
                "search",
                "'exact' or 'numpy' when several features are combined",
                "'ivf'",
                "IVF indexes one feature matrix; use one feature key or exact search.",
            )
        self.feature_dtype = feature_dtype
        self.search = search
        self.nlist = nlist
        self.nprobe = nprobe
        self._index: NeighborIndex | None = None

    # ------------------------------------------------------------------ properties
    @property
    def feature_keys(self) -> list[str]:
        return as_list(self.features, "features")

    @property
    def metrics(self) -> list[str]:
        metrics = as_list(self.metric, "metric")
        return metrics * len(self.feature_keys) if len(metrics) == 1 else metrics

    @property
    def n_train(self) -> int:
        return len(self.label_indptr_) - 1

    def train_features(self) -> list[np.ndarray]:
        return [getattr(self, f"train_features_{f}_") for f in range(len(self.feature_keys))]

    def train_labels(self) -> sp.csr_matrix:
        n, n_labels = self.n_train, len(self.vocabulary_)
        indices = self.label_indices_.astype(np.int64)
        data = np.ones(len(indices), dtype=np.float64)
        return sp.csr_matrix((data, indices, self.label_indptr_.astype(np.int64)), (n, n_labels))

    # ----------------------------------------------------------------- input checks
    def input_features(
        self, data: AnnotationSet, argument: str = "inputs", training: bool = False
    ) -> list[np.ndarray]:
        """The configured feature matrices of `data`, with clear errors when one is missing."""
        arrays = []
        for f, key in enumerate(self.feature_keys):
            if key not in data.features:
                available = ", ".join(repr(k) for k in sorted(data.features)) or "none"
                raise InvalidInputError(
                    argument,
                    f"an AnnotationSet with features[{key!r}]",
                    f"features {available}",
                    f"Compute the {key!r} features for these items, or configure the model "
                    "with features=<one of the available keys>.",
                )
            x = data.features[key]
            if np.ndim(x) != 2:
                raise InvalidInputError(f"features[{key!r}]", "a 2-D array", f"{np.ndim(x)}-D")
            if not training:
                dim = getattr(self, f"train_features_{f}_").shape[1]
                if x.shape[1] != dim:
                    raise InvalidInputError(
                        f"features[{key!r}]",
                        f"{dim} columns (as in training)",
                        f"{x.shape[1]}",
                        "Use the same encoder for training and prediction.",
                    )
            arrays.append(x)
        return arrays

    # --------------------------------------------------------------------- fitting
    def store_training(self, train: AnnotationSet) -> None:
        """Keep the training features (in `feature_dtype`) and labels; estimate scales."""
        arrays = self.input_features(train, "train", training=True)
        for f, x in enumerate(arrays):
            stored = np.ascontiguousarray(x, dtype=np.dtype(self.feature_dtype))
            if not np.isfinite(stored).all():
                raise InvalidInputError(
                    f"features[{self.feature_keys[f]!r}]",
                    f"finite values representable as {self.feature_dtype}",
                    "NaN or inf",
                )
            setattr(self, f"train_features_{f}_", stored)
        labels = train.labels
        self.label_indptr_ = labels.indptr.astype(np.int64)
        self.label_indices_ = labels.indices.astype(np.int32)
        self._index = None
        self.distance_scale_ = np.array(
            [
                self._estimate_scale(x, m)
                for x, m in zip(self.train_features(), self.metrics, strict=True)
            ],
            dtype=np.float64,
        )

    def _estimate_scale(self, x: np.ndarray, metric: str) -> float:
        n = len(x)
        if n < 2:
            return 1.0
        rng = np.random.default_rng(0)
        rows = np.sort(rng.choice(n, size=min(n, SCALE_QUERIES), replace=False))
        cols = np.sort(rng.choice(n, size=min(n, SCALE_DATABASE), replace=False))
        d = pairwise_distances(
            np.asarray(x[rows], dtype=np.float32),
            np.asarray(x[cols], dtype=np.float32),
            metric,
            check=False,
        )
        keep = rows[:, None] != cols[None, :]
        values = d[keep]
        value = float(values.max() if self.scale == "max" else values.mean())
        return value if value > 0 and np.isfinite(value) else 1.0

    # -------------------------------------------------------------------- distances
    def _queries(self, queries: list[np.ndarray] | None) -> list[np.ndarray]:
        return self.train_features() if queries is None else queries

    def neighbours(self, queries: list[np.ndarray] | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The `k` nearest training items under the combined distance ``D``.

        ``queries=None``: every training item among the others (leave-one-out).
        """
        train = self.train_features()
        scales = self.distance_scale_
        if len(train) == 1:
            if self._index is None:
                self._index = NeighborIndex(
                    self.metrics[0], self.search, nlist=self.nlist, nprobe=self.nprobe
                ).fit(train[0])
            d, i = self._index.search(None if queries is None else queries[0], k)
            return (d / scales[0]).astype(np.float32), i
        n_queries = self.n_train if queries is None else len(queries[0])
        rows = np.arange(n_queries, dtype=np.int64)
        q32 = [np.asarray(q, dtype=np.float32) for q in self._queries(queries)]

        def block(query_rows: np.ndarray, start: int, stop: int) -> np.ndarray:
            return self.combined_distances([q[query_rows] for q in q32], start, stop)

        step = max(1, min(self.n_train, BLOCK_CELLS // max(1, n_queries)))
        return blocked_search(block, rows, self.n_train, k, queries is None, step)

    def combined_distances(self, queries: list[np.ndarray], start: int, stop: int) -> np.ndarray:
        """``D`` of float32 queries to training items ``start:stop``."""
        total = None
        for q, x, metric, scale in zip(
            queries, self.train_features(), self.metrics, self.distance_scale_, strict=True
        ):
            x32 = np.asarray(x[start:stop], dtype=np.float32)
            d = pairwise_distances(q, x32, metric, check=False)
            d *= np.float32(1.0 / (scale * len(queries)))
            total = d if total is None else total + d
        assert total is not None
        return total

    def distance_blocks(
        self, queries: list[np.ndarray] | None, rows: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(query rows, D to every training item)`` in blocks of query rows.

        With ``queries=None`` the training items `rows` (default: all) query themselves and
        their own entry is inf (leave-one-out).
        """
        source = self._queries(queries)
        if rows is None:
            rows = np.arange(len(source[0]), dtype=np.int64)
        step = max(1, BLOCK_CELLS // max(1, self.n_train))
        for a in range(0, len(rows), step):
            block = rows[a : a + step]
            q32 = [np.asarray(q[block], dtype=np.float32) for q in source]
            dist = self.combined_distances(q32, 0, self.n_train)
            if queries is None:
                dist[np.arange(len(block)), block] = np.inf
            yield block, dist

    def pair_distances(self, queries: list[np.ndarray] | None, index: np.ndarray) -> np.ndarray:
        """Scaled base distances ``d_f(i, index[i, k]) / s_f``: float64 ``[n, k, F]``."""
        q_all = self._queries(queries)
        n, k = index.shape
        out = np.empty((n, k, len(q_all)), dtype=np.float64)
        safe = np.where(index >= 0, index, 0)
        for f, (q, x, metric, scale) in enumerate(
            zip(q_all, self.train_features(), self.metrics, self.distance_scale_, strict=True)
        ):
            step = max(1, BLOCK_CELLS // max(1, k * x.shape[1]))
            for a in range(0, n, step):
                rows = safe[a : a + step]
                left = np.repeat(np.asarray(q[a : a + step], dtype=np.float32), k, axis=0)
                right = np.asarray(x[rows.ravel()], dtype=np.float32)
                d = paired_distances(left, right, metric).reshape(len(rows), k)
                out[a : a + step, :, f] = d / scale
        out[index < 0] = np.inf
        return out
