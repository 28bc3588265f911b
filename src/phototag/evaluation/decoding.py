"""Decoders turn a score matrix into label sets.

Every decoder maps float scores ``[n_images, n_labels]`` (higher = more relevant) to a
boolean matrix of the same shape. Ties are broken deterministically: among equal
scores the label with the lower id wins, so the same scores always give the same sets.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from phototag.errors import InvalidInputError, check_float, check_int
from phototag.evaluation.predictions import Prediction


def _check_scores(scores: np.ndarray, argument: str = "scores") -> np.ndarray:
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise InvalidInputError(argument, "a 2-D array [n_images, n_labels]", f"{scores.ndim}-D")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float32)
    if not np.isfinite(scores).all():
        bad = np.argwhere(~np.isfinite(scores))[0]
        raise InvalidInputError(
            argument,
            "finite scores",
            f"{scores[tuple(bad)]} at row {bad[0]}, column {bad[1]}",
            "Replace NaN/inf scores before decoding.",
        )
    return scores


def top_m(scores: np.ndarray, m: np.ndarray | int) -> np.ndarray:
    """Boolean mask of each row's `m[i]` highest scores (lower label id wins ties).

    `m` is one count for every row or one per row; counts are clipped to ``[0, n_labels]``.
    Runs in O(n_images x n_labels) without sorting rows.
    """
    scores = _check_scores(scores)
    n, n_labels = scores.shape
    m = np.clip(np.broadcast_to(np.asarray(m, dtype=np.int64), (n,)), 0, n_labels)
    mask = np.zeros(scores.shape, dtype=bool)
    for k in np.unique(m):
        if k == 0:
            continue
        rows = np.flatnonzero(m == k)
        block = scores[rows]
        kth = np.partition(block, n_labels - k, axis=1)[:, n_labels - k][:, None]
        above = block > kth
        ties = block == kth
        needed = k - above.sum(axis=1, keepdims=True)
        mask[rows] = above | (ties & (np.cumsum(ties, axis=1) <= needed))
    return mask


class Decoder(ABC):
    """Scores -> label sets. Subclasses are small frozen dataclasses saved as JSON."""

    name: ClassVar[str]

    @abstractmethod
    def decode(self, scores: np.ndarray, quantities: np.ndarray | None = None) -> np.ndarray:
        """Boolean ``[n_images, n_labels]`` label sets for `scores`."""

    def decode_prediction(self, prediction: Prediction) -> np.ndarray:
        """Boolean label sets for a model's `Prediction`: from its scores (and
        quantities); `OwnLabelSets` keeps the sets the model chose itself."""
        if prediction.scores is None:
            raise InvalidInputError(
                "prediction", f"scores for the {self.name!r} decoder", "label sets only"
            )
        return self.decode(prediction.scores, prediction.quantities)

    def to_config(self) -> dict[str, Any]:
        config = asdict(self)  # type: ignore[call-overload]
        for key, value in config.items():
            if isinstance(value, np.ndarray):
                config[key] = value.tolist()
        return {"name": self.name, **config}


@dataclass(frozen=True)
class TopK(Decoder):
    """The `k` best-scoring labels of every image (the fixed-length protocol of the papers)."""

    k: int = 5
    name: ClassVar[str] = "top_k"

    def __post_init__(self) -> None:
        check_int("k", self.k, 1)

    def decode(self, scores: np.ndarray, quantities: np.ndarray | None = None) -> np.ndarray:
        return top_m(scores, self.k)


@dataclass(frozen=True)
class Threshold(Decoder):
    """Every label whose score is >= `threshold`."""

    threshold: float = 0.5
    name: ClassVar[str] = "threshold"

    def decode(self, scores: np.ndarray, quantities: np.ndarray | None = None) -> np.ndarray:
        return _check_scores(scores) >= self.threshold


@dataclass(frozen=True)
class LabelThresholds(Decoder):
    """One threshold per label, usually from `calibrate` on validation data; with
    `max_labels`, at most that many labels per image (the best-scoring that pass)."""

    thresholds: np.ndarray
    max_labels: int | None = None
    name: ClassVar[str] = "label_thresholds"

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", np.asarray(self.thresholds, dtype=np.float64))
        if self.max_labels is not None:
            check_int("max_labels", self.max_labels, 1)

    def decode(self, scores: np.ndarray, quantities: np.ndarray | None = None) -> np.ndarray:
        scores = _check_scores(scores)
        if scores.shape[1] != len(self.thresholds):
            raise InvalidInputError(
                "scores",
                f"{len(self.thresholds)} columns (one per threshold)",
                f"{scores.shape[1]}",
            )
        passing = scores >= self.thresholds[None, :]
        if self.max_labels is None or not scores.size:
            return passing
        ranked = np.where(passing, scores, scores.min() - 1.0)
        return top_m(ranked, self.max_labels) & passing

    @classmethod
    def calibrate(
        cls,
        y_true: np.ndarray | sp.spmatrix,
        y_score: np.ndarray,
        fallback: float = np.inf,
        *,
        min_precision: float | None = None,
        min_correct: int = 2,
        max_labels: int | None = None,
    ) -> LabelThresholds:
        """Per label, the threshold that maximises that label's F1 on validation data;
        with `min_precision`, the lowest threshold whose precision reaches it with at
        least `min_correct` right predictions (the most keywords that are right often
        enough; none: `fallback`).

        The threshold is placed halfway between the last accepted score and the next
        lower one, so slightly different test scores decode the same way. Labels with
        no positives in `y_true` get `fallback` (default: never predicted). Among equal
        F1 values the highest threshold (fewest predictions) wins.
        """
        y_score = _check_scores(y_score, "y_score")
        y_true = y_true.toarray() if sp.issparse(y_true) else np.asarray(y_true)
        if y_true.shape != y_score.shape:
            raise InvalidInputError("y_true", f"shape {y_score.shape}", f"{y_true.shape}")
        if min_precision is not None:
            check_float("min_precision", min_precision, 0.0, maximum=1.0)
            check_int("min_correct", min_correct, 1)
        thresholds = np.full(y_score.shape[1], fallback, dtype=np.float64)
        for j in range(y_score.shape[1]):
            thresholds[j] = label_threshold(
                y_true[:, j].astype(bool), y_score[:, j], fallback, min_precision, min_correct
            )
        return cls(thresholds, max_labels)


def label_threshold(
    positive: np.ndarray,
    score: np.ndarray,
    fallback: float,
    min_precision: float | None,
    min_correct: int,
) -> float:
    """One label's threshold (see `LabelThresholds.calibrate`): the cut of its `score`s
    with the best F1 against `positive`, or with `min_precision` the lowest cut whose
    precision reaches it with at least `min_correct` right; `fallback` when none."""
    n_positive = int(positive.sum())
    if n_positive == 0:
        return fallback
    order = np.argsort(-score, kind="stable")
    sorted_score = score[order].astype(np.float64)
    true_positives = np.cumsum(positive[order])
    # only cut between distinct scores: a threshold cannot separate tied items
    last_of_run = np.flatnonzero(np.r_[sorted_score[1:] != sorted_score[:-1], True])
    tp = true_positives[last_of_run]
    predicted = last_of_run + 1
    if min_precision is None:
        best = int(np.argmax(2 * tp / (predicted + n_positive)))  # first max: highest cut
    else:
        precise = np.flatnonzero((tp >= min_precision * predicted) & (tp >= min_correct))
        if not len(precise):
            return fallback
        best = int(precise[-1])  # the lowest cut that is still precise enough
    cut = last_of_run[best]
    if cut + 1 < len(sorted_score):
        return float((sorted_score[cut] + sorted_score[cut + 1]) / 2)
    return float(np.nextafter(sorted_score[cut], -np.inf))


@dataclass(frozen=True)
class Quantity(Decoder):
    """The top ``round(q_i)`` labels of image `i`, `q_i` given or predicted by a model.

    Rounding is half up (``floor(q + 0.5)``), then clipped to ``[minimum, n_labels]``.
    """

    minimum: int = 1
    name: ClassVar[str] = "quantity"

    def decode(self, scores: np.ndarray, quantities: np.ndarray | None = None) -> np.ndarray:
        scores = _check_scores(scores)
        if quantities is None:
            raise InvalidInputError(
                "quantities",
                "one label count per image",
                "none",
                "Use a model that predicts label quantities, or another decoder.",
            )
        quantities = np.asarray(quantities, dtype=np.float64).reshape(-1)
        if len(quantities) != len(scores):
            raise InvalidInputError("quantities", f"{len(scores)} values", f"{len(quantities)}")
        m = np.floor(quantities + 0.5).astype(np.int64)
        return top_m(scores, np.maximum(m, self.minimum))


@dataclass(frozen=True)
class OwnLabelSets(Decoder):
    """The label sets a model chose itself (`Prediction.label_sets`): the default
    decoder of sequence models that stop at an end token (CNN-RNN, JVSP)."""

    name: ClassVar[str] = "own_label_sets"

    def decode(self, scores: np.ndarray, quantities: np.ndarray | None = None) -> np.ndarray:
        raise InvalidInputError(
            "decoder", "a model's Prediction with label sets (decode_prediction)",
            "scores alone", "Use another decoder for scores, e.g. top-k",
        )  # fmt: skip

    def decode_prediction(self, prediction: Prediction) -> np.ndarray:
        if prediction.label_sets is None:
            raise InvalidInputError(
                "prediction", "label sets chosen by the model", "scores only",
                "This model does not choose its own label sets: use another decoder",
            )  # fmt: skip
        return np.asarray(prediction.label_sets, dtype=bool)


DECODERS: dict[str, type[Decoder]] = {
    d.name: d for d in (TopK, Threshold, LabelThresholds, Quantity, OwnLabelSets)
}


def decoder_from_config(config: dict[str, Any]) -> Decoder:
    """Inverse of `Decoder.to_config`."""
    config = dict(config)
    name = config.pop("name", None)
    if name not in DECODERS:
        raise InvalidInputError("decoder", f"one of {sorted(DECODERS)}", repr(name))
    return DECODERS[name](**config)


def parse_protocol(protocol: str) -> Decoder:
    """``top5``, ``top3``, ``topK``, ``threshold:T`` or ``quantity`` as a decoder."""
    text = protocol.strip().lower()
    try:
        if text.startswith("top") and text[3:].isdigit():
            return TopK(int(text[3:]))
        if text.startswith("threshold:"):
            return Threshold(float(text.partition(":")[2]))
    except ValueError:
        pass
    if text == "quantity":
        return Quantity()
    raise InvalidInputError(
        "--protocol",
        "topK (e.g. top5), threshold:T (e.g. threshold:0.5) or quantity",
        repr(protocol),
    )
