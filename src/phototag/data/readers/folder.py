"""A folder of your own images, labelled by a CSV/JSON file or by the photos' keywords."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np

from phototag.data.annotation_set import AnnotationSet, from_label_sets
from phototag.data.readers import register_reader
from phototag.data.readers._common import (
    IMAGE_EXTENSIONS,
    csv_columns,
    line_of,
    load_json,
    read_text,
)
from phototag.data.vocabulary import Vocabulary
from phototag.errors import DatasetFormatError, InvalidInputError

DEFAULT_LABEL_FILES = ("labels.csv", "labels.json")
LABEL_SEPARATORS = re.compile(r"[;|]")


def list_images(root: Path) -> list[str]:
    """Image files below `root` as sorted POSIX relative paths; hidden entries skipped."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(folder).relative_to(root)
        for file in files:
            if not file.startswith(".") and Path(file).suffix.lower() in IMAGE_EXTENSIONS:
                found.append((base / file).as_posix())
    return sorted(found)


class _Entry:
    """One labelled image from the label file."""

    def __init__(self, labels: list[str], line: int | None, split: str = "") -> None:
        self.labels = labels
        self.line = line
        self.split = split


def _relative(raw: str, where: Path, line: int | None) -> str:
    """A label-file path as a normalised POSIX path relative to the folder."""
    text = raw.strip().replace("\\", "/")
    path = PurePosixPath(text)
    if not text or path.is_absolute() or ".." in path.parts:
        raise DatasetFormatError(
            where, f"expected an image path relative to the folder, found {raw!r}", line
        )
    return path.as_posix().removeprefix("./")


def _read_csv(path: Path) -> dict[str, _Entry]:
    """``path,labels[,split]`` with a header; labels separated by ``;`` or ``|``."""
    text = read_text(path)
    reader = csv.reader(io.StringIO(text))
    rows = iter(reader)
    header = next(rows, None)
    if not header:
        raise DatasetFormatError(path, "empty; expected a header line `path,labels`", 1)
    columns = csv_columns(header, ("path", "labels"), path)
    split_column = columns.get("split")
    entries: dict[str, _Entry] = {}
    for row in rows:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DatasetFormatError(
                path, f"expected {len(header)} columns (as the header), found {len(row)}", line
            )
        relative = _relative(row[columns["path"]], path, line)
        if relative in entries:
            raise DatasetFormatError(
                path, f"{relative!r} is listed again (first on line {entries[relative].line})", line
            )
        labels = [x.strip() for x in LABEL_SEPARATORS.split(row[columns["labels"]]) if x.strip()]
        split = row[split_column].strip() if split_column is not None else ""
        entries[relative] = _Entry(list(dict.fromkeys(labels)), line, split)
    return entries


def _read_json(path: Path) -> dict[str, _Entry]:
    """``{"relative/path.jpg": ["label", ...], ...}``."""
    data, text = load_json(path)
    if not isinstance(data, dict):
        raise DatasetFormatError(path, 'expected an object {"relative/path.jpg": [labels]}', 1)
    entries: dict[str, _Entry] = {}
    for key, labels in data.items():
        line = line_of(text, json.dumps(key)) or line_of(text, json.dumps(key, ensure_ascii=False))
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise DatasetFormatError(
                path, f"{key!r}: expected a list of label strings, found {labels!r}", line
            )
        relative = _relative(key, path, line)
        if relative in entries:
            raise DatasetFormatError(path, f"{key!r} names an image listed before", line)
        cleaned = [x.strip() for x in labels if x.strip()]
        entries[relative] = _Entry(list(dict.fromkeys(cleaned)), line)
    return entries


# Label-file readers by suffix; the photos' own keywords are the other label source.
LABEL_FILE_READERS: dict[str, Callable[[Path], dict[str, _Entry]]] = {
    ".csv": _read_csv,
    ".json": _read_json,
}


KEYWORDS = "keywords"
NO_LABELS = "none"
UNLABELED = "unlabeled"


def _label_file(root: Path, option: str | None) -> Path | None:
    if option is None or option == "":
        return next((root / n for n in DEFAULT_LABEL_FILES if (root / n).is_file()), None)
    if option in (KEYWORDS, NO_LABELS):
        return None
    candidate = Path(option).expanduser()
    if not candidate.is_absolute() and not candidate.is_file():
        candidate = root / candidate
    if candidate.suffix.lower() not in LABEL_FILE_READERS:
        raise InvalidInputError(
            "labels",
            f"a .csv or .json label file, {KEYWORDS!r} or {NO_LABELS!r}",
            repr(option),
            "See docs/datasets.md, `folder` reader, for the two formats.",
        )
    if not candidate.is_file():
        raise InvalidInputError("labels", "an existing label file", f"{option} (not found)")
    return candidate


def _keyword_entries(root: Path, ids: list[str], notes: list[str]) -> dict[str, _Entry]:
    """Labels from each photo's own keywords (`phototag.metadata.read_keywords`): the ones
    people wrote, not phototag's suggestions; spellings differing only in case merge into
    the first one met. Unreadable metadata is noted and gives no labels."""
    from phototag.metadata import MetadataError, read_keywords

    spelling: dict[str, str] = {}
    entries: dict[str, _Entry] = {}
    unreadable = []
    for image_id in ids:
        try:
            user = read_keywords(root / image_id).user
        except MetadataError as error:
            unreadable.append(f"{image_id} ({error.problem})")
            continue
        if user:
            labels = [spelling.setdefault(k.casefold(), k) for k in user]
            entries[image_id] = _Entry(list(dict.fromkeys(labels)), None, "train")
    if unreadable:
        notes.append(f"keywords of {len(unreadable)} of {len(ids)} images could not be read, "
                     f"e.g. {unreadable[0]}: no labels")  # fmt: skip
    return entries


@register_reader("folder")
def read_folder(path: Path, *, labels: str | None = None) -> AnnotationSet:
    """A folder of images (searched recursively), labelled by a file or by their keywords.

    Options:
        labels: where labels come from. ``keywords``: each photo's own keywords (XMP
            ``dc:subject``, ``lr:hierarchicalSubject`` leaves, ``digiKam:TagsList``, IPTC
            ``Keywords``, and XMP sidecars; not phototag's own suggestions); tagged
            photos form split ``train``, the rest split ``unlabeled``. A ``.csv`` file
            (header ``path,labels`` and an optional ``split`` column; labels separated by
            ``;`` or ``|``) or ``.json`` file (``{"relative/path.jpg": ["label", ...]}``).
            ``none``: no labels. Default: ``labels.csv`` or ``labels.json`` in the folder,
            else ``keywords``.

    Items are all image files below PATH (jpg jpeg png webp tif tiff bmp gif heic heif;
    hidden files and folders skipped), sorted by relative path, which is their id.
    Images the label file does not list have no labels. With a label file, splits come
    only from the CSV ``split`` column.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetFormatError(root, "not a directory; expected a folder of images")
    root = root.resolve()
    label_file = _label_file(root, labels)
    ids = list_images(root)
    notes: list[str] = []
    from_keywords = label_file is None and labels != NO_LABELS
    if label_file is not None:
        entries = LABEL_FILE_READERS[label_file.suffix.lower()](label_file)
    elif from_keywords:
        entries = _keyword_entries(root, ids, notes)
    else:
        entries = {}
    known = set(ids)
    for relative, entry in entries.items():
        if relative not in known:
            target = root / relative
            if not target.is_file():
                problem = f"image {relative!r} not found in {root}"
            else:
                problem = (
                    f"{relative!r} is not an image the folder reader reads (hidden, or not "
                    f"one of {' '.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))})"
                )
            raise DatasetFormatError(label_file or root, problem, entry.line)
    label_sets = [entries[i].labels if i in entries else [] for i in ids]
    splits: dict[str, list[int]] = {}
    for index, image_id in enumerate(ids):
        listed = entries.get(image_id)
        if listed is not None and listed.split:
            splits.setdefault(listed.split, []).append(index)
    unlabelled = [index for index, image_id in enumerate(ids) if image_id not in entries]
    if label_file is not None and unlabelled:
        notes.append(
            f"{len(unlabelled)} of {len(ids)} images are not in {label_file.name}: no labels"
        )
    if from_keywords and unlabelled:
        splits[UNLABELED] = unlabelled
        if entries:
            notes.append(f"{len(unlabelled)} of {len(ids)} images have no keywords: "
                         f"split {UNLABELED!r}")  # fmt: skip
    vocabulary = Vocabulary(sorted({x for labels_ in label_sets for x in labels_}))
    return from_label_sets(
        root.name,
        ids,
        label_sets,
        vocabulary,
        image_paths=[str(root / i) for i in ids],
        splits={k: np.asarray(v) for k, v in splits.items()},
        notes=notes,
    )
