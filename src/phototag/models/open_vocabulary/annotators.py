"""Open-vocabulary annotation: the encoder's ImageNet classes mapped onto any words.

An ImageNet-trained encoder already recognises 1000 object classes, each a WordNet 3.0
noun synset. A user's word is looked up in WordNet (noun senses only) and scored by the
probability mass of the ImageNet classes *below* it in the hypernym hierarchy:

    p          = softmax((pooled @ W.T + b) / temperature)        # [n, 1000]
    score[w]   = sum of p[c] over classes c with sense(w) in {c} + hypernyms*(c)

so ``animal`` collects every animal class and always scores at least as high as ``cat``.
Nothing is trained: the model is built from a word list (`ImageNetWordNetAnnotator.from_vocabulary`)
and the encoder's classifier layer. Words that WordNet does not know as a noun, or whose
senses cover no ImageNet class (``sky``, ``grass``), can never score above 0; they are
listed by `ImageNetWordNetAnnotator.coverage_report` and announced with one
`UncoveredWordsWarning` when the model is built. See docs/models/open_vocabulary.md.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Self

import numpy as np

from phototag.data import AnnotationSet, Vocabulary
from phototag.errors import InvalidInputError, PhototagError
from phototag.evaluation.decoding import TopK
from phototag.features.embeddings.wordnet_db import (
    WordNetDatabase,
)
from phototag.models.base import Annotator
from phototag.models.open_vocabulary.wordnet import (
    CoverageReport,
    UncoveredWordsWarning,
    WordCoverage,
    check_senses,
    word_class_matrix,
)
from phototag.models.registry import register_annotator

if TYPE_CHECKING:
    from phototag.features.encoders import ImageEncoder

#: Rows of features scored at once (bounds the float64 [rows, 1000] temporaries).
BLOCK_ROWS = 4096


@register_annotator("imagenet_wordnet")
class ImageNetWordNetAnnotator(Annotator):
    """Open vocabulary: ImageNet class probabilities summed through WordNet, no training.

    Arguments:
        features: the encoder whose pooled features the model reads (the
            `AnnotationSet.features` key) and whose ImageNet classifier it copies.
        vocabulary: the words to score; ``None`` means the vocabulary of the set given
            to `fit`.
        senses: ``"all"`` (default) sums every noun sense of a word, so ``mouse``
            collects the rodent and the computer mouse; ``"first"`` keeps WordNet's most
            frequent sense only.
        temperature: divides the logits before the softmax; above 1 spreads probability
            over more classes (higher scores for broad words on uncertain images).

    Build it with `from_vocabulary` (or ``build()`` when `vocabulary` is set); `fit`
    works too, taking the words from ``train.vocabulary`` and ignoring the labels, so
    ``phototag train --model imagenet_wordnet`` and save/load behave as for any model.
    """

    extra_state = ("word_lemmas_", "word_synsets_", "encoder_id_")

    def __init__(
        self,
        features: str = "efficientnet_lite2",
        vocabulary: list[str] | None = None,
        senses: str = "all",
        temperature: float = 1.0,
    ) -> None:
        if not isinstance(features, str) or not features:
            raise InvalidInputError("features", "an encoder name", repr(features))
        if vocabulary is not None:
            if isinstance(vocabulary, str) or not isinstance(vocabulary, Iterable):
                raise InvalidInputError(
                    "vocabulary",
                    "a list of words",
                    repr(vocabulary),
                    "Read a word file with read_word_list(path) first.",
                )
            vocabulary = list(Vocabulary(vocabulary))
        check_senses(senses)
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, int | float)
            or not math.isfinite(temperature)
            or temperature <= 0
        ):
            raise InvalidInputError("temperature", "a positive number", repr(temperature))
        self.features = features
        self.vocabulary = vocabulary
        self.senses = senses
        self.temperature = float(temperature)

    # ----------------------------------------------------------------- building
    @classmethod
    def from_vocabulary(
        cls,
        words: Iterable[str],
        encoder_name: str = "efficientnet_lite2",
        *,
        senses: str = "all",
        temperature: float = 1.0,
        encoder: ImageEncoder | None = None,
        wordnet: WordNetDatabase | None = None,
    ) -> Self:
        """A ready model scoring `words` on `encoder_name` features.

        `encoder`: an already created encoder of that name (saves building it again);
        `wordnet`: a `WordNetDatabase` (default: the system's WordNet 3.0 files).
        """
        model = cls(
            features=encoder_name, vocabulary=list(words), senses=senses, temperature=temperature
        )
        return model.build(encoder=encoder, wordnet=wordnet)

    def build(
        self, encoder: ImageEncoder | None = None, wordnet: WordNetDatabase | None = None
    ) -> Self:
        """Fit without data: map the configured `vocabulary` and copy the classifier."""
        if self.vocabulary is None:
            raise InvalidInputError(
                "vocabulary",
                "a list of words to build from",
                "None",
                "Pass vocabulary=[...] to the constructor, or call fit(train).",
            )
        self.vocabulary_ = Vocabulary(self.vocabulary)
        self.decoder_ = getattr(self, "decoder_", TopK(5))
        self._build(encoder, wordnet)
        return self

    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        """Words from ``train.vocabulary``; labels, features and `valid` are not used."""
        if self.vocabulary is not None and list(train.vocabulary) != self.vocabulary:
            raise InvalidInputError(
                "train",
                "a set whose vocabulary is the configured vocabulary",
                f"{len(train.vocabulary)} labels that differ from the {len(self.vocabulary)} "
                "configured words",
                "Leave vocabulary=None to use the training set's labels, or call build().",
            )
        self._build(None, None)

    def _build(self, encoder: ImageEncoder | None, wordnet: WordNetDatabase | None) -> None:
        if encoder is None:
            from phototag.features.encoders import create_encoder

            encoder = create_encoder(self.features)
        elif encoder.name != self.features:
            raise InvalidInputError(
                "encoder",
                f"the {self.features!r} encoder (the model's features)",
                repr(encoder.name),
            )
        weight, bias = classifier_weights(encoder)
        offsets = [c.wordnet_offset for c in encoder.class_names or ()]
        matrix, report = word_class_matrix(list(self.vocabulary_), offsets, self.senses, wordnet)
        self.classifier_weight_ = weight
        self.classifier_bias_ = bias
        self.class_to_label_ = matrix.astype(np.float32)
        self.word_lemmas_ = [w.lemma for w in report.words]
        self.word_synsets_ = [list(w.synsets) for w in report.words]
        self.encoder_id_ = encoder.feature_id
        if report.uncovered:
            warnings.warn(
                UncoveredWordsWarning(f"imagenet_wordnet: {report.summary(limit=8)}"), stacklevel=4
            )

    # ------------------------------------------------------------------ scoring
    def class_probabilities(self, inputs: AnnotationSet) -> np.ndarray:
        """float32 ``[n_items, 1000]`` ImageNet probabilities from the pooled features
        (the encoder's own ``class_probabilities``, at `temperature` 1)."""
        self._check_fitted()
        return np.concatenate(
            [p.astype(np.float32) for p in self._probability_blocks(inputs)]
            or [np.zeros((0, len(self.classifier_bias_)), dtype=np.float32)]
        )

    def _scores(self, inputs: AnnotationSet) -> np.ndarray:
        mapping = self.class_to_label_.astype(np.float64)
        out = np.empty((inputs.n_items, mapping.shape[1]), dtype=np.float32)
        start = 0
        for p in self._probability_blocks(inputs):
            out[start : start + len(p)] = np.clip(p @ mapping, 0.0, 1.0)
            start += len(p)
        return out

    def _probability_blocks(self, inputs: AnnotationSet) -> Iterable[np.ndarray]:
        x = self._input_features(inputs)
        weight = self.classifier_weight_.astype(np.float64)
        bias = self.classifier_bias_.astype(np.float64)
        for start in range(0, len(x), BLOCK_ROWS):
            logits = np.asarray(x[start : start + BLOCK_ROWS], dtype=np.float64) @ weight.T + bias
            logits /= self.temperature
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            yield p

    def _input_features(self, inputs: AnnotationSet) -> np.ndarray:
        key = self.features
        if key not in inputs.features:
            available = ", ".join(repr(k) for k in sorted(inputs.features)) or "none"
            raise InvalidInputError(
                "inputs",
                f"an AnnotationSet with features[{key!r}]",
                f"features {available}",
                f"Compute the {key!r} pooled features for these items.",
            )
        x = inputs.features[key]
        dim = self.classifier_weight_.shape[1]
        if np.ndim(x) != 2 or x.shape[1] != dim:
            raise InvalidInputError(
                f"features[{key!r}]",
                f"a 2-D array with {dim} columns (the {key} pooled features)",
                f"shape {np.shape(x)}",
            )
        return x

    # ----------------------------------------------------------------- coverage
    def coverage_report(self) -> CoverageReport:
        """Per word: its WordNet lemma and senses and the ImageNet classes it collects."""
        self._check_fitted()
        entries = tuple(
            WordCoverage(
                word,
                lemma,
                tuple(synsets),
                tuple(int(c) for c in np.flatnonzero(self.class_to_label_[:, j])),
            )
            for j, (word, lemma, synsets) in enumerate(
                zip(self.vocabulary_, self.word_lemmas_, self.word_synsets_, strict=True)
            )
        )
        return CoverageReport(entries)


# --------------------------------------------------------------------- helpers
def classifier_weights(encoder: ImageEncoder) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``W [1000, num_features]`` and ``b [1000]`` of the encoder's ImageNet head."""
    if encoder.num_classes != 1000 or encoder.class_names is None:
        raise InvalidInputError(
            "encoder",
            "an encoder with the ImageNet-1k classifier (1000 WordNet classes)",
            f"{encoder.name} with {encoder.num_classes} classifier outputs",
            "Use the encoder's pretrained ImageNet weights.",
        )
    from torch import nn

    layer = None
    for attribute in ("classifier", "fc"):
        candidate = getattr(encoder.model, attribute, None)
        if isinstance(candidate, nn.Linear):
            layer = candidate
    if layer is None or layer.out_features != 1000:
        raise PhototagError(f"{encoder.name}: no linear ImageNet classifier layer found")
    weight = layer.weight.detach().cpu().numpy().astype(np.float32)
    bias = (
        layer.bias.detach().cpu().numpy().astype(np.float32)
        if layer.bias is not None
        else np.zeros(layer.out_features, dtype=np.float32)
    )
    return np.ascontiguousarray(weight), np.ascontiguousarray(bias)
