"""The `WordEmbedding` interface, its result types and the shared tag-normalisation rules.

Rules every embedding follows (see ``docs/embeddings.md``):

- A tag is lower-cased and split into tokens on whitespace, ``_`` and ``-``:
  ``"Polar-Bear"``, ``"polar_bear"`` and ``"polar  bear"`` all become
  ``("polar", "bear")``.
- Table embeddings (GloVe, WordNet, word files) first look the whole phrase up
  (``"polar_bear"``, then ``"polar-bear"``), because many tables hold collocations
  (WordNet ``polar_bear``, GloVe ``t-shirt``, word2vec ``New_York``). Otherwise the
  tag's vector is the mean of the vectors of its tokens that are found.
- A tag is *found* when its phrase or at least one of its tokens is found; the tokens
  that were not found are reported as *partial* OOV. A tag with no token found is
  OOV: its row is all zeros and ``found`` is False. OOV is always counted and
  reported, never silently zero; ``strict=True`` raises instead.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np

from phototag.errors import InvalidInputError

_SEPARATORS = re.compile(r"[\s_\-]+")


def tag_tokens(tag: str) -> tuple[str, ...]:
    """Lower-cased tokens of `tag`, split on whitespace, underscores and hyphens."""
    return tuple(token for token in _SEPARATORS.split(tag.lower()) if token)


def phrase_keys(tokens: Sequence[str]) -> tuple[str, ...]:
    """Whole-phrase keys tried before the token mean, for tags of two tokens or more."""
    if len(tokens) < 2:
        return ()
    return ("_".join(tokens), "-".join(tokens))


def _check_words(words: object, argument: str = "words") -> list[str]:
    if isinstance(words, str) or not isinstance(words, Iterable):
        raise InvalidInputError(
            argument,
            "a sequence of tag strings",
            repr(words)[:80],
            "Wrap a single tag in a list: embed(['polar bear']).",
        )
    words = list(words)
    for i, word in enumerate(words):
        if not isinstance(word, str):
            raise InvalidInputError(argument, "strings", f"{word!r} at position {i}")
    return words


class OutOfVocabularyError(InvalidInputError):
    """`strict=True` and some tags, or some tokens of multi-word tags, have no vector."""

    def __init__(
        self, embedding: str, oov: Sequence[str], partial: Mapping[str, Sequence[str]]
    ) -> None:
        self.oov = list(oov)
        self.partial = {tag: list(tokens) for tag, tokens in partial.items()}
        parts = []
        if self.oov:
            parts.append(f"{len(self.oov)} out-of-vocabulary tags: {_preview(self.oov)}")
        if self.partial:
            described = [f"{tag!r} (missing {', '.join(t)})" for tag, t in self.partial.items()]
            parts.append(f"{len(self.partial)} partly covered tags: {_preview(described, 20)}")
        super().__init__(
            "words",
            f"every tag covered by the {embedding!r} embedding",
            "; ".join(parts),
            "Rename or drop these tags, choose another embedding, or pass strict=False to "
            "get zero rows flagged in `found` and listed in the report.",
        )


def _preview(items: Sequence[str], limit: int = 50) -> str:
    shown = ", ".join(item if item.startswith("'") else repr(item) for item in items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


@dataclass(frozen=True)
class EmbeddingReport:
    """Coverage of a list of tags by one embedding.

    `oov` lists tags with no vector (zero rows); `partial` maps multi-word tags that
    got a vector from some of their tokens to the tokens that were missing.
    """

    embedding: str
    dim: int
    n_words: int
    n_found: int
    oov: tuple[str, ...]  # distinct, in input order
    partial: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def coverage(self) -> float:
        """Fraction of tags with a vector (1.0 for an empty list)."""
        return self.n_found / self.n_words if self.n_words else 1.0

    def __str__(self) -> str:
        text = (
            f"{self.embedding} (dim {self.dim}): {self.n_found}/{self.n_words} tags found "
            f"({100 * self.coverage:.1f}%), {len(self.oov)} OOV"
        )
        if self.partial:
            text += f", {len(self.partial)} partly covered"
        if self.oov:
            text += f"; OOV: {_preview(list(self.oov), 20)}"
        return text


@dataclass(frozen=True)
class EmbeddingResult:
    """Vectors for a list of tags.

    `vectors` is float32 [n, dim]; rows of OOV tags are zero and have ``found[i]``
    False. `missing` holds, per tag, the tokens that had no vector (all tokens for an
    OOV tag, some for a partly covered one, none otherwise).
    """

    embedding: str
    words: tuple[str, ...]
    vectors: np.ndarray
    found: np.ndarray
    missing: tuple[tuple[str, ...], ...]

    @property
    def oov(self) -> list[str]:
        """Tags without a vector, in input order."""
        return [w for w, ok in zip(self.words, self.found, strict=True) if not ok]

    @property
    def partial(self) -> dict[str, tuple[str, ...]]:
        """Multi-word tags with a vector that lack some tokens -> the missing tokens."""
        return {
            w: m for w, ok, m in zip(self.words, self.found, self.missing, strict=True) if ok and m
        }

    def report(self) -> EmbeddingReport:
        return EmbeddingReport(
            embedding=self.embedding,
            dim=int(self.vectors.shape[1]),
            n_words=len(self.words),
            n_found=int(self.found.sum()),
            oov=tuple(dict.fromkeys(self.oov)),
            partial=self.partial,
        )

    def normalized(self) -> np.ndarray:
        """Rows scaled to unit L2 norm (zero rows stay zero), for cosine similarity."""
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        return np.divide(
            self.vectors, norms, out=np.zeros_like(self.vectors), where=norms > 0
        ).astype(np.float32, copy=False)


class WordEmbedding(ABC):
    """Maps tags (words or short phrases) to fixed-size float32 vectors.

    Every embedding has the same life cycle: construct, optionally ``fit(vocabulary)``
    (required for the one-hot ``id`` embedding, which has one dimension per label; a
    prefetch for file embeddings; a no-op for the rest), then ``embed(words)``.
    """

    #: Registry spec of this embedding (``"glove50"``, ``"file:/path"``, ...).
    name: str = ""
    #: Whether `fit` must be called before `embed` / `dim`.
    requires_fit: ClassVar[bool] = False

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of every vector."""

    def config(self) -> dict[str, Any]:
        """JSON-able description; ``create_embedding(**config)`` rebuilds the embedding."""
        return {"spec": self.name}

    def fit(self, vocabulary: Iterable[str]) -> Self:
        """Prepare for the labels of `vocabulary` (a `Vocabulary` or list of tags)."""
        _check_words(vocabulary, "vocabulary")
        return self

    @abstractmethod
    def _embed(self, tokens: list[tuple[str, ...]]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
        """Vectors [n, dim] for tokenised tags, and per tag the tokens that were missing.

        A tag whose tokens are all missing (or that has no tokens) must get a zero row.
        """

    def _tokenize(self, word: str) -> tuple[str, ...]:
        return tag_tokens(word)

    def embed(self, words: Sequence[str], *, strict: bool = False) -> EmbeddingResult:
        """Vectors for `words`; OOV rows are zero, flagged in ``found`` and reported.

        With ``strict=True``, raise `OutOfVocabularyError` listing every OOV tag and
        every missing token of multi-word tags instead.
        """
        words = _check_words(words)
        tokens = [self._tokenize(word) for word in words]
        if words:
            vectors, missing = self._embed(tokens)
        else:
            vectors, missing = np.zeros((0, self.dim), np.float32), []
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        found = np.array(
            [len(m) < len(t) for t, m in zip(tokens, missing, strict=True)], dtype=bool
        ).reshape(len(words))
        result = EmbeddingResult(
            embedding=self.name,
            words=tuple(words),
            vectors=vectors,
            found=found,
            missing=tuple(tuple(m) for m in missing),
        )
        if strict and (result.oov or result.partial):
            raise OutOfVocabularyError(self.name, result.oov, result.partial)
        return result

    def embed_vocabulary(
        self, vocabulary: Iterable[str], *, strict: bool = False
    ) -> tuple[np.ndarray, EmbeddingReport]:
        """``fit(vocabulary)`` then embed its labels: float32 [len(vocabulary), dim] + report."""
        words = _check_words(vocabulary, "vocabulary")
        result = self.fit(words).embed(words, strict=strict)
        return result.vectors, result.report()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class TableEmbedding(WordEmbedding):
    """An embedding backed by a word -> vector table (GloVe, WordNet, word files).

    Subclasses implement `_lookup`, a batched table look-up of normalised keys.
    """

    @abstractmethod
    def _lookup(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors of those `keys` that are in the table (keys are lower-case)."""

    def _embed(self, tokens: list[tuple[str, ...]]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
        keys: dict[str, None] = {}
        for tag in tokens:
            keys.update(dict.fromkeys(phrase_keys(tag)))
            keys.update(dict.fromkeys(tag))
        table = self._lookup(list(keys))
        vectors = np.zeros((len(tokens), self.dim), np.float32)
        missing: list[tuple[str, ...]] = []
        for i, tag in enumerate(tokens):
            phrase = next((key for key in phrase_keys(tag) if key in table), None)
            if phrase is not None:
                vectors[i] = table[phrase]
                missing.append(())
                continue
            hits = [table[token] for token in tag if token in table]
            if hits:
                vectors[i] = np.mean(hits, axis=0)
            missing.append(tuple(token for token in tag if token not in table))
        return vectors, missing
