"""Words looked up in WordNet and mapped onto the ImageNet classes below them, with a
report of the words no class covers."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from phototag.errors import InvalidInputError, PhototagError
from phototag.features.embeddings import MissingDependencyError
from phototag.features.embeddings.wordnet_db import (
    Synset,
    WordNetDatabase,
    find_wordnet_dir,
)

if TYPE_CHECKING:
    pass

SENSES = ("all", "first")


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
    """The noun lemma `word` is found as and its senses (the rules: `ImageNetWordNetAnnotator`).

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
    check_senses(senses)
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


def check_senses(senses: str) -> None:
    if senses not in SENSES:
        raise InvalidInputError("senses", " or ".join(repr(s) for s in SENSES), repr(senses))
