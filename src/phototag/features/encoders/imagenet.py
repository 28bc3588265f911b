"""The 1000 ImageNet-1k (ILSVRC-2012) classes: index, WordNet synset id, names.

The data file ``imagenet_classes.tsv`` (next to this module) lists the classes in
the standard class-index order every ImageNet classifier uses (the synset ids
sorted). Names are the WordNet 3.0 lemmas of each synset, so ``wnid`` maps straight
into WordNet (``n02123045`` is noun offset ``02123045``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

from phototag.errors import InvalidInputError

_DATA_FILE = "imagenet_classes.tsv"


@dataclass(frozen=True)
class ImageNetClass:
    """One ImageNet class. ``name`` is the first lemma; names are not unique (two
    ``crane``s, two ``maillot``s), ``wnid`` is."""

    index: int
    wnid: str
    name: str
    lemmas: tuple[str, ...]

    @property
    def wordnet_offset(self) -> int:
        """The synset's byte offset in WordNet 3.0 ``data.noun``."""
        return int(self.wnid[1:])


@functools.cache
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """All 1000 classes in class-index order."""
    text = resources.files(__package__).joinpath(_DATA_FILE).read_text(encoding="utf-8")
    classes = []
    for line in text.splitlines():
        if not line or line.startswith("#") or line.startswith("index\t"):
            continue
        index, wnid, name, lemmas = line.split("\t")
        classes.append(ImageNetClass(int(index), wnid, name, tuple(lemmas.split(", "))))
    if [c.index for c in classes] != list(range(1000)):
        raise RuntimeError(f"{_DATA_FILE} is damaged: expected indices 0..999 in order")
    return tuple(classes)


def imagenet_class(key: int | str) -> ImageNetClass:
    """A class by index (``281``) or synset id (``"n02123045"``)."""
    classes = imagenet_classes()
    if isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(classes):
        return classes[key]
    if isinstance(key, str):
        found = _by_wnid().get(key)
        if found is not None:
            return found
    raise InvalidInputError("key", "a class index 0..999 or an ImageNet wnid", repr(key))


@functools.cache
def _by_wnid() -> dict[str, ImageNetClass]:
    return {c.wnid: c for c in imagenet_classes()}
