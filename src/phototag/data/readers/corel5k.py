"""Corel-5k, ESP Game and IAPR TC-12: the standard benchmark splits of the annotation
literature (labels as JSON sample lists, one vocabulary file), and Corel-5k's original
Duygulu et al. label files.
"""

from __future__ import annotations

from pathlib import Path

from phototag.data.annotation_set import AnnotationSet, from_label_sets, merge_splits
from phototag.data.readers import register_reader
from phototag.data.readers._common import (
    ImageResolver,
    attach_images,
    choice_option,
    directory_option,
    first_existing,
    line_at,
    load_json,
    read_text,
    read_vocabulary_file,
    require_file,
    resolve_image_paths,
)
from phototag.data.vocabulary import Vocabulary
from phototag.errors import DatasetFormatError

SPLITS = ("train", "test")
JSON_LAYOUT = (
    '{split}.json = {{"samples": [{{"image_name": ..., "image_labels": [...]}}, ...]}} '
    "for train and test, and one *_vocabulary.txt (one word per line)"
)
COREL_LAYOUT = (
    "PATH/split260/{train,test}.json, PATH/split260/corel5k_vocabulary.txt "
    "(or PATH/corel5k_vocabulary.txt), PATH/duygulu/{words,training_label,test_label}, "
    "optional images PATH/train/*.jpeg, PATH/test/*.jpeg"
)
DUYGULU_FILES = {"train": "training_label", "test": "test_label"}


def _read_samples(path: Path, vocabulary: Vocabulary, split: str) -> AnnotationSet:
    """One ``{"samples": [{"image_name", "image_labels"}]}`` file."""
    data, text = load_json(path)
    samples = data.get("samples") if isinstance(data, dict) else None
    if not isinstance(samples, list):
        raise DatasetFormatError(path, 'expected a JSON object with a "samples" list', 1)
    ids: list[str] = []
    label_sets: list[list[str]] = []
    seen: dict[str, int] = {}

    def line(name: object, occurrence: int = 0) -> int | None:
        """Line of the sample (found again only when reporting an error)."""
        if not isinstance(name, str):
            return None
        needle = f'"{name}"'
        position = -1
        for _ in range(occurrence + 1):
            position = text.find(needle, position + 1)
        return None if position < 0 else line_at(text, position)

    for k, sample in enumerate(samples):
        name = sample.get("image_name") if isinstance(sample, dict) else None
        labels = sample.get("image_labels") if isinstance(sample, dict) else None
        if not isinstance(name, str) or not name:
            raise DatasetFormatError(
                path, f'samples[{k}]: expected a non-empty string "image_name"', line(name)
            )
        if not isinstance(labels, list) or not all(isinstance(w, str) for w in labels):
            raise DatasetFormatError(
                path,
                f'samples[{k}] ({name}): expected "image_labels" as a list of words',
                line(name),
            )
        if name in seen:
            raise DatasetFormatError(
                path, f"samples[{k}]: image {name!r} repeats samples[{seen[name]}]", line(name, 1)
            )
        unknown = [w for w in labels if w not in vocabulary]
        if unknown:
            raise DatasetFormatError(
                path,
                f"samples[{k}] ({name}): label {unknown[0]!r} is not in the vocabulary file",
                line(name),
            )
        seen[name] = k
        ids.append(name)
        label_sets.append(labels)
    return from_label_sets(split, ids, label_sets, vocabulary)


def _read_json_splits(
    name: str, directory: Path, vocabulary_path: Path, layout: str
) -> AnnotationSet:
    vocabulary = read_vocabulary_file(vocabulary_path, "word")
    parts = {
        split: _read_samples(require_file(directory / f"{split}.json", layout), vocabulary, split)
        for split in SPLITS
    }
    return merge_splits(name, parts)


def _read_duygulu(directory: Path) -> AnnotationSet:
    """Duygulu et al.'s files: ``words`` and ``<image id> <1-based word ids>`` per line."""
    layout = "PATH/duygulu/words, PATH/duygulu/training_label, PATH/duygulu/test_label"
    vocabulary = read_vocabulary_file(require_file(directory / "words", layout), "word")
    notes: list[str] = []
    parts = {}
    for split, file in DUYGULU_FILES.items():
        path = require_file(directory / file, layout)
        ids: list[str] = []
        rows: list[list[str]] = []
        seen: dict[str, int] = {}
        for number, line in enumerate(read_text(path).splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            image, words = fields[0], fields[1:]
            if not image.isdigit():
                raise DatasetFormatError(
                    path, f"expected a numeric image id, found {image!r}", number
                )
            if image in seen:
                raise DatasetFormatError(path, f"image {image} repeats line {seen[image]}", number)
            word_ids = []
            for word in words:
                if not word.isdigit() or not 1 <= int(word) <= len(vocabulary):
                    raise DatasetFormatError(
                        path,
                        f"expected word ids 1..{len(vocabulary)} (lines of words), found {word!r}",
                        number,
                    )
                word_ids.append(int(word))
            if len(set(word_ids)) != len(word_ids):
                repeated = sorted({w for w in word_ids if word_ids.count(w) > 1})
                notes.append(
                    f"{path}, line {number}: word id(s) {repeated} listed twice for image "
                    f"{image}; counted once"
                )
            seen[image] = number
            ids.append(f"{image}.jpeg")
            rows.append([vocabulary[w - 1] for w in word_ids])
        parts[split] = from_label_sets(split, ids, rows, vocabulary)
    dataset = merge_splits("corel5k", parts)
    dataset.notes.extend(notes)
    return dataset


def _attach_split_images(
    dataset: AnnotationSet, image_root: Path, drop_missing: bool, fix: str
) -> AnnotationSet:
    """Resolve each item's image as ``root/<split>/<name>``, ``root/<name>`` or by name."""
    split_of = [""] * dataset.n_items
    for split, indices in dataset.splits.items():
        for i in indices:
            split_of[i] = split
    resolver = ImageResolver(image_root)
    paths, kept = resolve_image_paths(
        image_root,
        dataset.item_ids,
        lambda i: resolver.find(dataset.item_ids[i], split_of[i]),
        drop_missing=drop_missing,
        notes=dataset.notes,
        fix=fix,
    )
    return attach_images(dataset, paths, kept)


@register_reader("corel5k")
def read_corel5k(
    path: Path,
    *,
    labels: str | None = None,
    images: str | None = None,
    missing_images: str | None = None,
) -> AnnotationSet:
    """Corel-5k: 4,500 train / 499 test images, 260-word benchmark split or Duygulu's 374 words.

    Options:
        labels: ``split260`` (default; ``split260/{train,test}.json`` with the
            260-word ``corel5k_vocabulary.txt``) or ``duygulu`` (the original files
            ``duygulu/{words,training_label,test_label}``, 374 words).
        images: folder holding the JPEGs (``<split>/<name>`` or ``<name>``); default
            ``PATH/train`` and ``PATH/test`` when present.
        missing_images: ``error`` (default) or ``drop`` items whose image is missing.

    Ids are the image file names (``1000.jpeg``); items keep each label file's order.
    """
    mode = choice_option("labels", labels, ("split260", "duygulu"), "split260")
    drop = choice_option("missing_images", missing_images, ("error", "drop"), "error") == "drop"
    image_root = directory_option("images", images)
    root = Path(path)
    if not root.is_dir():
        raise DatasetFormatError(root, f"not a directory; expected layout: {COREL_LAYOUT}")
    if mode == "duygulu":
        dataset = _read_duygulu(root / "duygulu")
    else:
        vocabulary_path = first_existing(
            [root / "split260" / "corel5k_vocabulary.txt", root / "corel5k_vocabulary.txt"],
            COREL_LAYOUT,
        )
        dataset = _read_json_splits("corel5k", root / "split260", vocabulary_path, COREL_LAYOUT)
    if image_root is None and all((root / split).is_dir() for split in SPLITS):
        image_root = root.resolve()
    if image_root is not None:
        dataset = _attach_split_images(
            dataset, image_root, drop, "Pass missing_images=drop to leave those items out."
        )
    return dataset


def _read_labels_only(
    name: str, path: Path, images: str | None, missing_images: str | None
) -> AnnotationSet:
    drop = choice_option("missing_images", missing_images, ("error", "drop"), "error") == "drop"
    image_root = directory_option("images", images)
    root = Path(path)
    layout = f"PATH/{JSON_LAYOUT}"
    if not root.is_dir():
        raise DatasetFormatError(root, f"not a directory; expected layout: {layout}")
    candidates = sorted(root.glob("*_vocabulary.txt"))
    if len(candidates) != 1:
        found = ", ".join(c.name for c in candidates) or "none"
        raise DatasetFormatError(
            root / f"{name}_vocabulary.txt",
            f"expected exactly one *_vocabulary.txt in {root} (found {found}); "
            f"expected layout: {layout}",
        )
    dataset = _read_json_splits(name, root, candidates[0], layout)
    if image_root is not None:
        dataset = _attach_split_images(
            dataset,
            image_root,
            drop,
            f"Check images={image_root}, or pass missing_images=drop to leave those items out.",
        )
    return dataset


@register_reader("espgame")
def read_espgame(
    path: Path, *, images: str | None = None, missing_images: str | None = None
) -> AnnotationSet:
    """ESP Game benchmark split: 18,689 train / 2,081 test, 268 words (labels only by default).

    Options:
        images: folder holding the images (``<split>/<name>``, ``<name>`` or anywhere
            below by unique file name); without it the set has no image paths.
        missing_images: ``error`` (default) or ``drop`` items whose image is missing.
    """
    return _read_labels_only("espgame", path, images, missing_images)


@register_reader("iaprtc12")
def read_iaprtc12(
    path: Path, *, images: str | None = None, missing_images: str | None = None
) -> AnnotationSet:
    """IAPR TC-12 benchmark split: 17,665 train / 1,962 test, 291 words (labels only by default).

    Options:
        images: folder holding the images (``<split>/<name>``, ``<name>`` or anywhere
            below by unique file name, e.g. the official ``images/NN/`` tree);
            without it the set has no image paths.
        missing_images: ``error`` (default) or ``drop`` items whose image is missing.
    """
    return _read_labels_only("iaprtc12", path, images, missing_images)
