"""MIRFLICKR-25k (Huiskes & Lew, 2008): 25,000 Flickr images, 24 concepts, user tags.

Two forms are read: the official distribution (images, ``meta/tags``, annotation
lists) and the cleaned ``.mat`` matrices of the cross-modal retrieval literature.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import scipy.sparse as sp

from phototag.data.annotation_set import AnnotationSet, multi_hot
from phototag.data.readers import register_reader
from phototag.data.readers._common import (
    attach_images,
    bool_option,
    choice_option,
    directory_option,
    int_option,
    read_text,
    resolve_image_paths,
    synthetic_ids,
)
from phototag.data.vocabulary import Vocabulary
from phototag.errors import DatasetFormatError, InvalidInputError

OFFICIAL_LAYOUT = (
    "PATH/mirflickr/im<N>.jpg, PATH/mirflickr/meta/tags/tags<N>.txt (or PATH/meta/tags/), "
    "PATH/annotations/<concept>.txt and <concept>_r1.txt (1-based image numbers)"
)
MAT_LAYOUT = "PATH/mirflickr25k-lall.mat (LAll) and optional PATH/mirflickr25k-yall.mat (YAll)"
# The 24 MIRFLICKR-25k concepts in alphabetical order: the assumed column order of LAll.
CONCEPTS24 = [
    "animals",
    "baby",
    "bird",
    "car",
    "clouds",
    "dog",
    "female",
    "flower",
    "food",
    "indoor",
    "lake",
    "male",
    "night",
    "people",
    "plant_life",
    "portrait",
    "river",
    "sea",
    "sky",
    "structures",
    "sunset",
    "transport",
    "tree",
    "water",
]
IMAGE = re.compile(r"im(\d+)\.jpg$")
TAGS = re.compile(r"tags(\d+)\.txt$")
IGNORED_ANNOTATION_FILES = re.compile(r"(readme|license|licence)", re.IGNORECASE)


def _random_split(n: int, test_size: str | None, seed: str | None) -> dict[str, np.ndarray]:
    """Seeded random train/test split; `test_size` is a count (2000) or fraction (0.2)."""
    if test_size is None or test_size in ("", "none"):
        return {}
    try:
        size = float(test_size)
    except ValueError:
        raise InvalidInputError(
            "test_size", "a count (e.g. 2000) or a fraction (e.g. 0.2)", repr(test_size)
        ) from None
    count = int(round(size * n)) if 0 < size < 1 else int(size)
    if not 0 < count < n or (size >= 1 and size != int(size)):
        raise InvalidInputError(
            "test_size", f"a count in 1..{n - 1} or a fraction in (0, 1)", repr(test_size)
        )
    rng = np.random.default_rng(int_option("seed", seed, 0))
    order = rng.permutation(n)
    return {"train": np.sort(order[count:]), "test": np.sort(order[:count])}


def _split_note(splits: dict[str, np.ndarray], seed: str | None) -> list[str]:
    if not splits:
        return ["no official train/test split: the set has no splits (use test_size=...)"]
    return [
        f"random split (seed {int_option('seed', seed, 0)}): {len(splits['train'])} train, "
        f"{len(splits['test'])} test; not an official split"
    ]


# ------------------------------------------------------------------ .mat form


def _load_mat(path: Path, key: str) -> np.ndarray:
    try:
        contents = scipy.io.loadmat(path)
    except NotImplementedError:
        raise DatasetFormatError(
            path, "MATLAB v7.3 (HDF5) file; reading it needs h5py, which phototag does not use"
        ) from None
    except (ValueError, OSError) as exc:
        raise DatasetFormatError(path, f"not a readable MATLAB file ({exc})") from None
    if key not in contents:
        found = ", ".join(k for k in contents if not k.startswith("__")) or "none"
        raise DatasetFormatError(path, f"expected a variable {key!r}, found {found}")
    matrix = np.asarray(contents[key])
    if matrix.ndim != 2:
        raise DatasetFormatError(path, f"{key}: expected a 2-D matrix, shape {matrix.shape}")
    values = np.unique(matrix)
    if not np.isin(values, (0, 1)).all():
        bad = values[~np.isin(values, (0, 1))][0].item()
        row = int(np.argwhere(matrix == bad)[0][0])
        raise DatasetFormatError(
            path, f"{key}: expected 0/1 entries, found {bad!r} (row {row + 1} of the matrix)"
        )
    return matrix.astype(bool)


def _read_mat(root: Path, test_size: str | None, seed: str | None) -> AnnotationSet:
    labels_file = root / "mirflickr25k-lall.mat"
    labels = _load_mat(labels_file, "LAll")
    if labels.shape[1] != len(CONCEPTS24):
        raise DatasetFormatError(
            labels_file, f"LAll: expected {len(CONCEPTS24)} columns, found {labels.shape[1]}"
        )
    n = labels.shape[0]
    notes = [
        f"{labels_file.name}: LAll column order assumed to be the alphabetical 24-concept "
        "list (the file names no concepts; not verified)",
        "ids are synthetic (row/000000 = row 1 of LAll); the .mat files carry no image ids",
    ]
    fields = {}
    tags_file = root / "mirflickr25k-yall.mat"
    if tags_file.is_file():
        tags = _load_mat(tags_file, "YAll")
        if tags.shape[0] != n:
            raise DatasetFormatError(
                tags_file, f"YAll: expected {n} rows (as LAll), found {tags.shape[0]}"
            )
        fields = {
            "tag_vocabulary": Vocabulary(f"tag{j:04d}" for j in range(tags.shape[1])),
            "user_tags": sp.csr_matrix(tags),
        }
        notes.append(
            f"{tags_file.name}: user tags named tag0000..tag{tags.shape[1] - 1:04d} "
            "(column numbers; the file has no tag names)"
        )
    splits = _random_split(n, test_size, seed)
    notes.extend(_split_note(splits, seed))
    return AnnotationSet(
        "mirflickr",
        synthetic_ids("row", n),
        Vocabulary(CONCEPTS24),
        sp.csr_matrix(labels),
        splits=splits,
        notes=notes,
        **fields,
    )


# ------------------------------------------------------------- official form


def _numbered(directory: Path, pattern: re.Pattern[str]) -> dict[int, Path]:
    found = {}
    if directory.is_dir():
        for file in directory.iterdir():
            match = pattern.fullmatch(file.name)
            if match:
                found[int(match.group(1))] = file
    return found


def _read_image_numbers(path: Path, n: int) -> list[int]:
    numbers = []
    for line, text in enumerate(read_text(path).splitlines(), start=1):
        text = text.strip()
        if not text:
            continue
        if not text.isdigit() or not 1 <= int(text) <= n:
            raise DatasetFormatError(path, f"expected an image number 1..{n}, found {text!r}", line)
        numbers.append(int(text))
    return numbers


def _read_official(
    root: Path,
    relevant_only: bool,
    tags: str,
    min_tag_count: int,
    image_root: Path | None,
    drop_missing: bool,
    test_size: str | None,
    seed: str | None,
) -> AnnotationSet:
    annotations = root / "annotations"
    if not annotations.is_dir():
        raise DatasetFormatError(
            annotations, f"folder not found; expected layout: {OFFICIAL_LAYOUT}"
        )
    image_dir = image_root or root / "mirflickr"
    meta = next(
        (m for m in (root / "mirflickr" / "meta", root / "meta") if m.is_dir()), root / "meta"
    )
    tag_folder = meta / ("tags_raw" if tags == "raw" else "tags")
    images = _numbered(image_dir, IMAGE)
    tag_files = _numbered(tag_folder, TAGS)  # numbered like the images, even with tags=none
    n = max([*images, *tag_files, 0])
    if n == 0:
        raise DatasetFormatError(
            image_dir / "im1.jpg",
            f"no images im<N>.jpg nor tag files {tag_folder}/tags<N>.txt found; "
            f"expected layout: {OFFICIAL_LAYOUT}",
        )

    files = sorted(
        f for f in annotations.glob("*.txt") if not IGNORED_ANNOTATION_FILES.search(f.name)
    )
    general = {f.stem: f for f in files if not f.stem.endswith("_r1")}
    strict = {f.stem[: -len("_r1")]: f for f in files if f.stem.endswith("_r1")}
    chosen = strict if relevant_only else general
    if not chosen:
        kind = "<concept>_r1.txt" if relevant_only else "<concept>.txt"
        raise DatasetFormatError(
            annotations / kind, f"no annotation files found; expected layout: {OFFICIAL_LAYOUT}"
        )
    vocabulary = Vocabulary(sorted(chosen))
    rows: list[list[int]] = [[] for _ in range(n)]
    for k, concept in enumerate(vocabulary):
        for number in _read_image_numbers(chosen[concept], n):
            rows[number - 1].append(k)
    ids = [f"im{i}.jpg" for i in range(1, n + 1)]
    notes = []
    if relevant_only:
        notes.append(
            f"relevant_only=true: the {len(vocabulary)} concepts with a strict *_r1.txt list, "
            "labelled only where the annotators marked them relevant"
        )
    fields: dict[str, Any] = {}
    if tags != "none":
        fields, tag_notes = _read_tags(tag_files, n, min_tag_count, tag_folder)
        notes.extend(tag_notes)
    splits = _random_split(n, test_size, seed)
    notes.extend(_split_note(splits, seed))
    dataset = AnnotationSet(
        "mirflickr",
        ids,
        vocabulary,
        multi_hot(rows, len(vocabulary)),
        splits=splits,
        notes=notes,
        **fields,
    )
    if images or image_root is not None:
        paths, kept = resolve_image_paths(
            image_dir,
            ids,
            lambda i: images.get(i + 1),
            drop_missing=drop_missing,
            notes=dataset.notes,
        )
        dataset = attach_images(dataset, paths, kept)
    return dataset


def _read_tags(
    tag_files: dict[int, Path], n: int, min_count: int, folder: Path
) -> tuple[dict[str, Any], list[str]]:
    """User tags of images 1..n (one tag per line); a missing file means no tags."""
    per_image: list[list[str]] = []
    not_utf8: list[str] = []
    for number in range(1, n + 1):
        file = tag_files.get(number)
        data = file.read_bytes() if file is not None else b""
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
            not_utf8.append(file.name if file is not None else "")
        per_image.append(sorted({t.strip() for t in text.splitlines() if t.strip()}))
    counts = Counter(tag for tags in per_image for tag in tags)
    ranked = sorted(
        ((tag, c) for tag, c in counts.items() if c >= min_count), key=lambda x: (-x[1], x[0])
    )
    vocabulary = Vocabulary(tag for tag, _ in ranked)
    rows = [vocabulary.indices(t, unknown="skip").tolist() for t in per_image]
    matrix = multi_hot(rows, len(vocabulary))
    notes = []
    if not_utf8:
        notes.append(
            f"{len(not_utf8)} tag file(s) in {folder} are not UTF-8 and were read as "
            f"Latin-1, e.g. {not_utf8[0]}"
        )
    absent = n - len(tag_files)
    if absent:
        notes.append(f"{absent} of {n} images have no tag file in {folder} (no tags)")
    if min_count > 1:
        notes.append(f"tag vocabulary: the {len(vocabulary)} tags used by >= {min_count} images")
    return {"tag_vocabulary": vocabulary, "user_tags": matrix}, notes


@register_reader("mirflickr")
def read_mirflickr(
    path: Path,
    *,
    relevant_only: str | None = None,
    tags: str | None = None,
    min_tag_count: str | None = None,
    images: str | None = None,
    missing_images: str | None = None,
    test_size: str | None = None,
    seed: str | None = None,
) -> AnnotationSet:
    """MIRFLICKR-25k: official layout (images, tags, annotations) or the cleaned .mat matrices.

    PATH holds either the official files (``mirflickr/im<N>.jpg``,
    ``mirflickr/meta/tags/tags<N>.txt``, ``annotations/<concept>.txt``) or
    ``mirflickr25k-lall.mat`` (+ ``mirflickr25k-yall.mat``); the form is detected.

    Options (official form):
        relevant_only: ``false`` (default; the 24 "potential" concept lists
            ``<concept>.txt``) or ``true`` (the 14 concepts with a strict
            ``<concept>_r1.txt`` list: only images where the concept is relevant).
        tags: ``clean`` (default, ``meta/tags``), ``raw`` (``meta/tags_raw``) or ``none``.
        min_tag_count: keep tags used by at least this many images (default 1; the
            cross-modal retrieval papers use 20).
        images: folder with ``im<N>.jpg`` (default ``PATH/mirflickr``).
        missing_images: ``error`` (default) or ``drop`` items whose image is missing.
    Options (both forms):
        test_size: none by default (no official split, so no splits); a count (2000,
            the common query-set size) or fraction (0.2) makes a seeded random
            ``train``/``test`` split.
        seed: random seed of that split (default 0).

    Ids: ``im<N>.jpg`` (official form); ``row/000000`` (.mat form: no ids in the files).
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetFormatError(
            root, f"not a directory; expected {OFFICIAL_LAYOUT}, or {MAT_LAYOUT}"
        )
    strict = bool_option("relevant_only", relevant_only, False)
    tag_mode = choice_option("tags", tags, ("clean", "raw", "none"), "clean")
    min_count = int_option("min_tag_count", min_tag_count, 1, minimum=1)
    drop = choice_option("missing_images", missing_images, ("error", "drop"), "error") == "drop"
    image_root = directory_option("images", images)
    if (root / "mirflickr25k-lall.mat").is_file():
        given = {
            "relevant_only": relevant_only,
            "tags": tags,
            "min_tag_count": min_tag_count,
            "images": images,
            "missing_images": missing_images,
        }
        used = sorted(k for k, v in given.items() if v not in (None, ""))
        if used:
            raise InvalidInputError(
                used[0], "no such option for the .mat form (labels and tags only)", "a value"
            )
        return _read_mat(root, test_size, seed)
    if not (root / "annotations").is_dir() and not (root / "mirflickr").is_dir():
        raise DatasetFormatError(
            root / "annotations",
            f"not found, nor mirflickr25k-lall.mat; expected {OFFICIAL_LAYOUT}, or {MAT_LAYOUT}",
        )
    return _read_official(root, strict, tag_mode, min_count, image_root, drop, test_size, seed)
