"""MIRFLICKR-25k (Huiskes & Lew, 2008): 25,000 Flickr images, 24 concepts, user tags.

Two forms are read: the official distribution (images, ``meta/tags``, annotation
lists) and the cleaned ``.mat`` matrices of the cross-modal retrieval literature, with
the files that say what each row is (image ids, tag and label names), the official
38-column labels and the photos that are at hand.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Sequence
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
    read_vocabulary_file,
    record_defect,
    require_file,
    resolve_image_paths,
    synthetic_ids,
)
from phototag.data.vocabulary import Vocabulary
from phototag.errors import DatasetFormatError, InvalidInputError

OFFICIAL_LAYOUT = (
    "PATH/mirflickr/im<N>.jpg, PATH/mirflickr/meta/tags/tags<N>.txt (or PATH/meta/tags/), "
    "PATH/annotations/<concept>.txt and <concept>_r1.txt (1-based image numbers)"
)
LALL = "mirflickr25k-lall.mat"
YALL = "mirflickr25k-yall.mat"
ROWS = "rows"
OFFICIAL_LABELS = "official_labels_38.tsv"
MAT_LAYOUT = (
    f"PATH/{LALL} (LAll), optional PATH/{YALL} (YAll), "
    f"PATH/{ROWS}/row_image_ids.txt (image number of each row), "
    f"PATH/{ROWS}/lall_column_names.txt, PATH/{ROWS}/yall_column_names.txt, "
    f"PATH/{OFFICIAL_LABELS}, PATH/images/im<N>.jpg"
)
# The 24 MIRFLICKR-25k concepts in alphabetical order: LAll's column order (verified on the
# shared copy), assumed when no rows/lall_column_names.txt names the columns.
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
ROW_IMAGE = re.compile(r"(?:im)?([1-9]\d*)(?:\.jpg)?")
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


def _read_row_numbers(path: Path, n_rows: int) -> list[int]:
    """The MIRFLICKR image number of each matrix row: one ``N`` or ``imN.jpg`` per line."""
    numbers: list[int] = []
    seen: dict[int, int] = {}
    for line, text in enumerate(read_text(path).rstrip().splitlines(), start=1):
        match = ROW_IMAGE.fullmatch(text.strip())
        if match is None:
            raise DatasetFormatError(
                path, f"expected an image number like 12 or im12.jpg, found {text!r}", line
            )
        number = int(match.group(1))
        if number in seen:
            raise DatasetFormatError(path, f"image {number} repeats line {seen[number]}", line)
        seen[number] = line
        numbers.append(number)
    if len(numbers) != n_rows:
        raise DatasetFormatError(path, f"lists {len(numbers)} images, but LAll has {n_rows} rows")
    return numbers


def _column_names(path: Path, width: int, matrix: str, what: str) -> Vocabulary:
    names = read_vocabulary_file(path, what)
    if len(names) != width:
        raise DatasetFormatError(
            path, f"names {len(names)} {what}s, but {matrix} has {width} columns"
        )
    return names


def _label_names(root: Path, width: int, notes: list[str]) -> Vocabulary:
    names_file = root / ROWS / "lall_column_names.txt"
    if names_file.is_file():
        return _column_names(names_file, width, "LAll", "label")
    if width != len(CONCEPTS24):
        raise DatasetFormatError(
            root / LALL, f"LAll: expected {len(CONCEPTS24)} columns, found {width}"
        )
    notes.append(
        f"{LALL}: LAll column order assumed to be the alphabetical 24-concept list "
        f"(no {ROWS}/lall_column_names.txt to name the columns)"
    )
    return Vocabulary(CONCEPTS24)


def _identical_columns(matrix: sp.csr_matrix) -> list[list[int]]:
    """Groups of non-empty columns with the same rows."""
    columns = matrix.tocsc()
    columns.sort_indices()
    groups: dict[bytes, list[int]] = {}
    for j in range(columns.shape[1]):
        rows = columns.indices[columns.indptr[j] : columns.indptr[j + 1]]
        if len(rows):
            groups.setdefault(rows.tobytes(), []).append(j)
    return [group for group in groups.values() if len(group) > 1]


def _read_mat_tags(root: Path, n: int, notes: list[str]) -> dict[str, Any]:
    tags_file = root / YALL
    if not tags_file.is_file():
        return {}
    matrix = _load_mat(tags_file, "YAll")
    if matrix.shape[0] != n:
        raise DatasetFormatError(
            tags_file, f"YAll: expected {n} rows (as LAll), found {matrix.shape[0]}"
        )
    tags = sp.csr_matrix(matrix)
    names_file = root / ROWS / "yall_column_names.txt"
    if names_file.is_file():
        vocabulary = _column_names(names_file, tags.shape[1], "YAll", "tag")
        for group in _identical_columns(tags):
            record_defect(
                notes,
                f"{YALL}: YAll columns {', '.join(map(str, group))} (0-based; "
                f"{', '.join(vocabulary[j] for j in group)}) are identical on every row, so "
                f"their names in {names_file.name} cannot be told apart; kept as listed",
            )
    else:
        vocabulary = Vocabulary(f"tag{j:04d}" for j in range(tags.shape[1]))
        notes.append(
            f"{YALL}: user tags named tag0000..tag{tags.shape[1] - 1:04d} (column numbers; "
            f"no {ROWS}/yall_column_names.txt to name them)"
        )
    return {"tag_vocabulary": vocabulary, "user_tags": tags}


def _read_official_labels(path: Path, ids: Sequence[str]) -> tuple[Vocabulary, sp.csr_matrix]:
    """The rows of the official label table for `ids`: a header ``image<TAB><label>...``,
    then one line ``imN.jpg<TAB>0<TAB>1...`` per image."""
    lines = read_text(require_file(path, MAT_LAYOUT)).rstrip().splitlines()
    header = lines[0].split("\t") if lines else []
    if len(header) < 2 or header[0].strip() != "image":
        raise DatasetFormatError(path, "expected a header line: image<TAB><label><TAB>...", 1)
    names = [name.strip() for name in header[1:]]
    repeated = next((name for k, name in enumerate(names) if name in names[:k]), None)
    if repeated is not None or "" in names:
        raise DatasetFormatError(path, f"header: label {repeated or ''!r} repeats or is empty", 1)
    line_of: dict[str, int] = {}
    for line, text in enumerate(lines[1:], start=2):
        image = text.partition("\t")[0].strip()
        if image in line_of:
            raise DatasetFormatError(path, f"image {image!r} repeats line {line_of[image]}", line)
        line_of[image] = line
    rows: list[list[int]] = []
    for i, item in enumerate(ids):
        if item not in line_of:
            raise DatasetFormatError(path, f"has no line for {item} (row {i + 1} of LAll)")
        line = line_of[item]
        cells = lines[line - 1].split("\t")[1:]
        if len(cells) != len(names) or not set(cells) <= {"0", "1"}:
            raise DatasetFormatError(
                path, f"expected {len(names)} tab-separated 0/1 values after {item}", line
            )
        rows.append([k for k, cell in enumerate(cells) if cell == "1"])
    return Vocabulary(names), multi_hot(rows, len(names))


def _check_official(
    official: AnnotationSet, lall_names: Vocabulary, lall: sp.csr_matrix, notes: list[str]
) -> None:
    """Compare the official table's concept columns with LAll, and check that each strict
    ``<concept>_r1`` label comes with its ``<concept>``; differences are noted defects."""
    shared = [name for name in lall_names if name in official.vocabulary]
    mine = official.labels[:, official.vocabulary.indices(shared)]
    theirs = lall[:, lall_names.indices(shared)]
    differing = int(np.count_nonzero((mine != theirs).getnnz(axis=1)))
    if differing:
        record_defect(
            notes,
            f"{OFFICIAL_LABELS}: on {differing} of {official.n_items} rows its {len(shared)} "
            f"concept columns differ from LAll; the official table's labels are used",
        )
    else:
        notes.append(
            f"{OFFICIAL_LABELS}: its {len(shared)} concept columns equal LAll on every row"
        )
    labels = official.labels.tocsc()
    for strict in official.vocabulary:
        general = strict.removesuffix("_r1")
        if general == strict or general not in official.vocabulary:
            continue
        column = labels[:, official.vocabulary.index(strict)]
        alone = np.flatnonzero((column > labels[:, official.vocabulary.index(general)]).toarray())
        if len(alone):
            record_defect(
                notes,
                f"{OFFICIAL_LABELS}: {len(alone)} row(s) have {strict} but not {general}, "
                f"e.g. {official.item_ids[alone[0]]}; kept as they are",
            )


def _read_mat(root: Path, labels_mode: str) -> tuple[AnnotationSet, list[int] | None]:
    """All rows of LAll (+ YAll) and, when ``rows/row_image_ids.txt`` names them, each
    row's image number."""
    lall = sp.csr_matrix(_load_mat(root / LALL, "LAll"))
    n = lall.shape[0]
    notes: list[str] = []
    ids_file = root / ROWS / "row_image_ids.txt"
    numbers = _read_row_numbers(ids_file, n) if ids_file.is_file() else None
    if numbers is None:
        ids = synthetic_ids("row", n)
        notes.append(f"ids are synthetic (row/000000 = row 1 of LAll): no {ids_file}")
    else:
        ids = [f"im{number}.jpg" for number in numbers]
    names = _label_names(root, lall.shape[1], notes)
    fields = _read_mat_tags(root, n, notes)
    dataset = AnnotationSet("mirflickr", ids, names, lall, notes=notes, **fields)
    if labels_mode == "official38":
        if numbers is None:
            raise DatasetFormatError(
                ids_file, "file not found; labels=official38 needs each row's image id"
            )
        vocabulary, labels = _read_official_labels(root / OFFICIAL_LABELS, ids)
        dataset = dataclasses.replace(dataset, vocabulary=vocabulary, labels=labels)
        _check_official(dataset, names, lall, dataset.notes)
    return dataset, numbers


def _with_photos(
    dataset: AnnotationSet,
    numbers: list[int] | None,
    root: Path,
    image_root: Path | None,
    attach: bool,
    drop_missing: bool,
) -> AnnotationSet:
    """Attach each row's photo ``im<N>.jpg`` (`attach`), or only note how many rows have one."""
    image_dir = image_root or root / "images"
    if numbers is None:
        if attach:
            raise DatasetFormatError(
                root / ROWS / "row_image_ids.txt",
                "file not found; it is needed to find each row's photo",
            )
        return dataset
    if not image_dir.is_dir():
        if attach:
            raise DatasetFormatError(image_dir, f"photo folder not found; expected {MAT_LAYOUT}")
        return dataset
    photos = _numbered(image_dir, IMAGE)
    if not attach:
        having = sum(number in photos for number in numbers)
        dataset.notes.append(
            f"{having} of {len(numbers)} rows have their photo in {image_dir}; not attached "
            "(missing_images=drop keeps only those rows, with their image paths)"
        )
        return dataset
    paths, kept = resolve_image_paths(
        image_dir,
        dataset.item_ids,
        lambda i: photos.get(numbers[i]),
        drop_missing=drop_missing,
        notes=dataset.notes,
        fix="Pass missing_images=drop to keep only the rows whose photo is there.",
    )
    dataset = attach_images(dataset, paths, kept)
    unused = len(photos) - len(kept)
    if unused:
        dataset.notes.append(
            f"{unused} of the {len(photos)} photos in {image_dir} are not rows of LAll "
            "(the cleaned set left them out)"
        )
    return dataset


def _read_photos(root: Path, image_dir: Path) -> AnnotationSet:
    """Every photo of `image_dir` with its 38 official labels, and its user tags where
    the photo is a row of the cleaned matrices."""
    photos = _numbered(image_dir.resolve(), IMAGE)
    if not photos:
        raise DatasetFormatError(image_dir, f"no photos im<N>.jpg found; expected {MAT_LAYOUT}")
    numbers = sorted(photos)
    ids = [f"im{number}.jpg" for number in numbers]
    vocabulary, labels = _read_official_labels(root / OFFICIAL_LABELS, ids)
    notes = [f"{len(ids)} photos of {image_dir}, labelled by {OFFICIAL_LABELS}"]
    rows_file = root / ROWS / "row_image_ids.txt"
    fields: dict[str, Any] = {}
    if rows_file.is_file() and (root / YALL).is_file():
        n_rows = _load_mat(root / LALL, "LAll").shape[0]
        row_of = {number: row for row, number in enumerate(_read_row_numbers(rows_file, n_rows))}
        mat = _read_mat_tags(root, n_rows, notes)
        rows = [row_of.get(number, n_rows) for number in numbers]  # n_rows: no tags
        tags = sp.vstack([mat["user_tags"], sp.csr_matrix((1, mat["user_tags"].shape[1]))])
        fields = {"tag_vocabulary": mat["tag_vocabulary"], "user_tags": tags.tocsr()[rows]}
        notes.append(f"{sum(r < n_rows for r in rows)} of them are rows with user tags")
    dataset = AnnotationSet("mirflickr", ids, vocabulary, labels, notes=notes, **fields)
    return attach_images(dataset, [str(photos[n]) for n in numbers], np.arange(len(ids)))


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
    dataset = AnnotationSet(
        "mirflickr", ids, vocabulary, multi_hot(rows, len(vocabulary)), notes=notes, **fields
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


def _with_split(dataset: AnnotationSet, test_size: str | None, seed: str | None) -> AnnotationSet:
    """`dataset` with the seeded random split of its (final) items, and a note on it."""
    splits = _random_split(dataset.n_items, test_size, seed)
    dataset = dataclasses.replace(dataset, splits=splits)
    if splits:
        dataset.notes.append(
            f"random split (seed {int_option('seed', seed, 0)}): {len(splits['train'])} "
            f"train, {len(splits['test'])} test; not an official split"
        )
    else:
        dataset.notes.append(
            "no official train/test split: the set has no splits (use test_size=...)"
        )
    return dataset


def _reject(form: str, given: dict[str, str | None]) -> None:
    used = sorted(name for name, value in given.items() if value not in (None, ""))
    if used:
        raise InvalidInputError(used[0], f"no such option for the {form} form", "a value")


@register_reader("mirflickr")
def read_mirflickr(
    path: Path,
    *,
    labels: str | None = None,
    relevant_only: str | None = None,
    tags: str | None = None,
    min_tag_count: str | None = None,
    images: str | None = None,
    missing_images: str | None = None,
    items: str | None = None,
    test_size: str | None = None,
    seed: str | None = None,
) -> AnnotationSet:
    """MIRFLICKR-25k: official layout (images, tags, annotations) or the cleaned .mat matrices.

    PATH holds either the official files (``mirflickr/im<N>.jpg``,
    ``mirflickr/meta/tags/tags<N>.txt``, ``annotations/<concept>.txt``) or
    ``mirflickr25k-lall.mat`` (+ ``mirflickr25k-yall.mat``, ``rows/*.txt``,
    ``official_labels_38.tsv``, ``images/im<N>.jpg``); the form is detected.

    Options (.mat form):
        labels: ``lall`` (default; the 24 concepts of LAll) or ``official38`` (the 38
            columns of ``official_labels_38.tsv``: 24 concepts and 14 strict ``_r1``).
    Options (official form):
        relevant_only: ``false`` (default; the 24 "potential" concept lists
            ``<concept>.txt``) or ``true`` (the 14 concepts with a strict
            ``<concept>_r1.txt`` list: only images where the concept is relevant).
        tags: ``clean`` (default, ``meta/tags``), ``raw`` (``meta/tags_raw``) or ``none``.
        min_tag_count: keep tags used by at least this many images (default 1; the
            cross-modal retrieval papers use 20).
    Options (both forms):
        images: folder with ``im<N>.jpg`` (default ``PATH/mirflickr``; .mat form:
            ``PATH/images``, attached only when this or `missing_images` is given).
        missing_images: ``error`` (default) or ``drop`` items whose image is missing
            (.mat form: ``drop`` keeps only the rows with a photo).
        items (.mat form): ``rows`` (default; the rows of LAll) or ``photos``: every
            photo ``im<N>.jpg`` in the photo folder, labelled by
            ``official_labels_38.tsv`` (all 38 columns; user tags where the photo is a
            row of YAll, none otherwise).
        test_size: none by default (no official split, so no splits); a count (2000,
            the common query-set size) or fraction (0.2) makes a seeded random
            ``train``/``test`` split of the items read (after dropping).
        seed: random seed of that split (default 0).

    Ids: ``im<N>.jpg``; ``row/000000`` in the .mat form without ``rows/row_image_ids.txt``.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetFormatError(
            root, f"not a directory; expected {OFFICIAL_LAYOUT}, or {MAT_LAYOUT}"
        )
    drop = choice_option("missing_images", missing_images, ("error", "drop"), "error") == "drop"
    image_root = directory_option("images", images)
    if (root / LALL).is_file():
        given = {"relevant_only": relevant_only, "tags": tags, "min_tag_count": min_tag_count}
        _reject(".mat", given)
        if choice_option("items", items, ("rows", "photos"), "rows") == "photos":
            _reject("items=photos", {"labels": labels, "missing_images": missing_images})
            return _with_split(_read_photos(root, image_root or root / "images"), test_size, seed)
        labels_mode = choice_option("labels", labels, ("lall", "official38"), "lall")
        dataset, numbers = _read_mat(root, labels_mode)
        attach = image_root is not None or missing_images not in (None, "")
        dataset = _with_photos(dataset, numbers, root, image_root, attach, drop)
        return _with_split(dataset, test_size, seed)
    _reject("official", {"labels": labels, "items": items})
    strict = bool_option("relevant_only", relevant_only, False)
    tag_mode = choice_option("tags", tags, ("clean", "raw", "none"), "clean")
    min_count = int_option("min_tag_count", min_tag_count, 1, minimum=1)
    if not (root / "annotations").is_dir() and not (root / "mirflickr").is_dir():
        raise DatasetFormatError(
            root / "annotations",
            f"not found, nor {LALL}; expected {OFFICIAL_LAYOUT}, or {MAT_LAYOUT}",
        )
    dataset = _read_official(root, strict, tag_mode, min_count, image_root, drop)
    return _with_split(dataset, test_size, seed)
