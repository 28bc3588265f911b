"""The everyday model: keywords people use for their photos, as calibrated probabilities.

Two kinds of evidence per keyword (``everyday.tsv``, `phototag.models.everyday.rules`):

- the encoder's ImageNet classifier: the probability mass of the ImageNet classes its
  WordNet rule names (``r``), and
- a logistic head on the pooled features, trained on real photos whose datasets label
  the keyword (``h``; people, portrait, indoor, night, sky, ...).

A keyword's probability is ``sigmoid(a_h * h + a_r * logit(r) + b)`` with the
coefficients fitted on out-of-fold scores of the labelled photos (Platt scaling of
both kinds of evidence at once); keywords without labelled photos share one curve for
``logit(r)`` fitted on all the keywords that have both. A keyword is at least as
probable as any keyword below it in the hierarchy (``Animals`` >= ``Animals|Pets|Dog``).
Decoding keeps the keywords whose probability passes a per-keyword threshold chosen on
held-out photos for precision (`min_precision`), at most `max_keywords` per photo,
possibly none. See docs/models/everyday.md.
"""

from __future__ import annotations

import numpy as np

from phototag.data import AnnotationSet, Vocabulary
from phototag.data.everyday import EverydayWord, read_table
from phototag.errors import InvalidInputError, check_float, check_int
from phototag.evaluation.decoding import LabelThresholds, label_threshold
from phototag.models.base import Annotator, feature_matrix
from phototag.models.everyday.heads import fit_heads, fit_platt
from phototag.models.everyday.rules import class_matrix
from phototag.models.registry import register_annotator

#: Evidence columns are clipped to these probabilities before the logit.
_EPS = 1e-4
#: Fewer positives than this among a keyword's labelled photos: no head of its own.
MIN_POSITIVES = 8
#: No keyword is written below this probability.
MIN_THRESHOLD = 0.5
#: A keyword written this often on held-out photos is checked on its own.
MIN_WRITTEN = 5


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


@register_annotator("everyday")
class EverydayAnnotator(Annotator):
    """Everyday keywords with calibrated probabilities from ImageNet rules and trained heads.

    Arguments:
        features: the encoder whose pooled features and ImageNet classifier are used.
        table: a rule table file (default: the shipped ``everyday.tsv``).
        l2: L2 penalty of the heads (on standardised features).
        folds: cross-validation folds for the out-of-fold scores that calibration and
            thresholds are fitted on.
        min_precision: share of written keywords that must be right on held-out photos.
        threshold_on: the dataset whose photos choose a keyword's threshold where it
            labels the keyword: one whose labels are complete (every photo judged for
            every concept, as MIRFLICKR's), so a missing label means "not there"; Corel-5k
            gives at most 5 words per photo, which makes right keywords look wrong.
        max_keywords: at most this many keywords per photo.
        seed: fold assignment seed.

    `fit` takes a set whose vocabulary is the table's keywords (the ``everyday``
    dataset reader); ``metadata["dataset"]``, when present, says which photos are
    labelled for which keyword (a keyword's photo labels name their dataset).
    """

    extra_state = ("keyword_sources_",)

    def __init__(
        self,
        features: str = "efficientnet_lite2",
        table: str | None = None,
        l2: float = 1.0,
        folds: int = 5,
        min_precision: float = 0.8,
        max_keywords: int = 10,
        threshold_on: str | None = "mirflickr",
        seed: int = 0,
    ) -> None:
        if not isinstance(features, str) or not features:
            raise InvalidInputError("features", "an encoder name", repr(features))
        self.features = features
        self.table = table
        self.l2 = check_float("l2", l2, 0.0)
        self.folds = check_int("folds", folds, 2)
        self.min_precision = check_float("min_precision", min_precision, 0.0, maximum=1.0)
        self.max_keywords = check_int("max_keywords", max_keywords, 1)
        self.threshold_on = threshold_on
        self.seed = check_int("seed", seed, 0)

    # ------------------------------------------------------------------ training
    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        words = read_table(self.table)
        paths = [word.path for word in words]
        if list(train.vocabulary) != paths:
            raise InvalidInputError(
                "train",
                f"a set labelled with the {len(paths)} keywords of the rule table",
                f"{train.name} with {len(train.vocabulary)} labels",
                "Read it with the everyday reader: --dataset everyday:DATA.",
            )
        from phototag.features.encoders import create_encoder
        from phototag.models.open_vocabulary import classifier_weights, wordnet_database

        x = feature_matrix(train, self.features, "training").astype(np.float32)
        encoder = create_encoder(self.features)
        self.classifier_weight_, self.classifier_bias_ = classifier_weights(encoder)
        self.class_to_word_ = class_matrix(words, wordnet_database()).astype(np.float32)
        self.vocabulary_ = Vocabulary(paths)
        self.ancestors_ = _ancestor_matrix(paths)
        self.feature_mean_ = x.mean(axis=0, dtype=np.float64).astype(np.float32)
        self.feature_scale_ = (x.std(axis=0, dtype=np.float64) + 1e-6).astype(np.float32)
        xs = (x - self.feature_mean_) / self.feature_scale_

        y = train.labels.toarray().astype(bool)
        known, weight = _known_rows(train, words)
        preferred = _known_rows(train, words, self.threshold_on)[0] if self.threshold_on else known
        has_head = ((y & known).sum(axis=0) >= MIN_POSITIVES) & ((~y & known).sum(axis=0) > 0)
        has_rule = self.class_to_word_.any(axis=0)
        self.keyword_sources_ = [
            "+".join(s for s, on in (("imagenet", r), ("photos", h)) if on) or "none"
            for r, h in zip(has_rule, has_head, strict=True)
        ]
        head_ids = np.flatnonzero(has_head)
        a, b = fit_heads(xs, y[:, head_ids], known[:, head_ids], weight, self.l2)
        out_of_fold = self._out_of_fold_heads(
            xs, y[:, head_ids], known[:, head_ids], weight, (a, b)
        )
        self.head_weight_ = np.zeros((x.shape[1], len(paths)), dtype=np.float32)
        self.head_bias_ = np.zeros(len(paths), dtype=np.float32)
        self.head_weight_[:, head_ids] = a
        self.head_bias_[head_ids] = b

        rule_logit = _logit(self._rule_mass(x))
        head_logit = np.zeros_like(rule_logit)
        head_logit[:, head_ids] = out_of_fold
        self.calibration_ = self._calibrate(
            head_logit, rule_logit, y, known, weight, has_head, has_rule
        )
        self.decoder_ = LabelThresholds(
            self._thresholds(
                self._probabilities(head_logit, rule_logit),
                y,
                np.where(preferred.any(axis=0), preferred, known),
            ),
            self.max_keywords,
        )

    def _out_of_fold_heads(
        self,
        xs: np.ndarray,
        y: np.ndarray,
        known: np.ndarray,
        weight: np.ndarray,
        start: tuple[np.ndarray, np.ndarray],
    ) -> np.ndarray:
        """Head logits of every photo from heads that did not see it (each fit starts
        from the heads fitted on all photos, `start`, and converges to its own)."""
        fold = np.random.default_rng(self.seed).permutation(len(xs)) % self.folds
        logits = np.zeros(y.shape)
        for k in range(self.folds):
            held = fold == k
            a, b = fit_heads(xs[~held], y[~held], known[~held], weight[~held], self.l2, start)
            logits[held] = xs[held] @ a + b
        return logits

    def _calibrate(
        self,
        head_logit: np.ndarray,
        rule_logit: np.ndarray,
        y: np.ndarray,
        known: np.ndarray,
        weight: np.ndarray,
        has_head: np.ndarray,
        has_rule: np.ndarray,
    ) -> np.ndarray:
        """``[n_words, 3]``: (a_head, a_rule, b) per keyword; the rule keywords without
        labelled photos share the (a_rule, b) fitted on all the rule keywords with them."""
        labelled = known.any(axis=0) & y.any(axis=0)
        rows, cols = np.nonzero(known & (labelled & has_rule))
        shared = fit_platt(
            rule_logit[rows, cols][:, None], y[rows, cols].astype(np.float64), weight[rows]
        )
        coefficients = np.zeros((len(has_rule), 3))
        coefficients[has_rule, 1:] = shared
        coefficients[~has_rule & ~has_head, 2] = -30.0  # no evidence: never suggested
        for j in np.flatnonzero(labelled & (has_head | has_rule)):
            rows = known[:, j]
            slots = np.flatnonzero([has_head[j], has_rule[j]])
            evidence = np.column_stack([head_logit[rows, j], rule_logit[rows, j]])[:, slots]
            fitted = fit_platt(evidence, y[rows, j].astype(float), weight[rows])
            coefficients[j] = 0.0
            coefficients[j, slots] = fitted[:-1]
            coefficients[j, 2] = fitted[-1]
        return coefficients.astype(np.float32)

    def _thresholds(self, p: np.ndarray, y: np.ndarray, known: np.ndarray) -> np.ndarray:
        """One threshold for every keyword: the lowest probability at which the held-out
        keywords of all keywords together are right at least `min_precision` of the time
        (never below 0.5). A keyword whose own held-out keywords above it are right less
        than half the time gets its own `min_precision` cut instead, or is never written;
        so does a keyword without evidence."""
        labelled = known & y.any(axis=0)
        common = label_threshold(y[labelled], p[labelled], 1.0, self.min_precision, 20)
        # below 0.5 a keyword is more likely wrong than right, whatever a test set says
        common = max(common, MIN_THRESHOLD)
        thresholds = np.full(p.shape[1], common)
        for j in range(p.shape[1]):
            written = known[:, j] & (p[:, j] >= common)
            if written.sum() >= MIN_WRITTEN and y[written, j].mean() < 0.5:
                rows = known[:, j]
                own = label_threshold(y[rows, j], p[rows, j], np.inf, self.min_precision, 3)
                thresholds[j] = max(own, common)
        thresholds[np.array(self.keyword_sources_) == "none"] = np.inf
        return thresholds

    # ------------------------------------------------------------------- scoring
    def _scores(self, inputs: AnnotationSet) -> np.ndarray:
        x = feature_matrix(inputs, self.features, "inputs", len(self.feature_mean_))
        x = x.astype(np.float32)
        head_logit = ((x - self.feature_mean_) / self.feature_scale_) @ self.head_weight_
        return self._probabilities(head_logit + self.head_bias_, _logit(self._rule_mass(x)))

    def _rule_mass(self, x: np.ndarray) -> np.ndarray:
        """ImageNet probability mass of each keyword's rule classes ``[n, n_words]``."""
        logits = x @ self.classifier_weight_.T + self.classifier_bias_
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        return np.clip(p @ self.class_to_word_, 0.0, 1.0)

    def _probabilities(self, head_logit: np.ndarray, rule_logit: np.ndarray) -> np.ndarray:
        c = self.calibration_
        z = head_logit * c[:, 0] + rule_logit * c[:, 1] + c[:, 2]
        p = 1.0 / (1.0 + np.exp(-z))
        for a in np.flatnonzero(self.ancestors_.any(axis=1)):
            # a keyword is at least as likely as the most likely keyword below it
            p[:, a] = np.maximum(p[:, a], p[:, self.ancestors_[a]].max(axis=1))
        return p.astype(np.float32)

    def describe(self) -> list[tuple[str, str, float]]:
        """Per keyword: its path, its evidence (``imagenet``, ``photos``, both) and its
        threshold."""
        self._check_fitted()
        return list(
            zip(self.vocabulary_, self.keyword_sources_, self.decoder_.thresholds, strict=True)
        )


def _ancestor_matrix(paths: list[str]) -> np.ndarray:
    """Boolean ``[n, n]``: ``[a, d]`` is true when keyword `d` lies below keyword `a`."""
    folded = [path.casefold() for path in paths]
    return np.array([[d.startswith(a + "|") for d in folded] for a in folded], dtype=bool)


def _known_rows(
    train: AnnotationSet, words: tuple[EverydayWord, ...], only: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Which photos are labelled for which keyword ``[n, n_words]`` (with `only`: by that
    dataset), and per-photo weights that give each dataset the same total weight."""
    if "dataset" not in train.metadata:
        return np.ones((train.n_items, len(words)), dtype=bool), np.ones(train.n_items)
    origin = np.asarray(train.metadata["dataset"]).astype(str)
    known = np.column_stack(
        [
            np.isin(origin, [name for name, _ in word.photos if only in (None, name)])
            for word in words
        ]
    )
    names, counts = np.unique(origin, return_counts=True)
    share = dict(zip(names, len(origin) / (len(names) * counts), strict=True))
    return known, np.array([share[o] for o in origin])
