"""MS-COCO as a multi-label set: image-level labels from the instance annotations
(80 categories), optional noisy user tags from the captions.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from phototag.data.annotation_set import AnnotationSet, merge_splits, multi_hot
from phototag.data.readers import register_reader
from phototag.data.readers._common import (
    ImageResolver,
    attach_images,
    bool_option,
    choice_option,
    directory_option,
    int_option,
    line_at,
    load_json,
    resolve_image_paths,
)
from phototag.data.vocabulary import Vocabulary
from phototag.errors import DatasetFormatError, InvalidInputError

YEARS = ("2014", "2017")
# official file name part -> split name in the AnnotationSet
SPLITS = {"train": "train", "val": "test"}
LAYOUT = (
    "PATH/annotations/instances_{train,val}<year>.json (year 2014 or 2017), optional "
    "PATH/annotations/captions_{train,val}<year>.json and images PATH/{train,val}<year>/"
)
WORD = re.compile(r"[^\W\d_]+")
# Function words removed with stopwords=drop (written for phototag; short on purpose).
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be been before being
    below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not of off on once only or
    other our ours ourselves out over own s same she should so some such t than that the
    their theirs them themselves then there these they this those through to too under
    until up very was we were what when where which while who whom why will with you
    your yours yourself yourselves""".split()  # noqa: SIM905
)


def _error_line(path: Path, pattern: str) -> int | None:
    """Line of the first match of `pattern` in `path` (read again only to report an error)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    match = re.search(pattern, text)
    return None if match is None else line_at(text, match.start())


def _entries(data: Any, key: str, path: Path) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise DatasetFormatError(path, f'expected a JSON object with a "{key}" list', 1)
    entries = data[key]
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DatasetFormatError(path, f"{key}[{k}]: expected an object", None)
    return entries


def _field(entry: dict[str, Any], name: str, kind: type, path: Path, where: str) -> Any:
    value = entry.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        entry_id = entry.get("id")
        line = _error_line(path, rf'"id"\s*:\s*{entry_id}\b') if isinstance(entry_id, int) else None
        raise DatasetFormatError(
            path, f'{where}: expected "{name}" as {kind.__name__}, found {value!r}', line
        )
    return value


def _categories(data: Any, path: Path) -> list[tuple[int, str]]:
    pairs = []
    for k, entry in enumerate(_entries(data, "categories", path)):
        pairs.append(
            (
                _field(entry, "id", int, path, f"categories[{k}]"),
                _field(entry, "name", str, path, f"categories[{k}]"),
            )
        )
    ids = [i for i, _ in pairs]
    if len(set(ids)) != len(ids):
        raise DatasetFormatError(path, "category ids repeat; expected unique ids", None)
    return sorted(pairs)


def _read_instances(
    path: Path, split: str, vocabulary: Vocabulary | None
) -> tuple[AnnotationSet, list[tuple[int, str]], dict[int, int]]:
    """Items (file names), image-level labels and the image id -> row map of one split."""
    data, _ = load_json(path)
    categories = _categories(data, path)
    if vocabulary is None:
        try:
            vocabulary = Vocabulary(name for _, name in categories)
        except InvalidInputError as exc:
            raise DatasetFormatError(path, f"categories: {exc}") from None
    column = {category_id: k for k, (category_id, _) in enumerate(categories)}
    row_of: dict[int, int] = {}
    ids: list[str] = []
    for k, image in enumerate(_entries(data, "images", path)):
        image_id = _field(image, "id", int, path, f"images[{k}]")
        file_name = _field(image, "file_name", str, path, f"images[{k}]")
        if image_id in row_of:
            line = _error_line(path, rf'"id"\s*:\s*{image_id}\b')
            raise DatasetFormatError(path, f"images[{k}]: image id {image_id} repeats", line)
        row_of[image_id] = len(ids)
        ids.append(file_name)
    rows: list[list[int]] = [[] for _ in ids]
    for k, annotation in enumerate(_entries(data, "annotations", path)):
        image_id = _field(annotation, "image_id", int, path, f"annotations[{k}]")
        category_id = _field(annotation, "category_id", int, path, f"annotations[{k}]")
        problem = None
        if image_id not in row_of:
            problem = f"image_id {image_id} is not in images"
        elif category_id not in column:
            problem = f"category_id {category_id} is not in categories"
        if problem:
            ann_id = annotation.get("id")
            line = _error_line(path, rf'"id"\s*:\s*{ann_id}\b') if isinstance(ann_id, int) else None
            raise DatasetFormatError(path, f"annotations[{k}] (id {ann_id}): {problem}", line)
        rows[row_of[image_id]].append(column[category_id])
    if len(set(ids)) != len(ids):
        repeated = next(name for name, n in Counter(ids).items() if n > 1)
        raise DatasetFormatError(path, f"file_name {repeated!r} is used by two images", None)
    dataset = AnnotationSet(
        split,
        ids,
        vocabulary,
        multi_hot(rows, len(vocabulary)),
        metadata={"image_id": np.fromiter(row_of, dtype=np.int64, count=len(row_of))},
    )
    return dataset, categories, row_of


def _caption_words(path: Path, row_of: Mapping[int, int], stopwords: bool) -> list[set[str]]:
    """Per image (row), the set of lower-cased caption words."""
    data, _ = load_json(path)
    words: list[set[str]] = [set() for _ in row_of]
    for k, annotation in enumerate(_entries(data, "annotations", path)):
        image_id = _field(annotation, "image_id", int, path, f"annotations[{k}]")
        caption = _field(annotation, "caption", str, path, f"annotations[{k}]")
        if image_id not in row_of:
            ann_id = annotation.get("id")
            line = _error_line(path, rf'"id"\s*:\s*{ann_id}\b') if isinstance(ann_id, int) else None
            raise DatasetFormatError(
                path,
                f"annotations[{k}] (id {ann_id}): image_id {image_id} is not in the "
                "instances file's images",
                line,
            )
        tokens = WORD.findall(caption.lower())
        words[row_of[image_id]].update(t for t in tokens if not (stopwords and t in STOPWORDS))
    return words


def caption_tag_vocabulary(train_words: Sequence[set[str]], n_tags: int) -> Vocabulary:
    """The `n_tags` words used by the most training images (ties: alphabetical)."""
    counts = Counter(word for words in train_words for word in words)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return Vocabulary(word for word, _ in ranked[:n_tags])


@register_reader("coco")
def read_coco(
    path: Path,
    *,
    year: str | None = None,
    images: str | None = None,
    tags: str | None = None,
    n_tags: str | None = None,
    stopwords: str | None = None,
    missing_images: str | None = None,
) -> AnnotationSet:
    """MS-COCO instances -> 80 image-level labels; train<year> = train, val<year> = test.

    Options:
        year: ``2014`` or ``2017``; default: the one whose instance files are present.
        images: folder with ``train<year>/`` and ``val<year>/`` (or the files
            directly); default ``PATH`` when those folders exist there.
        tags: ``true`` (default) turns ``captions_*.json``, when present, into noisy
            user tags; ``false`` skips them.
        n_tags: size of the caption tag vocabulary (default 1000).
        stopwords: ``keep`` (default, as in the M3 paper: the most frequent caption
            words, no filtering) or ``drop`` (remove a short English function-word list).
        missing_images: ``error`` (default) or ``drop`` items whose image is missing.

    Labels: a category is present when the image has at least one instance of it
    (crowd annotations included). Vocabulary: category-id order, names as in the file.
    Ids: ``file_name``; ``metadata["image_id"]`` holds the COCO image id. Caption tags:
    captions lower-cased and cut at every non-letter; an image's tags are the
    vocabulary words in any of its captions; the vocabulary is the `n_tags` words used
    by the most *train* images (ties alphabetical), in that order.
    """
    root = Path(path)
    with_tags = bool_option("tags", tags, True)
    size = int_option("n_tags", n_tags, 1000, minimum=1)
    drop_stopwords = choice_option("stopwords", stopwords, ("keep", "drop"), "keep") == "drop"
    drop = choice_option("missing_images", missing_images, ("error", "drop"), "error") == "drop"
    image_root = directory_option("images", images)
    annotations = root / "annotations"
    if not root.is_dir():
        raise DatasetFormatError(root, f"not a directory; expected layout: {LAYOUT}")
    present = [
        y for y in YEARS if all((annotations / f"instances_{s}{y}.json").is_file() for s in SPLITS)
    ]
    if year is None or year == "":
        if len(present) != 1:
            if present:
                raise InvalidInputError(
                    "year", "one of 2014, 2017", "none", "Both are present: add ?year=2014."
                )
            raise DatasetFormatError(
                annotations / "instances_train2014.json",
                f"file not found (nor the 2017 files); expected layout: {LAYOUT}",
            )
        year = present[0]
    year = choice_option("year", year, YEARS, "2014")

    parts: dict[str, AnnotationSet] = {}
    rows_of: dict[str, dict[int, int]] = {}
    vocabulary: Vocabulary | None = None
    reference: tuple[Path, list[tuple[int, str]]] | None = None
    notes: list[str] = []
    for official, split in SPLITS.items():
        file = annotations / f"instances_{official}{year}.json"
        if not file.is_file():
            raise DatasetFormatError(file, f"file not found; expected layout: {LAYOUT}")
        part, categories, row_of = _read_instances(file, split, vocabulary)
        if reference is not None and categories != reference[1]:
            raise DatasetFormatError(
                file, f"categories differ from those of {reference[0].name}; expected the same"
            )
        reference = reference or (file, categories)
        vocabulary = part.vocabulary
        unlabelled = int((part.label_counts() == 0).sum())
        if unlabelled:
            notes.append(
                f"{file.name}: {unlabelled} of {part.n_items} images have no instance "
                "annotation (kept, with no labels)"
            )
        parts[split] = part
        rows_of[split] = row_of

    fields: dict[str, Any] = {}
    caption_files = {s: annotations / f"captions_{o}{year}.json" for o, s in SPLITS.items()}
    if with_tags and any(f.is_file() for f in caption_files.values()):
        missing = [f for f in caption_files.values() if not f.is_file()]
        if missing:
            raise DatasetFormatError(
                missing[0], f"file not found (the other captions file exists); {LAYOUT}"
            )
        words = {
            s: _caption_words(caption_files[s], rows_of[s], drop_stopwords) for s in SPLITS.values()
        }
        tag_vocabulary = caption_tag_vocabulary(words["train"], size)
        rows = [tag_vocabulary.indices(w, unknown="skip").tolist() for s in parts for w in words[s]]
        fields = {
            "tag_vocabulary": tag_vocabulary,
            "user_tags": multi_hot(rows, len(tag_vocabulary)),
        }
    image_id = np.concatenate([p.metadata["image_id"] for p in parts.values()])
    dataset = merge_splits("coco", parts, metadata={"image_id": image_id}, **fields)
    dataset.notes.extend(notes)

    if image_root is None and all((root / f"{o}{year}").is_dir() for o in SPLITS):
        image_root = root.resolve()
    if image_root is not None:
        folder = {split: f"{official}{year}" for official, split in SPLITS.items()}
        split_of = [""] * dataset.n_items
        for split, indices in dataset.splits.items():
            for i in indices:
                split_of[i] = folder[split]
        resolver = ImageResolver(image_root)
        paths, kept = resolve_image_paths(
            image_root,
            dataset.item_ids,
            lambda i: resolver.find(dataset.item_ids[i], split_of[i]),
            drop_missing=drop,
            notes=dataset.notes,
        )
        dataset = attach_images(dataset, paths, kept)
    return dataset
