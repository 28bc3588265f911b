"""``id``: one-hot vectors over a label vocabulary (the papers' "pi = id" baseline)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Self

import numpy as np

from phototag.errors import InvalidInputError, NotFittedError
from phototag.features.embeddings._base import WordEmbedding, _check_words, tag_tokens


class OneHotEmbedding(WordEmbedding):
    """One dimension per vocabulary label; dim = vocabulary size.

    A tag matches a label exactly, or else through its normalised form (lower-cased,
    ``_``/``-``/whitespace-insensitive: ``"Polar-Bear"`` matches the label
    ``"polar bear"``) when exactly one label has that form. Multi-word labels are one
    label each, never averaged. Tags matching no label are OOV (zero rows).
    """

    requires_fit: ClassVar[bool] = True

    def __init__(self, vocabulary: Iterable[str] | None = None) -> None:
        self.name = "id"
        self.labels_: tuple[str, ...] | None = None
        if vocabulary is not None:
            self.fit(vocabulary)

    def fit(self, vocabulary: Iterable[str]) -> Self:
        labels = _check_words(vocabulary, "vocabulary")
        self._exact: dict[str, int] = {}
        for i, label in enumerate(labels):
            if label in self._exact:
                raise InvalidInputError(
                    "vocabulary", "unique labels", f"{label!r} twice", "Remove the duplicate."
                )
            self._exact[label] = i
        by_form: dict[tuple[str, ...], list[int]] = {}
        for i, label in enumerate(labels):
            by_form.setdefault(tag_tokens(label), []).append(i)
        self._normalized = {form: ids[0] for form, ids in by_form.items() if len(ids) == 1}
        self.labels_ = tuple(labels)
        return self

    def config(self) -> dict[str, Any]:
        config = super().config()
        if self.labels_ is not None:
            config["vocabulary"] = list(self.labels_)
        return config

    def _check_fitted(self) -> tuple[str, ...]:
        if self.labels_ is None:
            raise NotFittedError(
                "The 'id' embedding has one dimension per label: call fit(vocabulary) "
                "or pass vocabulary= to create_embedding('id', vocabulary=...) first."
            )
        return self.labels_

    @property
    def dim(self) -> int:
        return len(self._check_fitted())

    def _tokenize(self, word: str) -> tuple[str, ...]:
        # Keep the raw tag as a single "token" so that `_embed` can try exact matches.
        return (word,)

    def _embed(self, tokens: list[tuple[str, ...]]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
        labels = self._check_fitted()
        vectors = np.zeros((len(tokens), len(labels)), np.float32)
        missing: list[tuple[str, ...]] = []
        for row, (tag,) in enumerate(tokens):
            column = self._exact.get(tag)
            if column is None:
                column = self._normalized.get(tag_tokens(tag))
            if column is None:
                missing.append((tag,))
            else:
                vectors[row, column] = 1.0
                missing.append(())
        return vectors, missing
