"""Open-vocabulary annotation: the encoder's ImageNet classes mapped onto any words.

An ImageNet-trained encoder already recognises 1000 object classes, each a WordNet 3.0
noun synset. A user's word is looked up in WordNet (noun senses only) and scored by the
probability mass of the ImageNet classes *below* it in the hypernym hierarchy:

    p          = softmax((pooled @ W.T + b) / temperature)        # [n, 1000]
    score[w]   = sum of p[c] over classes c with sense(w) in {c} + hypernyms*(c)

so ``animal`` collects every animal class and always scores at least as high as ``cat``.
Nothing is trained: the model is built from a word list (`ImageNetWordNet.from_vocabulary`)
and the encoder's classifier layer. Words that WordNet does not know as a noun, or whose
senses cover no ImageNet class (``sky``, ``grass``), can never score above 0; they are
listed by `ImageNetWordNet.coverage_report` and announced with one
`UncoveredWordsWarning` when the model is built. See docs/models/open_vocabulary.md.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Self

import numpy as np

from phototag.data import AnnotationSet, Vocabulary
from phototag.decoding import TopK
from phototag.errors import InvalidInputError, PhototagError
from phototag.features.embeddings._errors import MissingDependencyError
from phototag.features.embeddings.wordnet_db import (
    Synset,
    WordNetDatabase,
    find_wordnet_dir,
)
from phototag.models.base import Annotator
from phototag.models.registry import register_annotator

if TYPE_CHECKING:
    from phototag.features.encoders import ImageEncoder

SENSES = ("all", "first")
#: Rows of features scored at once (bounds the float64 [rows, 1000] temporaries).
BLOCK_ROWS = 4096


class UncoveredWordsWarning(UserWarning):
    """Some words of an open vocabulary map to no ImageNet class and will always score 0."""


# --------------------------------------------------------------------- coverage
@dataclass(frozen=True)
class WordCoverage:
    """How one word maps to ImageNet.

    Attributes:
        word: the word as given.
        lemma: the WordNet noun lemma it was looked up as (``"cats"`` -> ``"cat"``,
            ``"polar bear"`` -> ``"polar_bear"``), or ``None`` when WordNet has no noun
            for it.
        synsets: names of the noun senses used (``"cat.n.01"``; the first lemma of the
            synset and its sense number, as NLTK names them).
        classes: ImageNet class indices at or below one of those senses.
    """

    word: str
    lemma: str | None
    synsets: tuple[str, ...]
    classes: tuple[int, ...]

    @property
    def covered(self) -> bool:
        return bool(self.classes)

    @property
    def reason(self) -> str:
        """Why the word is uncovered (empty when it is covered)."""
        if self.covered:
            return ""
        if self.lemma is None:
            return "not a WordNet noun"
        return "no ImageNet class among its hyponyms"

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names (first lemma) of the covered ImageNet classes."""
        from phototag.features.encoders import imagenet_classes

        classes = imagenet_classes()
        return tuple(classes[c].name for c in self.classes)


@dataclass(frozen=True)
class CoverageReport:
    """Which words of an open vocabulary can score above zero, and through what."""

    words: tuple[WordCoverage, ...]

    @property
    def covered(self) -> list[str]:
        return [w.word for w in self.words if w.covered]

    @property
    def uncovered(self) -> list[str]:
        return [w.word for w in self.words if not w.covered]

    def __getitem__(self, word: str) -> WordCoverage:
        for entry in self.words:
            if entry.word == word:
                return entry
        raise KeyError(word)

    def summary(self, limit: int | None = None) -> str:
        """One line: how many words are covered, and the uncovered ones with the reason
        (the first `limit` of them when given)."""
        text = f"{len(self.covered)} of {len(self.words)} words map to ImageNet classes"
        missing = [w for w in self.words if not w.covered]
        if missing:
            shown = missing if limit is None else missing[:limit]
            listed = "; ".join(f"{w.word!r} ({w.reason})" for w in shown)
            more = f"; and {len(missing) - len(shown)} more" if len(shown) < len(missing) else ""
            text += f"; never scored (always 0): {listed}{more}"
        return text

    def __str__(self) -> str:
        return self.summary()


# --------------------------------------------------------------------- WordNet
def wordnet_database(directory: str | Path | None = None) -> WordNetDatabase:
    """The WordNet database (``directory``, ``$WORDNET_DIR`` or the system files), cached."""
    try:
        path = find_wordnet_dir(directory)
    except MissingDependencyError as error:
        message = str(error).replace(
            "The 'wordnet' embedding needs",
            "The imagenet_wordnet model (words mapped to ImageNet classes through WordNet) needs",
            1,
        )
        raise PhototagError(message) from error
    return _database(str(path))


@functools.lru_cache(maxsize=2)
def _database(directory: str) -> WordNetDatabase:
    return WordNetDatabase(directory)


def normalise_word(word: str) -> str:
    """Index form: lower case, words joined by ``_`` (``Polar Bear`` -> ``polar_bear``)."""
    return "_".join(word.lower().split())


def lookup_word(
    db: WordNetDatabase, word: str, senses: str = "all"
) -> tuple[str | None, list[Synset]]:
    """The noun lemma `word` is found as and its senses (see `ImageNetWordNet` for the rules).

    Forms tried in order: the normalised word, with hyphens as ``_`` and then dropped,
    then (for phrases that are not lemmas) the last word, the head of an English compound. Each goes
    through WordNet's morphology (``cats`` -> ``cat``, ``mice`` -> ``mouse``); the first
    that yields noun lemmas wins. ``senses="all"``: every sense of every base form;
    ``"first"``: the first (most frequent) sense of the first base form.
    """
    key = normalise_word(word)
    candidates = [key]
    if "-" in key:
        candidates += [key.replace("-", "_"), key.replace("-", "")]
    head = key.rsplit("_", 1)[-1]
    if "_" in key and head.isalpha() and len(head) > 1:
        candidates.append(head)
    for candidate in candidates:
        forms = db.morphy(candidate, "n") if candidate else []
        if forms:
            break
    else:
        return None, []
    if senses == "first":
        return forms[0], db.synsets(forms[0], "n")[:1]
    found: list[Synset] = []
    for form in forms:
        found.extend(s for s in db.synsets(form, "n") if s not in found)
    return forms[0], found


@functools.lru_cache(maxsize=4)
def _classes_below(db: WordNetDatabase, offsets: tuple[int, ...]) -> dict[int, tuple[int, ...]]:
    """Noun synset offset -> indices of the classes (given by offset) at or below it."""
    below: dict[int, list[int]] = {}
    for index, offset in enumerate(offsets):
        synset = db.synset_at("n", offset)
        for ancestor in (synset, *db.hypernym_closure(synset)):
            if ancestor.key[0] == "n":
                below.setdefault(ancestor.offset, []).append(index)
    return {offset: tuple(indices) for offset, indices in below.items()}


def word_class_matrix(
    words: Sequence[str],
    class_offsets: Sequence[int],
    senses: str = "all",
    wordnet: WordNetDatabase | None = None,
) -> tuple[np.ndarray, CoverageReport]:
    """Boolean ``[n_classes, n_words]``: class ``c`` is at or below a sense of word ``w``.

    `class_offsets` are the classes' WordNet 3.0 noun offsets (``ImageNetClass.wordnet_offset``).
    """
    _check_senses(senses)
    db = wordnet or wordnet_database()
    below = _classes_below(db, tuple(int(o) for o in class_offsets))
    matrix = np.zeros((len(class_offsets), len(words)), dtype=bool)
    entries = []
    for j, word in enumerate(words):
        lemma, synsets = lookup_word(db, word, senses)
        for synset in synsets:
            matrix[list(below.get(synset.offset, ())), j] = True
        classes = tuple(int(c) for c in np.flatnonzero(matrix[:, j]))
        names = tuple(db.name(s) for s in synsets)
        entries.append(WordCoverage(word, lemma, names, classes))
    return matrix, CoverageReport(tuple(entries))


def read_word_list(path: str | Path) -> list[str]:
    """Words of a vocabulary file: one per line, blank lines and ``#`` comments skipped,
    surrounding whitespace stripped, repeats dropped (first kept)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(
            "vocabulary file", "a readable UTF-8 text file, one word per line", f"{path}: {error}"
        ) from None
    words = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    unique = list(dict.fromkeys(words))
    if not unique:
        raise InvalidInputError("vocabulary file", "at least one word", f"{path}: no words")
    return unique


# ----------------------------------------------------------------------- model
@register_annotator("imagenet_wordnet")
class ImageNetWordNet(Annotator):
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
        _check_senses(senses)
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


def _check_senses(senses: str) -> None:
    if senses not in SENSES:
        raise InvalidInputError("senses", " or ".join(repr(s) for s in SENSES), repr(senses))
