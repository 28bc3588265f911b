"""Hyperparameter selection by k-fold cross-validation on the training split only.

Generic over models (a `ScoringModel`, such as any `Annotator`): the model built by
``model_factory(**params)`` is fitted on k - 1 folds and scored on the held-out fold with
the metric suite of `phototag.evaluation.metrics`; the test split is never touched.

>>> from phototag.models import create_annotator
>>> result = select_by_cv(  # doctest: +SKIP
...     lambda **p: create_annotator("cca_knn", features="arff", **p),
...     {"k": [4, 8], "sigma": [0.1, 1.0]},
...     train,
...     metric="f1",
... )
>>> result.best_params  # doctest: +SKIP
{'k': 8, 'sigma': 0.1}
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from phototag.data import AnnotationSet
from phototag.errors import InvalidInputError, check_int
from phototag.evaluation.decoding import Decoder, TopK
from phototag.evaluation.metrics import REPORT_KEYS, annotation_report
from phototag.evaluation.protocols import ScoringModel

__all__ = ["CVResult", "METRIC_ALIASES", "cv_folds", "parameter_grid", "select_by_cv"]

METRIC_ALIASES: dict[str, str] = {
    "f1": "C-F1",
    "precision": "C-P",
    "recall": "C-R",
    "n_plus": "N+",
    "map": "mAP_label",
}
"""Short metric names -> keys of `phototag.evaluation.metrics.annotation_report`."""

Metric = str | Callable[[Any, np.ndarray], float]


@dataclass(frozen=True)
class CVResult:
    """Outcome of `select_by_cv`.

    Attributes:
        best_params: the grid point with the best mean validation score (first in grid
            order among equals).
        best_score: its mean over the folds.
        metric: the metric's name (report key, or the callable's ``__name__``).
        higher_is_better: False for ``*_loss`` metrics.
        results: one entry per grid point, in grid order: ``params``, ``mean``, ``std``,
            ``folds`` (per-fold scores) and ``seconds`` (fit + score time, all folds).
    """

    best_params: dict[str, Any]
    best_score: float
    metric: str
    higher_is_better: bool
    results: list[dict[str, Any]] = field(default_factory=list)


def parameter_grid(
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]],
) -> list[dict[str, Any]]:
    """All combinations of a ``{name: values}`` grid (or of each grid of a list), in order."""
    grids = [grid] if isinstance(grid, Mapping) else list(grid)
    points: list[dict[str, Any]] = []
    for g in grids:
        if not isinstance(g, Mapping):
            raise InvalidInputError("grid", "a {name: [values]} mapping or a list of them", repr(g))
        names = list(g)
        for name in names:
            values = g[name]
            if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
                raise InvalidInputError(
                    f"grid[{name!r}]", "a non-empty list of values", repr(values)
                )
        for combo in itertools.product(*(g[name] for name in names)):
            points.append(dict(zip(names, combo, strict=True)))
    return points


def cv_folds(n_items: int, n_folds: int = 3, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(fit_indices, held_out_indices)`` of a seeded random k-fold split, both sorted."""
    check_int("n_folds", n_folds, 2)
    if n_items < n_folds:
        raise InvalidInputError("train", f"at least n_folds={n_folds} items", f"{n_items}")
    order = np.random.default_rng(seed).permutation(n_items)
    parts = np.array_split(order, n_folds)
    return [
        (np.sort(np.concatenate(parts[:i] + parts[i + 1 :])), np.sort(parts[i]))
        for i in range(n_folds)
    ]


def _metric(metric: Metric) -> tuple[str, Callable[[Any, np.ndarray, np.ndarray], float], bool]:
    """(name, fn(y_true, y_pred, y_score), higher_is_better)."""
    if callable(metric):
        name = getattr(metric, "__name__", "metric")
        return name, lambda y_true, y_pred, y_score: float(metric(y_true, y_score)), True
    key = METRIC_ALIASES.get(metric, metric)
    if key not in REPORT_KEYS:
        choices = ", ".join([*METRIC_ALIASES, *REPORT_KEYS])
        raise InvalidInputError(
            "metric", f"one of {choices}, or a callable(y_true, y_score)", repr(metric)
        )
    needs_scores = key.startswith("mAP")

    def compute(y_true: Any, y_pred: np.ndarray, y_score: np.ndarray) -> float:
        report = annotation_report(y_true, y_pred, y_score if needs_scores else None)
        return float(report[key])

    return key, compute, not key.endswith("_loss")


def select_by_cv(
    model_factory: Callable[..., ScoringModel],
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]],
    train: AnnotationSet,
    *,
    n_folds: int = 3,
    metric: Metric = "f1",
    decoder: Decoder | None = None,
    seed: int = 0,
    score_only: Collection[str] = (),
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> CVResult:
    """Pick the grid point whose models score best on held-out folds of `train`.

    Args:
        model_factory: ``model_factory(**params)`` returns a new unfitted `Annotator`
            (a registered class, or ``lambda **p: create_annotator(name, **fixed, **p)``).
        grid: ``{name: [values, ...]}`` (all combinations) or a list of such grids.
        train: the training split; it is split into `n_folds` seeded random folds.
        metric: a key of `phototag.evaluation.metrics.annotation_report` (``"C-F1"``, ``"O-F1"``,
            ``"N+"``, ``"mAP_label"``, ...), an alias (``"f1"`` = C-F1, ``"precision"``,
            ``"recall"``, ``"n_plus"``, ``"map"``), or ``callable(y_true, y_score) ->
            float`` (higher is better). ``*_loss`` keys are minimised.
        decoder: turns scores into label sets for set metrics (default top-5).
        seed: seed of the fold split (the same folds for every grid point).
        score_only: grid parameters that only `scores` reads, not `fit` (e.g. ``k`` and
            ``sigma`` of a neighbour vote). Points differing only in these share one fit
            per fold: the fitted model is cloned with each point's values
            (``clone(keep_state=True, ...)``), so each point is still validated.
        progress: called with each grid point's result entry as it completes.

    Returns a `CVResult`; entry ``seconds`` counts a shared fit on the first point using it.
    """
    name, compute, higher = _metric(metric)
    decoder = decoder or TopK(5)
    if isinstance(score_only, str):
        score_only = (score_only,)
    score_only = frozenset(score_only)
    points = parameter_grid(grid)
    folds = cv_folds(train.n_items, n_folds, seed)
    subsets = [(train.subset(a), train.subset(b)) for a, b in folds]
    groups: dict[str, list[int]] = {}
    for i, params in enumerate(points):
        fit_params = {k: v for k, v in params.items() if k not in score_only}
        groups.setdefault(repr(sorted(fit_params.items())), []).append(i)
    results: list[dict[str, Any] | None] = [None] * len(points)
    for members in groups.values():
        fitted: list[ScoringModel | None] = [None] * len(subsets)
        for i in members:
            params = points[i]
            start = time.perf_counter()
            scores = []
            for f, (fit_part, held_out) in enumerate(subsets):
                first = fitted[f]
                if first is None:
                    model = fitted[f] = model_factory(**params).fit(fit_part)
                elif score_only:
                    scoring = {k: v for k, v in params.items() if k in score_only}
                    model = first.clone(keep_state=True, **scoring)
                else:
                    model = model_factory(**params).fit(fit_part)
                y_score = model.scores(held_out)
                scores.append(compute(held_out.labels, decoder.decode(y_score), y_score))
            entry = {
                "params": dict(params),
                "mean": float(np.mean(scores)),
                "std": float(np.std(scores)),
                "folds": [float(s) for s in scores],
                "seconds": time.perf_counter() - start,
            }
            results[i] = entry
            if progress is not None:
                progress(entry)
    done = [r for r in results if r is not None]
    means = np.array([r["mean"] for r in done])
    best = int(np.argmax(means) if higher else np.argmin(means))
    return CVResult(
        best_params=dict(done[best]["params"]),
        best_score=done[best]["mean"],
        metric=name,
        higher_is_better=higher,
        results=done,
    )
