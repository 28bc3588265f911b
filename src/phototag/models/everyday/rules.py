"""The ImageNet classes each everyday keyword's rule names (`phototag.data.everyday`)."""

from __future__ import annotations

import functools
import re

import numpy as np

from phototag.data.everyday import EverydayWord
from phototag.errors import InvalidInputError
from phototag.features.embeddings.wordnet_db import WordNetDatabase
from phototag.features.encoders.imagenet import ImageNetClass, imagenet_classes

_WNID = re.compile(r"n\d{8}")


def rule_classes(
    word: EverydayWord,
    wordnet: WordNetDatabase,
    classes: tuple[ImageNetClass, ...] | None = None,
) -> tuple[int, ...]:
    """Indices of the ImageNet classes that are evidence for `word` (sorted)."""
    classes = classes or imagenet_classes()
    below = _classes_below(wordnet, tuple(c.wnid for c in classes))
    chosen: set[int] = set()
    for token in sorted(word.imagenet, key=lambda t: t.startswith("-")):
        name = token.lstrip("-")
        if _WNID.fullmatch(name):
            found = {c.index for c in classes if c.wnid == name}
            if not found:
                raise InvalidInputError(f"{word.path}: {token}", "an ImageNet-1k class id", name)
        else:
            found = set(below.get(wordnet.synset(name).offset, ()))
            if not found:
                raise InvalidInputError(
                    f"{word.path}: {token}", "a synset with ImageNet classes below it", name
                )
        chosen = chosen - found if token.startswith("-") else chosen | found
    return tuple(sorted(chosen))


def class_matrix(words: tuple[EverydayWord, ...], wordnet: WordNetDatabase) -> np.ndarray:
    """Boolean ``[1000, n_words]``: ImageNet class ``c`` is evidence for word ``w``."""
    matrix = np.zeros((1000, len(words)), dtype=bool)
    for j, word in enumerate(words):
        matrix[list(rule_classes(word, wordnet)), j] = True
    return matrix


@functools.lru_cache(maxsize=2)
def _classes_below(db: WordNetDatabase, wnids: tuple[str, ...]) -> dict[int, tuple[int, ...]]:
    below: dict[int, list[int]] = {}
    for index, wnid in enumerate(wnids):
        synset = db.synset_at("n", int(wnid[1:]))
        for ancestor in (synset, *db.hypernym_closure(synset)):
            if ancestor.key[0] == "n":
                below.setdefault(ancestor.offset, []).append(index)
    return {offset: tuple(indices) for offset, indices in below.items()}
