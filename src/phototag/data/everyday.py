"""The everyday vocabulary (``everyday.tsv`` next to this module): the keywords people
use for their photos, each with its place in a hierarchy (``Animals|Pets|Cat``) and up
to two kinds of evidence:

- **ImageNet rule**: WordNet 3.0 noun synsets by name (``dog.n.01``); every ImageNet
  class at or below one counts for the keyword. ``n02123045`` names one ImageNet class
  by its id, and a leading ``-`` removes a synset's classes (``food.n.01 -menu.n.02``).
  `phototag.models.everyday.rules` turns them into classes.
- **photo labels**: labels of real photo datasets a head is trained on
  (``mirflickr:sky corel5k:sky,clouds``): a photo of that dataset is a positive when it
  has any of the labels, a negative otherwise (the ``everyday`` dataset reader).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from phototag.errors import InvalidInputError

TABLE_FILE = "everyday.tsv"


@dataclass(frozen=True)
class EverydayWord:
    """One keyword of the vocabulary: its path, ImageNet rule and photo labels."""

    path: str
    imagenet: tuple[str, ...] = ()
    photos: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def name(self) -> str:
        """The keyword itself: the last level of its path."""
        return self.path.rsplit("|", 1)[-1]

    def photo_labels(self, dataset: str) -> tuple[str, ...]:
        """The labels of `dataset` whose photos are positives for this keyword."""
        return next((labels for name, labels in self.photos if name == dataset), ())


def read_table(path: str | Path | None = None) -> tuple[EverydayWord, ...]:
    """The keywords of a rule table (default: the shipped ``everyday.tsv``)."""
    if path is None:
        text = resources.files(__package__).joinpath(TABLE_FILE).read_text(encoding="utf-8")
        source = TABLE_FILE
    else:
        text = Path(path).read_text(encoding="utf-8")
        source = str(path)
    words: list[EverydayWord] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#") or line.startswith("keyword\t"):
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not fields[0].strip():
            raise InvalidInputError(
                f"{source}:{number}", "keyword<TAB>imagenet<TAB>photos", repr(line)
            )
        photos = []
        for group in fields[2].split():
            dataset, _, labels = group.partition(":")
            if not labels:
                raise InvalidInputError(f"{source}:{number}", "dataset:label,label", repr(group))
            photos.append((dataset, tuple(labels.split(","))))
        words.append(EverydayWord(fields[0].strip(), tuple(fields[1].split()), tuple(photos)))
    paths = [w.path.casefold() for w in words]
    if len(set(paths)) != len(paths):
        raise InvalidInputError(source, "each keyword once", "a repeated keyword")
    return tuple(words)
