"""NUS-WIDE (Chua et al., 2009): 269,648 Flickr images, 81 concepts, 1,000 user tags.

Reads the official distribution layout; the ground-truth and concept-list folders may
also be the distributed zip files (read in place, without extracting).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import scipy.sparse as sp

from phototag.data.annotation_set import AnnotationSet, merge_splits
from phototag.data.readers import register_reader
from phototag.data.readers._common import (
    attach_images,
    bool_option,
    choice_option,
    decode_text,
    describe_anomalies,
    directory_option,
    read_binary_table,
    read_name_list,
    record_defect,
    resolve_image_paths,
    synthetic_ids,
)
from phototag.data.vocabulary import Vocabulary
from phototag.errors import DatasetFormatError

LAYOUT = (
    "PATH/Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt and "
    "PATH/Groundtruth/AllLabels/Labels_<concept>.txt (or PATH/Groundtruth.zip), "
    "PATH/ConceptsList/Concepts81.txt (or PATH/Concepts81.txt or PATH/ConceptsList.zip); "
    "optional PATH/ImageList/{Imagelist,TrainImagelist,TestImagelist}.txt, "
    "PATH/test_image_names.txt, PATH/NUS_WID_Tags/{AllTags1k,TagList1k}.txt, "
    "PATH/Flickr/<concept>/<file>.jpg"
)
SPLIT_FILES = {"train": "Train", "test": "Test"}
SYNTHETIC_ID = re.compile(r"(train|test|all)/\d{6}")  # real ids end in .jpg


@dataclass(frozen=True)
class _Member:
    """A dataset file, either on disk or inside one of the distributed zip files."""

    display: str
    path: Path | None = None
    archive: zipfile.ZipFile | None = None
    name: str = ""

    def open(self) -> IO[bytes]:
        if self.archive is not None:
            return self.archive.open(self.name)
        assert self.path is not None
        return self.path.open("rb")

    def read_text(self) -> str:
        with self.open() as stream:
            return decode_text(stream.read(), self.display)


class _Tree:
    """Looks files up under the dataset root, falling back to ``<Folder>.zip`` archives."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._archives: dict[str, tuple[zipfile.ZipFile, set[str]] | None] = {}

    def _archive(self, folder: str) -> tuple[zipfile.ZipFile, set[str]] | None:
        if folder not in self._archives:
            path = self.root / f"{folder}.zip"
            entry = None
            if path.is_file():
                try:
                    archive = zipfile.ZipFile(path)
                except zipfile.BadZipFile:
                    raise DatasetFormatError(path, "not a readable zip file") from None
                entry = (archive, set(archive.namelist()))
            self._archives[folder] = entry
        return self._archives[folder]

    def find(self, *candidates: str) -> _Member | None:
        """The first candidate (a path relative to the root) that exists."""
        for candidate in candidates:
            path = self.root / candidate
            if path.is_file():
                return _Member(str(path), path=path)
            folder, sep, rest = candidate.partition("/")
            archive = self._archive(folder) if sep else None
            if archive is not None:
                for name in (rest, candidate):
                    if name in archive[1]:
                        display = f"{self.root / f'{folder}.zip'}/{name}"
                        return _Member(display, archive=archive[0], name=name)
        return None

    def require(self, *candidates: str, what: str = "") -> _Member:
        member = self.find(*candidates)
        if member is None:
            also = f" (or {', '.join(candidates[1:])})" if len(candidates) > 1 else ""
            raise DatasetFormatError(
                self.root / candidates[0],
                f"{what or 'file'} not found{also}; expected layout: {LAYOUT}",
            )
        return member

    def close(self) -> None:
        for entry in self._archives.values():
            if entry is not None:
                entry[0].close()


def nuswide_id(entry: str) -> str:
    """Normalise an image-list entry to ``<concept>/<file>``.

    Accepts ``actor\\0002_174174086.jpg`` (official lists, Windows separators),
    ``C:\\ImageData\\Flickr\\actor\\0002_174174086.jpg`` and the flattened
    ``actor_0002_174174086.jpg`` used by some redistributions.
    """
    parts = [p for p in entry.strip().replace("\\", "/").split("/") if p]
    if len(parts) >= 2:
        return f"{parts[-2]}/{parts[-1]}"
    pieces = parts[0].rsplit("_", 2) if parts else []
    if len(pieces) == 3:
        return f"{pieces[0]}/{pieces[1]}_{pieces[2]}"
    return parts[0] if parts else ""


def _read_ids(member: _Member) -> list[str]:
    ids = []
    for number, name in read_name_list(member.read_text(), member.display, "image"):
        image_id = nuswide_id(name)
        if "/" not in image_id:
            raise DatasetFormatError(
                member.display,
                f"expected an image entry like actor\\0002_174174086.jpg, found {name!r}",
                number,
            )
        ids.append(image_id)
    return ids


def _read_label_columns(
    tree: _Tree, concepts: Vocabulary, pattern: str, notes: list[str]
) -> sp.csr_matrix:
    """One 0/1 label file per concept -> items x concepts matrix."""
    columns: list[np.ndarray] = []
    reference = ""
    for concept in concepts:
        relative = pattern.format(concept=concept)
        member = tree.require(relative, what=f"label file of concept {concept!r}")
        with member.open() as stream:
            table = read_binary_table(stream, member.display, n_columns=1)
        if table.anomalies:
            record_defect(notes, describe_anomalies(table.anomalies, member.display))
        column = np.diff(table.rows.indptr).astype(bool)
        if columns and len(column) != len(columns[0]):
            raise DatasetFormatError(
                member.display,
                f"expected {len(columns[0])} lines (as in {reference}), found {len(column)}",
            )
        reference = reference or member.display
        columns.append(column)
    return sp.csr_matrix(np.column_stack(columns)) if columns else sp.csr_matrix((0, 0))


def _check_count(member: _Member, ids: Sequence[str], n: int, labels: str) -> None:
    if len(ids) != n:
        raise DatasetFormatError(
            member.display, f"lists {len(ids)} images, but {labels} has {n} rows"
        )


TAGS_FILE = "NUS_WID_Tags/AllTags1k.txt"


def _read_tags(
    tree: _Tree, n_rows: int, rows: np.ndarray | None, notes: list[str]
) -> tuple[Vocabulary, sp.csr_matrix]:
    """User tags from AllTags1k.txt (`n_rows` rows in Imagelist order), the rows `rows`
    of it in item order (None: all, in file order)."""
    tags_file = tree.require(TAGS_FILE)
    tag_list = tree.require(
        "NUS_WID_Tags/TagList1k.txt",
        "TagList1k.txt",
        "ConceptsList/TagList1k.txt",
        what="tag list for AllTags1k.txt",
    )
    tag_vocabulary = Vocabulary(
        name for _, name in read_name_list(tag_list.read_text(), tag_list.display, "tag")
    )
    with tags_file.open() as stream:
        table = read_binary_table(stream, tags_file.display, n_columns=len(tag_vocabulary))
    if table.anomalies:
        record_defect(notes, describe_anomalies(table.anomalies, tags_file.display))
    if table.rows.shape[0] != n_rows:
        raise DatasetFormatError(
            tags_file.display,
            f"has {table.rows.shape[0]} rows, expected {n_rows} (one per image of "
            "ImageList/Imagelist.txt, as Groundtruth/AllLabels)",
        )
    return tag_vocabulary, table.rows if rows is None else table.rows[rows]


def _tag_rows(tree: _Tree, all_ids: Sequence[str] | None, wanted: Sequence[str]) -> np.ndarray:
    """Row of each wanted image in Imagelist order (where AllTags1k.txt has its tags)."""
    if all_ids is None:
        raise DatasetFormatError(
            tree.root / "ImageList" / "Imagelist.txt",
            f"file not found; it is needed to match the rows of {TAGS_FILE} to the "
            "train/test images. Add the ImageList folder, or pass tags=false",
        )
    position = {image_id: i for i, image_id in enumerate(all_ids)}
    rows = np.empty(len(wanted), dtype=np.int64)
    for i, image_id in enumerate(wanted):
        if image_id not in position:
            raise DatasetFormatError(
                tree.root / "ImageList" / "Imagelist.txt",
                f"does not list {image_id!r}, which the train/test image lists name",
            )
        rows[i] = position[image_id]
    return rows


@register_reader("nuswide")
def read_nuswide(
    path: Path,
    *,
    split: str | None = None,
    images: str | None = None,
    tags: str | None = None,
    missing_images: str | None = None,
) -> AnnotationSet:
    """NUS-WIDE official layout (81 concepts, 161,789 train / 107,859 test; zips read in place).

    Options:
        split: ``official`` (default; train then test items from ``TrainTestLabels``)
            or ``none`` (all 269,648 images in ``Imagelist`` order from ``AllLabels``).
        images: folder with ``<concept>/<file>.jpg`` (or with ``Flickr/`` in it);
            default ``PATH/Flickr`` when present, otherwise no image paths.
        tags: ``true`` (default) reads the 1,000 user tags from
            ``NUS_WID_Tags/AllTags1k.txt`` when present; ``false`` skips them.
        missing_images: ``error`` (default) or ``drop`` items whose image is missing.

    Ids are ``<concept>/<file>.jpg`` (the image-list entry with ``/``). Without image
    lists, test ids come from ``test_image_names.txt`` and the others are synthetic
    (``train/000000``, ``all/000000``), which the notes say. Label values other than
    0/1 (the official ``Labels_lake_Train.txt`` has one) are read as 0 and noted.
    """
    mode = choice_option("split", split, ("official", "none"), "official")
    with_tags = bool_option("tags", tags, True)
    drop_missing = choice_option("missing_images", missing_images, ("error", "drop"), "error")
    image_root = directory_option("images", images)
    root = Path(path)
    if not root.is_dir():
        raise DatasetFormatError(root, f"not a directory; expected layout: {LAYOUT}")
    if image_root is None and (root / "Flickr").is_dir():
        image_root = (root / "Flickr").resolve()
    tree = _Tree(root)
    try:
        dataset = _read(tree, mode, with_tags)
        if image_root is not None:
            dataset = _with_images(tree, dataset, image_root, drop_missing == "drop")
        return dataset
    finally:
        tree.close()


def _read(tree: _Tree, mode: str, with_tags: bool) -> AnnotationSet:
    notes: list[str] = []
    concept_file = tree.require(
        "ConceptsList/Concepts81.txt", "Concepts81.txt", what="concept list"
    )
    concepts = Vocabulary(
        name
        for _, name in read_name_list(concept_file.read_text(), concept_file.display, "concept")
    )
    all_list = tree.find("ImageList/Imagelist.txt")
    all_ids = _read_ids(all_list) if all_list is not None else None

    if mode == "none":
        labels = _read_label_columns(
            tree, concepts, "Groundtruth/AllLabels/Labels_{concept}.txt", notes
        )
        n = labels.shape[0]
        if all_list is not None and all_ids is not None:
            _check_count(all_list, all_ids, n, "Groundtruth/AllLabels")
            ids = list(all_ids)
        else:
            ids = synthetic_ids("all", n)
            notes.append("no ImageList/Imagelist.txt: ids are synthetic (all/000000 = row 1)")
        fields = {}
        if with_tags and tree.find(TAGS_FILE) is not None:
            found = _read_tags(tree, n, None, notes)
            fields = {"tag_vocabulary": found[0], "user_tags": found[1]}
        return AnnotationSet("nuswide", ids, concepts, labels, notes=notes, **fields)

    parts: dict[str, AnnotationSet] = {}
    split_ids: dict[str, list[str]] = {}
    for split, suffix in SPLIT_FILES.items():
        labels = _read_label_columns(
            tree, concepts, f"Groundtruth/TrainTestLabels/Labels_{{concept}}_{suffix}.txt", notes
        )
        n = labels.shape[0]
        listing = tree.find(f"ImageList/{suffix}Imagelist.txt")
        names = tree.find("test_image_names.txt") if split == "test" else None
        if listing is not None:
            ids = _read_ids(listing)
            _check_count(listing, ids, n, f"Groundtruth/TrainTestLabels/*_{suffix}.txt")
        elif names is not None:
            ids = _read_ids(names)
            _check_count(names, ids, n, f"Groundtruth/TrainTestLabels/*_{suffix}.txt")
            notes.append(
                f"{split} ids from test_image_names.txt (no ImageList/{suffix}Imagelist.txt)"
            )
        else:
            ids = synthetic_ids(split, n)
            notes.append(
                f"no ImageList/{suffix}Imagelist.txt: {split} ids are synthetic "
                f"({split}/000000 = line 1 of the {suffix} label files)"
            )
        split_ids[split] = ids
        parts[split] = AnnotationSet(f"nuswide:{split}", ids, concepts, labels)
    fields = {}
    if with_tags and tree.find(TAGS_FILE) is not None:
        for split, suffix in SPLIT_FILES.items():
            if split_ids[split][:1] == synthetic_ids(split, 1):  # no image names
                raise DatasetFormatError(
                    tree.root / "ImageList" / f"{suffix}Imagelist.txt",
                    f"file not found; it is needed to match the rows of {TAGS_FILE} to the "
                    f"{split} images. Add the ImageList folder, or pass tags=false",
                )
        wanted = split_ids["train"] + split_ids["test"]
        rows = _tag_rows(tree, all_ids, wanted)
        n_all = len(all_ids) if all_ids is not None else 0
        found = _read_tags(tree, n_all, rows, notes)
        fields = {"tag_vocabulary": found[0], "user_tags": found[1]}
    dataset = merge_splits("nuswide", parts, **fields)
    dataset.notes.extend(notes)
    return dataset


def _with_images(
    tree: _Tree, dataset: AnnotationSet, image_root: Path, drop_missing: bool
) -> AnnotationSet:
    synthetic = [i for i in dataset.item_ids if SYNTHETIC_ID.fullmatch(i)]
    if synthetic:
        raise DatasetFormatError(
            tree.root / "ImageList",
            f"image lists not found, so item {synthetic[0]!r} has no file name and its "
            "image cannot be located; add the ImageList folder of the distribution",
        )

    def find(i: int) -> Path | None:
        relative = dataset.item_ids[i]
        for candidate in (image_root / relative, image_root / "Flickr" / relative):
            if candidate.is_file():
                return candidate
        return None

    paths, kept = resolve_image_paths(
        image_root, dataset.item_ids, find, drop_missing=drop_missing, notes=dataset.notes
    )
    return attach_images(dataset, paths, kept)
