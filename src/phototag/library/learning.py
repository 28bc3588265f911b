"""Learning a user's own vocabulary from the photos they already tagged.

Labels used on too few photos are dropped, a validation split is held out from the
tagged photos (stratified so rare labels appear on both sides), the model is fitted on
the rest, per-label thresholds are calibrated on the validation split and become the
model's decoder, and a report says how each label does and which labels were dropped.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse as sp

from phototag.data import AnnotationSet, Vocabulary
from phototag.errors import InvalidInputError, PhototagError, check_int
from phototag.evaluation.decoding import LabelThresholds
from phototag.models.base import Annotator


@dataclass(frozen=True)
class DroppedLabel:
    """A label left out of training, and why."""

    label: str
    photos: int
    reason: str


@dataclass(frozen=True)
class LabelResult:
    """One label on the validation split, decoded with its calibrated threshold."""

    label: str
    train_photos: int
    valid_photos: int
    threshold: float
    predicted: int = 0  # validation photos the label was predicted for
    correct: int = 0  # ... of which have it
    note: str = ""

    @property
    def precision(self) -> float | None:
        """None when the label was never predicted."""
        return self.correct / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        """None when no validation photo has the label."""
        return self.correct / self.valid_photos if self.valid_photos else None


@dataclass
class TrainingReport:
    """What `fit_on_library` did: sizes, per-label validation results, dropped labels."""

    train_photos: int
    valid_photos: int
    unused_photos: int
    labels: list[LabelResult] = field(default_factory=list)
    dropped: list[DroppedLabel] = field(default_factory=list)
    #: Micro F1 on the validation split of the model, and of always suggesting the
    #: training photos' most common keywords (as many as a photo has on average).
    f1: float | None = None
    most_common_f1: float | None = None
    warnings: list[str] = field(default_factory=list)

    def micro(self) -> tuple[float | None, float | None]:
        """Precision and recall over all validation decisions (counts pooled)."""
        correct = sum(r.correct for r in self.labels)
        predicted = sum(r.predicted for r in self.labels)
        relevant = sum(r.valid_photos for r in self.labels)
        return (correct / predicted if predicted else None,
                correct / relevant if relevant else None)  # fmt: skip

    def format(self) -> str:
        """A plain-text report for the terminal."""

        def number(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        lines = [f"photos: {self.train_photos} to train, {self.valid_photos} to validate"
                 + (f", {self.unused_photos} unused (only dropped labels)"
                    if self.unused_photos else "")]  # fmt: skip
        if self.labels and self.valid_photos:
            precision, recall = self.micro()
            lines.append(f"validation (thresholds calibrated on it, so optimistic): "
                         f"precision {number(precision)}, recall {number(recall)}")  # fmt: skip
        width = max([len(r.label) for r in self.labels] + [5])
        lines.append(f"{'label':<{width}}  train  valid  threshold  precision  recall  note")
        for r in self.labels:
            lines.append(f"{r.label:<{width}}  {r.train_photos:>5}  {r.valid_photos:>5}  "
                         f"{r.threshold:>9.4f}  {number(r.precision):>9}  "
                         f"{number(r.recall):>6}  {r.note}".rstrip())  # fmt: skip
        if self.dropped:
            lines.append(f"dropped {len(self.dropped)} label{'s' * (len(self.dropped) != 1)}:")
            lines += [f"  {d.label}: {d.reason}" for d in self.dropped]
        lines += [f"warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)

    def to_json(self) -> str:
        data = asdict(self)
        for row, result in zip(data["labels"], self.labels, strict=True):
            row.update(precision=result.precision, recall=result.recall)
            if math.isnan(row["threshold"]):
                row["threshold"] = None
        return json.dumps(data, indent=2, ensure_ascii=False)


class UselessModelError(PhototagError):
    """The fitted model gives every photo the same keywords: it is not saved."""


def keep_labels(data: AnnotationSet, keep: np.ndarray) -> AnnotationSet:
    """`data` with only the label columns where `keep` is true."""
    columns = np.flatnonzero(keep)
    return AnnotationSet(
        name=data.name,
        item_ids=data.item_ids,
        vocabulary=Vocabulary([data.vocabulary[int(j)] for j in columns]),
        labels=data.labels[:, columns],
        image_paths=data.image_paths,
        tag_vocabulary=data.tag_vocabulary,
        user_tags=data.user_tags,
        features=data.features,
        metadata=data.metadata,
        splits=data.splits,
        notes=data.notes,
    )


def drop_rare_labels(
    data: AnnotationSet, min_count: int
) -> tuple[AnnotationSet, list[DroppedLabel]]:
    """Labels on fewer than `min_count` photos removed, with the reason for each."""
    counts = data.label_frequencies()
    keep = counts >= min_count

    def reason(n: int) -> str:
        return f"too rare: on {n} photo{'s' * (n != 1)}, fewer than --min-label-count {min_count}"

    dropped = [DroppedLabel(data.vocabulary[j], int(counts[j]), reason(int(counts[j])))
               for j in np.flatnonzero(~keep)]  # fmt: skip
    return keep_labels(data, keep), dropped


def stratified_split(labels: sp.csr_matrix, fraction: float, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Train and validation item indices, about `fraction` of each label's items held out.

    Labels are visited rarest first (iterative stratification); each takes
    ``round(fraction * count)`` validation items among its unassigned ones, always
    leaving at least one of its items for training.
    """
    if not 0 <= fraction < 1:
        raise InvalidInputError("--validation-fraction", "a fraction in [0, 1)", repr(fraction))
    labels = sp.csc_matrix(labels, dtype=bool)
    n_items = labels.shape[0]
    rng = np.random.default_rng(seed)
    side = np.full(n_items, -1, dtype=np.int8)  # -1 unassigned, 0 train, 1 validation
    counts = np.diff(labels.indptr)
    for j in np.argsort(counts, kind="stable"):
        items = labels.indices[labels.indptr[j] : labels.indptr[j + 1]]
        if not len(items):
            continue
        assigned = side[items]
        free = rng.permutation(items[assigned < 0])
        want = round(fraction * len(items)) - int((assigned == 1).sum())
        if not (assigned == 0).any():
            want = min(want, len(free) - 1)
        want = max(0, min(want, len(free)))
        side[free[:want]] = 1
        side[free[want:]] = 0
    side[side < 0] = 0
    return np.flatnonzero(side == 0), np.flatnonzero(side == 1)


def fit_on_library(
    model: Annotator,
    tagged: AnnotationSet,
    *,
    min_label_count: int = 3,
    validation_fraction: float = 0.2,
    seed: int = 0,
    min_precision: float | None = None,
    max_labels: int | None = None,
) -> TrainingReport:
    """Fit `model` on `tagged` (photos with their keywords and features) as described in
    the module docstring; the model's decoder becomes the calibrated `LabelThresholds`.

    Thresholds maximise each label's F1, or with `min_precision` give each label the
    most predictions that are right at least that often on the validation split (a label
    that never is is not suggested); `max_labels` caps the keywords per photo. Labels
    with no validation photo get the median of the other thresholds (with
    `min_precision`: are not suggested). With ``validation_fraction=0`` nothing is held
    out or calibrated.
    """
    check_int("--min-label-count", min_label_count, 1)
    data, dropped = drop_rare_labels(tagged, min_label_count)
    used = np.flatnonzero(data.label_counts() > 0)
    if not len(used) or not data.n_labels:
        raise InvalidInputError(
            "dataset", f"photos with keywords used on at least {min_label_count} photos",
            f"{tagged.n_items} tagged photos, {tagged.n_labels} keywords, none frequent enough",
            "Tag more photos, or lower --min-label-count.",
        )  # fmt: skip
    data = data.subset(used)
    train_idx, valid_idx = stratified_split(data.labels, validation_fraction, seed)
    train, valid = data.subset(train_idx), data.subset(valid_idx)
    model.fit(train, valid if len(valid_idx) else None)
    report = TrainingReport(len(train_idx), len(valid_idx), tagged.n_items - len(used),
                            dropped=dropped)  # fmt: skip
    train_counts, valid_counts = train.label_frequencies(), valid.label_frequencies()
    if not len(valid_idx):
        report.labels = [LabelResult(name, int(train_counts[j]), 0, math.nan,
                                     note="not calibrated (no validation split)")
                         for j, name in enumerate(data.vocabulary)]  # fmt: skip
        return report
    scores = model.scores(valid)
    truth = valid.labels.toarray().astype(bool)
    thresholds = LabelThresholds.calibrate(truth, scores, min_precision=min_precision)
    thresholds = thresholds.thresholds.copy()
    calibrated = np.isfinite(thresholds)
    if min_precision is None:
        fallback = float(np.median(thresholds[calibrated])) if calibrated.any() else 0.5
        thresholds[~calibrated] = fallback
    # a cut below every validation photo tells nothing apart: the keyword would go on
    # every photo, right only as often as it occurs, here on fewer than half of them
    everywhere = (scores >= thresholds[None, :]).all(axis=0) & (truth.mean(axis=0) < 0.5)
    thresholds[everywhere] = np.inf
    model.decoder_ = LabelThresholds(thresholds, max_labels)
    predicted = scores >= thresholds[None, :]
    correct = (truth & predicted).sum(axis=0)
    if everywhere.any():
        names = ", ".join(data.vocabulary[j] for j in np.flatnonzero(everywhere))
        report.warnings.append(
            f"not suggested: {names} (the model cannot tell the photos with them from the "
            "others: each would go on every photo, wrong on most): tag more photos with and "
            "without them"
        )
    for j, name in enumerate(data.vocabulary):
        if everywhere[j]:
            note = "would be on every photo, wrong on most: not suggested"
        else:
            note = "" if calibrated[j] else _uncalibrated_note(min_precision, valid_counts[j])
        report.labels.append(LabelResult(
            name, int(train_counts[j]), int(valid_counts[j]), float(thresholds[j]),
            int(predicted[:, j].sum()), int(correct[j]), note,
        ))  # fmt: skip
    _refuse_the_same_keywords_everywhere(model, data)
    report.f1 = _micro_f1(truth, predicted)
    report.most_common_f1 = _micro_f1(truth, _most_common(train, len(truth)))
    if report.f1 <= report.most_common_f1:
        report.warnings.append(
            f"the model is no better than always suggesting the {_n_common(train)} most common "
            f"keywords (validation F1 {report.f1:.2f} against {report.most_common_f1:.2f}): "
            "tag more photos, with keywords that tell them apart"
        )
    return report


def _uncalibrated_note(min_precision: float | None, valid_photos: int) -> str:
    if min_precision is None:
        return "no validation photo: median threshold"
    if not valid_photos:
        return "no validation photo: not suggested"
    if valid_photos < 2:
        return "one validation photo, 2 right needed: not suggested"
    return f"never right {min_precision:.0%} of the time on validation: not suggested"


def _n_common(train: AnnotationSet) -> int:
    return max(1, round(float(train.label_counts().mean())))


def _most_common(train: AnnotationSet, n_items: int) -> np.ndarray:
    """The training photos' most common keywords (as many as a photo has on average)
    for each of `n_items` photos."""
    top = np.argsort(-train.label_frequencies(), kind="stable")[: _n_common(train)]
    chosen = np.zeros((n_items, train.n_labels), dtype=bool)
    chosen[:, top] = True
    return chosen


def _micro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    correct = float((truth & predicted).sum())
    total = float(truth.sum() + predicted.sum())
    return 2 * correct / total if total else 0.0


def _refuse_the_same_keywords_everywhere(model: Annotator, data: AnnotationSet) -> None:
    """`UselessModelError` when the model, as calibrated, gives every photo of `data`
    the same keywords (a model that learned nothing about the photos)."""
    if data.n_items < 2:
        return
    chosen = model.decoder_.decode_prediction(model.predict(data))
    if (chosen == chosen[:1]).all():
        words = [data.vocabulary[int(j)] for j in np.flatnonzero(chosen[0])] or ["none"]
        raise UselessModelError(
            f"the trained model gives all {data.n_items} photos the same keywords "
            f"({', '.join(words[:10])}), so it was not saved: tag more photos, with "
            "keywords that differ between them, and train again"
        )
