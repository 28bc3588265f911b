"""Nearest-neighbour annotators: JEC, TagProp (+sigma-ML), 2PKNN (+ML) and ML-kNN.

Every model here keeps its training set (features of the configured ``features`` keys and the
labels) as saved state, finds neighbours with `phototag.search`, and scores labels from the
neighbours' labels. Equations, score definitions and complexity: ``docs/models/knn.md``.

Common constructor arguments:

* ``features``: the `AnnotationSet.features` key(s) to use; several keys are combined with
  equal weights after scaling each feature's distance by its mean (JEC: max) training
  distance.
* ``metric``: one distance for all features or one per feature (``l2``, ``sqeuclidean``,
  ``cosine``, ``l1``, ``chi2``, ``kl``; see `phototag.search`).
* ``feature_dtype``: ``"float32"`` or ``"float16"`` storage of the training features (half
  the model size; distances are still computed in float32).
* ``search``, ``nlist``, ``nprobe`` (JEC, TagProp, ML-kNN): ``"exact"`` (default), ``"ivf"``
  (one feature only) or ``"numpy"`` neighbour search.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from phototag.data import AnnotationSet
from phototag.errors import InvalidInputError, check_int
from phototag.models.knn.base import NeighborAnnotator
from phototag.models.knn.tagprop import (
    Propagation,
    TagPropProblem,
    Targets,
    distance_weights,
    probabilities,
    rank_weights,
)
from phototag.models.knn.twopass import (
    Neighbourhood,
    TripletProblem,
    elementwise_terms,
    group_bounds,
    select_temperature,
    semantic_groups,
    semantic_neighbourhoods,
    weighted_pairwise,
)
from phototag.models.registry import register_annotator
from phototag.search import smallest

DEFAULT_FEATURES = "efficientnet_lite2"

__all__ = [
    "JECAnnotator",
    "MLKNNAnnotator",
    "TagPropAnnotator",
    "TwoPassKNNAnnotator",
    "TwoPassKNNMLAnnotator",
]


def _neighbour_votes(index: np.ndarray, weights: np.ndarray, labels: sp.csr_matrix) -> np.ndarray:
    """``sum_k weights[i, k] * labels[index[i, k]]`` as a dense ``[n, L]`` array."""
    n, k = index.shape
    valid = index >= 0
    matrix = sp.csr_matrix(
        (weights[valid], (np.repeat(np.arange(n), valid.sum(axis=1)), index[valid])),
        shape=(n, labels.shape[0]),
    )
    return np.asarray((matrix @ labels).todense())


# ------------------------------------------------------------------------------------ JEC
@register_annotator("jec")
class JECAnnotator(NeighborAnnotator):
    """Joint Equal Contribution with greedy label transfer (Makadia et al., ECCV 2008).

    Distances of every feature are divided by their maximum over training pairs (the
    paper's scaling to [0, 1]; ``scale="mean"`` divides by the mean) and averaged. Labels of
    the nearest neighbour come first, ranked by training frequency; then the labels of
    neighbours 2..k, ranked by ``co-occurrence with the first neighbour's labels x local
    frequency`` (ties: local frequency, training frequency, label id); then every other
    label by training frequency. Scores: ``2 + f_l/(f_max+1)`` for the first tier,
    ``1 + (n1 - r)/(n1 + 1)`` for rank ``r`` among the ``n1`` second-tier labels and
    ``f_l/(f_max+1)`` for the rest, so top-n decoding is exactly the greedy transfer.
    """

    def __init__(
        self,
        features: str | list[str] = DEFAULT_FEATURES,
        metric: str | list[str] = "cosine",
        k: int = 5,
        scale: str = "max",
        feature_dtype: str = "float32",
        search: str = "exact",
        nlist: int | None = None,
        nprobe: int = 16,
    ) -> None:
        self.k = check_int("k", k, 1)
        if scale not in ("max", "mean"):
            raise InvalidInputError("scale", "'max' or 'mean'", repr(scale))
        self.scale = scale
        self._init_neighbors(features, metric, feature_dtype, search, nlist, nprobe)

    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        self.store_training(train)

    def _scores(self, inputs: AnnotationSet) -> np.ndarray:
        _, index = self.neighbours(self.input_features(inputs), self.k)
        return self.greedy_scores(index)

    def greedy_scores(self, index: np.ndarray) -> np.ndarray:
        """Scores reproducing the greedy transfer from neighbour lists ``[n, k]``."""
        labels = self.train_labels()
        n_labels = labels.shape[1]
        freq = np.asarray(labels.sum(axis=0)).ravel()
        freq_value = freq / (freq.max() + 1.0) if len(freq) else freq
        n = len(index)
        ones = np.ones((n, 1))
        first = _neighbour_votes(index[:, :1], ones, labels) > 0
        local = _neighbour_votes(index[:, 1:], np.ones(index[:, 1:].shape), labels)
        cooccurrence = np.asarray((labels.T @ labels).todense())
        key = (first.astype(np.float64) @ cooccurrence) * local
        second = ~first & (local > 0)
        ids = np.broadcast_to(np.arange(n_labels), (n, n_labels))
        neg_freq = np.broadcast_to(-freq_value, (n, n_labels))
        order = np.lexsort((ids, neg_freq, -local, -key, ~second), axis=1)
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(n_labels)[None, :].repeat(n, 0), axis=1)
        n_second = second.sum(axis=1, keepdims=True)
        second_value = (n_second - rank) / (n_second + 1.0)
        scores = np.where(second, 1.0 + second_value, freq_value[None, :])
        return np.where(first, 2.0 + freq_value[None, :], scores)


# -------------------------------------------------------------------------------- TagProp
@register_annotator("tagprop")
class TagPropAnnotator(NeighborAnnotator):
    """TagProp (Guillaumin et al., ICCV 2009): weighted neighbour votes learned by maximum
    likelihood, rank- or distance-based, optionally with word-specific sigmoids (sigma-ML).

    Args:
        k: neighbours per image (leave-one-out on training).
        weighting: ``"distance"`` (softmax of ``-w . d`` over the feature distances, ``w >=
            0``) or ``"rank"`` (one weight per neighbour rank).
        word_sigmoids: sigma-ML: ``p = sigmoid(alpha_w x + beta_w)`` per word.
        balance: weight positive and negative labels by ``1/n+`` and ``1/n-``.
        max_iter: L-BFGS-B iterations per stage.
    """

    extra_state = ("n_neighbors_", "fit_info_")

    def __init__(
        self,
        features: str | list[str] = DEFAULT_FEATURES,
        metric: str | list[str] = "cosine",
        k: int = 200,
        weighting: str = "distance",
        word_sigmoids: bool = True,
        balance: bool = True,
        max_iter: int = 200,
        feature_dtype: str = "float32",
        search: str = "exact",
        nlist: int | None = None,
        nprobe: int = 16,
    ) -> None:
        self.k = check_int("k", k, 1)
        if weighting not in ("distance", "rank"):
            raise InvalidInputError("weighting", "'distance' or 'rank'", repr(weighting))
        self.weighting = weighting
        self.word_sigmoids = bool(word_sigmoids)
        self.balance = bool(balance)
        self.max_iter = check_int("max_iter", max_iter, 1)
        self._init_neighbors(features, metric, feature_dtype, search, nlist, nprobe)

    def _distances(self, queries: list[np.ndarray] | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        d, index = self.neighbours(queries, k)
        if len(self.feature_keys) == 1 or self.weighting == "rank":
            return d[:, :, None].astype(np.float64), index
        return self.pair_distances(queries, index), index

    def problem(self) -> TagPropProblem:
        """The training objective on the fitted neighbourhoods (for inspection and tests)."""
        dist, index = self._distances(None, self.n_neighbors_)
        labels = self.train_labels()
        return TagPropProblem(
            Propagation(index, labels),
            Targets.from_labels(labels, self.balance),
            self.weighting,
            None if self.weighting == "rank" else dist,
        )

    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        self.store_training(train)
        if self.n_train < 2:
            raise InvalidInputError("train", "at least 2 items for TagProp", f"{self.n_train}")
        self.n_neighbors_ = min(self.k, self.n_train - 1)
        problem = self.problem()
        w, alpha, beta, info = problem.fit(self.word_sigmoids, self.max_iter)
        self.weights_ = np.asarray(w, dtype=np.float64)
        if self.word_sigmoids:
            self.word_alpha_ = np.asarray(alpha, dtype=np.float64)
            self.word_beta_ = np.asarray(beta, dtype=np.float64)
        self.fit_info_ = info

    def _scores(self, inputs: AnnotationSet) -> np.ndarray:
        dist, index = self._distances(self.input_features(inputs), self.n_neighbors_)
        valid = index >= 0
        if self.weighting == "rank":
            pi = np.where(valid, rank_weights(self.weights_, len(index))[:, : index.shape[1]], 0.0)
        else:
            pi = distance_weights(self.weights_, np.where(valid[..., None], dist, 0.0), valid)
        x = _neighbour_votes(index, pi, self.train_labels())
        alpha = getattr(self, "word_alpha_", None) if self.word_sigmoids else None
        beta = getattr(self, "word_beta_", None) if self.word_sigmoids else None
        return probabilities(x, alpha, beta)


# ---------------------------------------------------------------------------------- 2PKNN
@register_annotator("2pknn")
class TwoPassKNNAnnotator(NeighborAnnotator):
    """2PKNN (Verma & Jawahar, ECCV 2012): per-label semantic neighbourhoods of `k1` images,
    then ``exp(-D / temperature)`` voting over their union.

    Args:
        k1: images per semantic group (label) in pass 1.
        temperature: ``tau`` of pass 2; ``None`` picks it from a grid by leave-one-out
            annotation quality on (up to `tune_items`) training images.
        tune_items: training images used as leave-one-out queries for the temperature.
    """

    extra_state = ("temperature_", "tuning_")

    def __init__(
        self,
        features: str | list[str] = DEFAULT_FEATURES,
        metric: str | list[str] = "cosine",
        k1: int = 5,
        temperature: float | None = None,
        tune_items: int = 2000,
        feature_dtype: str = "float32",
    ) -> None:
        self.k1 = check_int("k1", k1, 1)
        if temperature is not None and not (float(temperature) > 0):
            raise InvalidInputError("temperature", "a number > 0 or None", repr(temperature))
        self.temperature = temperature
        self.tune_items = check_int("tune_items", tune_items, 1)
        self._init_neighbors(features, metric, feature_dtype, "exact", None, 16)

    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        self.store_training(train)
        self._learn_metric()
        self._tune_temperature()

    def _learn_metric(self) -> None:
        """Hook of 2PKNN+ML; plain 2PKNN uses the equally weighted base distance."""

    def _tune_temperature(self) -> None:
        if self.temperature is not None:
            self.temperature_ = float(self.temperature)
            self.tuning_ = {}
            return
        labels = self.train_labels()
        groups = semantic_groups(labels)
        rng = np.random.default_rng(0)
        rows = np.sort(rng.choice(self.n_train, min(self.n_train, self.tune_items), replace=False))
        parts = [
            Neighbourhood.from_selection(semantic_neighbourhoods(dist, groups, self.k1), dist)
            for _, dist in self.distance_blocks(None, rows)
        ]
        hood = Neighbourhood.concatenate(parts)
        tau, criteria = select_temperature(hood, labels, labels[rows])
        self.temperature_ = tau
        self.tuning_ = {"criterion": "LOO mean(C-F1, O-F1)", "values": criteria}

    def semantic_neighbourhoods(self, inputs: AnnotationSet) -> np.ndarray:
        """Pass 1: ``[n_items, n_labels, k1]`` training indices (-1: group too small)."""
        self._check_fitted()
        groups = semantic_groups(self.train_labels())
        parts = [
            semantic_neighbourhoods(dist, groups, self.k1)
            for _, dist in self.distance_blocks(self.input_features(inputs))
        ]
        return np.concatenate(parts) if parts else np.zeros((0, len(groups), self.k1), np.int64)

    def _scores(self, inputs: AnnotationSet) -> np.ndarray:
        labels = self.train_labels()
        groups = semantic_groups(labels)
        out = np.zeros((inputs.n_items, labels.shape[1]))
        for rows, dist in self.distance_blocks(self.input_features(inputs)):
            hood = Neighbourhood.from_selection(
                semantic_neighbourhoods(dist, groups, self.k1), dist
            )
            out[rows] = hood.scores(labels, self.temperature_)
        return out


@register_annotator("2pknn_ml")
class TwoPassKNNMLAnnotator(TwoPassKNNAnnotator):
    """2PKNN+ML: 2PKNN on a learned non-negative combination of distance components.

    Args:
        ml_groups: contiguous dimension groups per feature, one weight each (1: one weight
            per feature, the paper's weights over base distances; ``dim``: a diagonal metric).
        ml_impostors: nearest label-disjoint images per training image in the objective.
        ml_mu: push/pull trade-off of the LMNN-style objective.
        ml_rounds: alternations of (targets and impostors) and (weights).
        ml_anchors: training images whose triplets enter each round (a seeded sample).
        max_iter: L-BFGS-B iterations per round.
    """

    def __init__(
        self,
        features: str | list[str] = DEFAULT_FEATURES,
        metric: str | list[str] = "cosine",
        k1: int = 5,
        temperature: float | None = None,
        tune_items: int = 2000,
        ml_groups: int = 1,
        ml_impostors: int = 10,
        ml_mu: float = 0.5,
        ml_rounds: int = 2,
        ml_anchors: int = 2000,
        max_iter: int = 200,
        feature_dtype: str = "float32",
    ) -> None:
        super().__init__(features, metric, k1, temperature, tune_items, feature_dtype)
        self.ml_groups = check_int("ml_groups", ml_groups, 1)
        self.ml_impostors = check_int("ml_impostors", ml_impostors, 1)
        if not 0.0 <= float(ml_mu) <= 1.0:
            raise InvalidInputError("ml_mu", "a number in [0, 1]", repr(ml_mu))
        self.ml_mu = float(ml_mu)
        self.ml_rounds = check_int("ml_rounds", ml_rounds, 1)
        self.ml_anchors = check_int("ml_anchors", ml_anchors, 1)
        self.max_iter = check_int("max_iter", max_iter, 1)

    # ------------------------------------------------------------------ the metric
    def _bounds(self) -> list[np.ndarray]:
        return [group_bounds(x.shape[1], self.ml_groups) for x in self.train_features()]

    def _dimension_weights(self, f: int, weights: np.ndarray) -> np.ndarray:
        """Feature `f`'s per-dimension weights (scaled by its component scale and F)."""
        bounds = self._bounds()
        offset = sum(len(b) for b in bounds[:f])
        dim = self.train_features()[f].shape[1]
        sizes = np.diff(np.append(bounds[f], dim))
        w = weights[offset : offset + len(bounds[f])]
        return np.repeat(w, sizes) / (self.component_scale_[f] * len(bounds))

    def combined_distances(self, queries: list[np.ndarray], start: int, stop: int) -> np.ndarray:
        weights = getattr(self, "metric_weights_", None)
        if weights is None:
            return super().combined_distances(queries, start, stop)
        total = None
        for f, (q, x, metric) in enumerate(
            zip(queries, self.train_features(), self.metrics, strict=True)
        ):
            x32 = np.asarray(x[start:stop], dtype=np.float32)
            d = weighted_pairwise(q, x32, metric, self._dimension_weights(f, weights))
            total = d if total is None else total + d
        assert total is not None
        return total

    def pair_components(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distance components ``c_fg`` of training pairs ``(a[i], b[i])``: ``[n, C]``."""
        parts = []
        for f, (x, metric, bounds) in enumerate(
            zip(self.train_features(), self.metrics, self._bounds(), strict=True)
        ):
            comp = np.empty((len(a), len(bounds)), dtype=np.float64)
            step = max(1, (1 << 22) // max(1, x.shape[1]))
            for s in range(0, len(a), step):
                terms = elementwise_terms(
                    np.asarray(x[a[s : s + step]], dtype=np.float32),
                    np.asarray(x[b[s : s + step]], dtype=np.float32),
                    metric,
                )
                comp[s : s + step] = np.add.reduceat(terms, bounds, axis=1)
            parts.append(comp / (self.component_scale_[f] * len(self.feature_keys)))
        return np.concatenate(parts, axis=1)

    def _learn_metric(self) -> None:
        x_all = self.train_features()
        self.component_scale_ = np.array(
            [
                self._estimate_scale(x, "sqeuclidean" if m == "l2" else m)
                for x, m in zip(x_all, self.metrics, strict=True)
            ]
        )
        n_components = sum(len(b) for b in self._bounds())
        weights = np.ones(n_components)
        self.metric_weights_ = weights
        labels = self.train_labels()
        groups = semantic_groups(labels)
        rng = np.random.default_rng(0)
        rows = np.sort(rng.choice(self.n_train, min(self.n_train, self.ml_anchors), replace=False))
        self.ml_history_ = []
        if n_components == 1:  # only a scale, which the temperature sets: nothing to learn
            self.ml_history_ = np.zeros(0)
            return
        for _ in range(self.ml_rounds):
            problem = self._triplets(rows, labels, groups)
            weights = problem.solve(weights, self.max_iter)
            self.metric_weights_ = weights
            self.ml_history_.append(float(problem.value_and_grad(weights)[0]))
        self.ml_history_ = np.asarray(self.ml_history_)

    def _triplets(self, rows: np.ndarray, labels: sp.csr_matrix, groups) -> TripletProblem:
        own = labels.tolil().rows
        max_own = max((len(own[r]) for r in rows), default=0)
        t_size = max(1, max_own * self.k1)
        targets = np.full((len(rows), t_size), -1, dtype=np.int64)
        impostors = np.full((len(rows), self.ml_impostors), -1, dtype=np.int64)
        position = 0
        for block, dist in self.distance_blocks(None, rows):
            selected = semantic_neighbourhoods(dist, groups, self.k1)
            share = np.asarray((labels[block] @ labels.T).todense()) > 0
            d_imp, i_imp = smallest(
                np.where(share, np.inf, dist), min(self.ml_impostors, dist.shape[1])
            )
            sl = slice(position, position + len(block))
            impostors[sl, : i_imp.shape[1]] = np.where(np.isfinite(d_imp), i_imp, -1)
            for r, item in enumerate(block):
                chosen = selected[r, own[item]].ravel()
                targets[position + r, : len(chosen)] = chosen
            position += len(block)
        anchors = np.repeat(rows[:, None], t_size, axis=1)
        t_mask = targets >= 0
        i_mask = impostors >= 0
        c_targets = np.zeros(targets.shape + (len(self.metric_weights_),))
        c_impostors = np.zeros(impostors.shape + (len(self.metric_weights_),))
        c_targets[t_mask] = self.pair_components(anchors[t_mask], targets[t_mask])
        anchors_i = np.repeat(rows[:, None], impostors.shape[1], axis=1)
        c_impostors[i_mask] = self.pair_components(anchors_i[i_mask], impostors[i_mask])
        return TripletProblem(c_targets, t_mask, c_impostors, i_mask, self.ml_mu)


# --------------------------------------------------------------------------------- ML-kNN
@register_annotator("mlknn")
class MLKNNAnnotator(NeighborAnnotator):
    """ML-kNN (Zhang & Zhou, Pattern Recognition 2007): per label, the Bayesian posterior
    of the label given how many of the `k` neighbours carry it, with Laplace `smoothing`."""

    def __init__(
        self,
        features: str | list[str] = DEFAULT_FEATURES,
        metric: str | list[str] = "cosine",
        k: int = 10,
        smoothing: float = 1.0,
        feature_dtype: str = "float32",
        search: str = "exact",
        nlist: int | None = None,
        nprobe: int = 16,
    ) -> None:
        self.k = check_int("k", k, 1)
        if not float(smoothing) >= 0:
            raise InvalidInputError("smoothing", "a number >= 0", repr(smoothing))
        self.smoothing = float(smoothing)
        self._init_neighbors(features, metric, feature_dtype, search, nlist, nprobe)

    def _counts(self, queries: list[np.ndarray] | None, k: int) -> np.ndarray:
        _, index = self.neighbours(queries, k)
        return _neighbour_votes(index, np.ones(index.shape), self.train_labels()).astype(np.int64)

    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        self.store_training(train)
        if self.n_train < 2:
            raise InvalidInputError("train", "at least 2 items for ML-kNN", f"{self.n_train}")
        k = min(self.k, self.n_train - 1)
        s = self.smoothing
        y = self.train_labels().toarray() > 0
        counts = self._counts(None, k)
        n, n_labels = y.shape
        self.prior_ = (s + y.sum(axis=0)) / (2 * s + n)
        cells = np.arange(n_labels)[None, :] * (k + 1) + counts
        size = n_labels * (k + 1)
        with_label = np.bincount(cells[y], minlength=size).reshape(n_labels, k + 1)
        without = np.bincount(cells[~y], minlength=size).reshape(n_labels, k + 1)
        self.likelihood_pos_ = (s + with_label) / (
            s * (k + 1) + with_label.sum(axis=1, keepdims=True)
        )
        self.likelihood_neg_ = (s + without) / (s * (k + 1) + without.sum(axis=1, keepdims=True))

    def _scores(self, inputs: AnnotationSet) -> np.ndarray:
        k = self.likelihood_pos_.shape[1] - 1
        counts = self._counts(self.input_features(inputs), k)
        labels = np.arange(counts.shape[1])[None, :]
        pos = self.prior_[None, :] * self.likelihood_pos_[labels, counts]
        neg = (1 - self.prior_[None, :]) * self.likelihood_neg_[labels, counts]
        total = pos + neg
        return np.divide(pos, total, out=np.zeros_like(pos), where=total > 0)
