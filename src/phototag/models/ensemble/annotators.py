"""Late fusion of several annotators, with a rare-word correction chosen on held-out folds.

Each member's scores are rescaled per photo to [0, 1] (min-max), mixed with one weight
per member, and divided by ``(n_w + 1) ** prior_exponent``, where ``n_w`` counts the
training photos labelled with word ``w``: an exponent above 0 lifts rare words, which
frequency-driven neighbour votes and classifiers under-predict (the N+ count of words
ever predicted correctly rises with it). The weights and the exponent are chosen by
k-fold cross-validation on the training data alone: every member is fitted on k - 1
folds and scores the remaining one, and the grid point whose fused out-of-fold scores
give the best F1 of the top ``top_k`` labels (`metric`, C-F1 by default) wins. The
members are then refitted on all the training data. Finally one logistic curve
``sigmoid(a * fused + b)``, fitted to the out-of-fold scores, turns the fused score into
a probability; it is the same for every word, so it never changes the ranking. Given
``fit(train, valid)``, the members are fitted once on `train` and `valid` takes the
place of the folds.
"""

from __future__ import annotations

import inspect
import itertools
import operator
from collections.abc import Mapping, Sequence
from functools import reduce
from typing import Any

import numpy as np

from phototag.data import AnnotationSet
from phototag.data.inputs import ModelInputs
from phototag.errors import InvalidInputError, check_choice, check_float, check_int
from phototag.evaluation.decoding import TopK
from phototag.evaluation.metrics import annotation_report
from phototag.models.base import Annotator
from phototag.models.knn.tagprop import Targets, fit_word_sigmoids
from phototag.models.registry import annotator_class, create_annotator, register_annotator

#: Candidate member weights (each point of the grid has at least one weight 1: only
#: ratios matter) and rare-word exponents searched when they are not given.
WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
EXPONENT_GRID = (0.0, 0.1, 0.2, 0.3, 0.4)
SELECTION_METRICS = ("C-F1", "O-F1", "I-F1", "H-F1")
_MEMBER_PREFIX = "members."


def rescaled(scores: np.ndarray) -> np.ndarray:
    """Each row of `scores` mapped linearly onto [0, 1] (constant rows to 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    low = scores.min(axis=1, keepdims=True)
    span = scores.max(axis=1, keepdims=True) - low
    return np.divide(scores - low, span, out=np.zeros_like(scores), where=span > 0)


def fit_logistic(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(a >= 0, b)`` maximising the likelihood of binary `y` under ``sigmoid(a * x + b)``
    (TagProp's per-word Newton solver, `fit_word_sigmoids`, on all cells as one word,
    with a small ridge for separable data)."""
    y = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    x = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    targets = Targets(y, np.flatnonzero(y), 1.0, 1.0)
    a, b = fit_word_sigmoids(x, targets, np.zeros(1), np.zeros(1), ridge=1e-6)
    return float(a[0]), float(b[0])


@register_annotator("ensemble")
class EnsembleAnnotator(Annotator):
    """Late fusion of member models, weights and rare-word exponent chosen on held-out data.

    Args:
        members: one mapping per member, ``{"model": NAME, **its parameters}``, e.g.
            ``[{"model": "2pknn"}, {"model": "cca"}, {"model": "linear"}]`` (the default).
        features: feature key given to every member that takes features and names none.
        weights: one weight per member; None = chosen by cross-validation.
        prior_exponent: the rare-word exponent; None = chosen by cross-validation.
        n_folds: folds of the cross-validation (also used for the calibration).
        top_k: labels per photo of the F1 that chooses the weights and the exponent.
        metric: that F1 (`phototag.evaluation.metrics.annotation_report` key): ``"C-F1"``, the
            per-word mean of the research benchmarks, rewards predicting rare words and
            so picks larger exponents; ``"O-F1"`` (over all predicted tags) keeps each
            photo's suggestions precise (docs/models/ensemble.md compares them).
        seed: seed of the fold split.
    """

    def __init__(
        self,
        members: Sequence[Mapping[str, Any]] = (
            {"model": "2pknn"},
            {"model": "cca"},
            {"model": "linear"},
        ),
        features: str | None = None,
        weights: Sequence[float] | None = None,
        prior_exponent: float | None = None,
        n_folds: int = 3,
        top_k: int = 5,
        metric: str = "C-F1",
        seed: int = 0,
    ) -> None:
        self.members = [_member_spec(spec, i) for i, spec in enumerate(members)]
        if not self.members:
            raise InvalidInputError("members", "at least one member model", "none")
        self.features = features
        if weights is not None:
            expected = f"{len(self.members)} non-negative numbers, not all 0"
            if isinstance(weights, str) or len(weights) != len(self.members):
                raise InvalidInputError("weights", expected, repr(weights))
            weights = [check_float("weights", w, 0.0, strict=False) for w in weights]
            if max(weights) == 0:
                raise InvalidInputError("weights", expected, repr(weights))
        self.weights = weights
        if prior_exponent is not None:
            prior_exponent = check_float("prior_exponent", prior_exponent, 0.0, strict=False)
        self.prior_exponent = prior_exponent
        self.n_folds = check_int("n_folds", n_folds, 2)
        self.top_k = check_int("top_k", top_k, 1)
        self.metric = check_choice("metric", metric, SELECTION_METRICS)
        self.seed = check_int("seed", seed, 0)

    # ------------------------------------------------------------------ members
    def _new_members(self, indices: Sequence[int] | None = None) -> list[Annotator]:
        """Unfitted members (those at `indices`, default all)."""
        shared = {} if self.features is None else {"features": self.features}
        members = []
        for i in range(len(self.members)) if indices is None else indices:
            spec = self.members[i]
            params = {k: v for k, v in spec.items() if k != "model"}
            if "features" in inspect.signature(annotator_class(spec["model"])).parameters:
                params = {**shared, **params}
            members.append(create_annotator(spec["model"], **params))
        return members

    def required_inputs(self, training: bool = False) -> ModelInputs:
        """What its members read, together."""
        members = self.members_ if hasattr(self, "members_") else self._new_members()
        inputs = (member.required_inputs(training) for member in members)
        return reduce(operator.or_, inputs)

    # --------------------------------------------------------------- fit / score
    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        from phototag.evaluation.model_selection import cv_folds

        if valid is not None:  # members fitted once; `valid` chooses and calibrates
            fitted = [member.fit(train) for member in self._new_members()]
            held_out = [rescaled(member.scores(valid)) for member in fitted]
            target = valid
        else:
            held_out = [np.zeros(train.labels.shape) for _ in self.members]
            for fit_rows, score_rows in cv_folds(train.n_items, self.n_folds, self.seed):
                part, rest = train.subset(fit_rows), train.subset(score_rows)
                for member, out in zip(self._new_members(), held_out, strict=True):
                    out[score_rows] = rescaled(member.fit(part).scores(rest))
            target = train
        counts = train.label_frequencies().astype(np.float64) + 1.0
        weights, exponent, f1 = self._choose(held_out, counts, target.labels)
        self.active_ = np.flatnonzero(np.asarray(weights) > 0)
        self.weights_ = np.asarray(weights, dtype=np.float32)[self.active_]
        self.prior_exponent_ = exponent
        self.selection_score_ = f1
        self.label_weight_ = (counts**-exponent).astype(np.float32)
        fused = self._fuse([held_out[i] for i in self.active_])
        self.calibration_ = np.asarray(fit_logistic(fused, target.labels.toarray()), np.float32)
        if valid is not None:
            self.members_ = [fitted[i] for i in self.active_]
        else:
            self.members_ = [member.fit(train) for member in self._new_members(self.active_)]

    def _choose(
        self, held_out: list[np.ndarray], counts: np.ndarray, labels: Any
    ) -> tuple[list[float], float, float]:
        """The (weights, exponent) grid point with the best held-out `metric`, and it."""
        if self.weights is not None:
            weight_points = [list(self.weights)]
        elif len(self.members) == 1:
            weight_points = [[1.0]]
        else:
            grid = itertools.product(WEIGHT_GRID, repeat=len(self.members))
            weight_points = [list(w) for w in grid if max(w) == 1.0]
        exponents = EXPONENT_GRID if self.prior_exponent is None else (self.prior_exponent,)
        decoder = TopK(self.top_k)
        best: tuple[float, list[float], float] = (-1.0, weight_points[0], exponents[0])
        for weights in weight_points:
            mixed = sum(w * s for w, s in zip(weights, held_out, strict=True) if w > 0)
            for exponent in exponents:
                fused = mixed * counts**-exponent
                f1 = float(annotation_report(labels, decoder.decode(fused), None)[self.metric])
                if f1 > best[0]:
                    best = (f1, weights, exponent)
        return best[1], best[2], best[0]

    def _fuse(self, member_scores: list[np.ndarray]) -> np.ndarray:
        """The active members' rescaled scores mixed and divided by the label prior."""
        mixed = sum(w * s for w, s in zip(self.weights_, member_scores, strict=True))
        return mixed * self.label_weight_

    def _scores(self, inputs: AnnotationSet) -> np.ndarray:
        fused = self._fuse([rescaled(member.scores(inputs)) for member in self.members_])
        a, b = self.calibration_
        return 1.0 / (1.0 + np.exp(-np.clip(a * fused + b, -60.0, 60.0)))

    # ------------------------------------------------------------- persistence
    def state_arrays(self) -> dict[str, np.ndarray]:
        arrays = super().state_arrays()
        for i, member in zip(self.active_, self.members_, strict=True):
            for key, value in member.state_arrays().items():
                arrays[f"{_MEMBER_PREFIX}{i}.{key}"] = value
        return arrays

    def state_json(self) -> dict[str, Any]:
        return {
            "prior_exponent_": self.prior_exponent_,
            "selection_score_": self.selection_score_,
            "member_states": [member.state_json() for member in self.members_],
        }

    def set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        state = dict(state)
        member_states = state.pop("member_states")
        own = {k: v for k, v in arrays.items() if not k.startswith(_MEMBER_PREFIX)}
        super().set_state(state, own)
        self.members_ = self._new_members(self.active_)
        for i, member, member_state in zip(self.active_, self.members_, member_states, strict=True):
            prefix = f"{_MEMBER_PREFIX}{i}."
            member.vocabulary_ = self.vocabulary_
            member.decoder_ = self.decoder_
            member.set_state(
                member_state,
                {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)},
            )


def _member_spec(spec: Any, index: int) -> dict[str, Any]:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("model"), str):
        raise InvalidInputError(
            f"members[{index}]", 'a mapping {"model": NAME, ...parameters}', repr(spec)
        )
    return dict(spec)
