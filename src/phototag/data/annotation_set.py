"""`AnnotationSet`: items, their labels and optional user tags, metadata and splits."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from phototag.data.inputs import ModelInputs
from phototag.data.vocabulary import Vocabulary
from phototag.errors import DatasetFormatError, InvalidInputError, PhototagError
from phototag.fileio import atomic_write

FORMAT_VERSION = 1


def multi_hot(rows: Sequence[Sequence[int]], n_columns: int) -> sp.csr_matrix:
    """Sparse boolean matrix with row `i` set at the column ids in `rows[i]`."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = (
        np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
        if indptr[-1]
        else np.zeros(0, dtype=np.int64)
    )
    matrix = sp.csr_matrix(
        (np.ones(len(indices), dtype=bool), indices, indptr), shape=(len(rows), n_columns)
    )
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def _as_csr(matrix: Any, name: str, shape: tuple[int, int]) -> sp.csr_matrix:
    csr = sp.csr_matrix(matrix, dtype=bool)
    if csr.shape != shape:
        raise InvalidInputError(name, f"a matrix of shape {shape}", f"shape {csr.shape}")
    csr.eliminate_zeros()
    csr.sort_indices()
    return csr


@dataclass
class AnnotationSet:
    """A labelled collection of images: what every dataset reader returns.

    Attributes:
        name: dataset name, e.g. ``"corel5k"``.
        item_ids: one string id per item (usually the image file name).
        vocabulary: the label vocabulary; column ``j`` of `labels` is ``vocabulary[j]``.
        labels: sparse boolean multi-hot matrix, ``n_items x len(vocabulary)``.
        image_paths: absolute image path per item, or ``None`` for labels-only data.
        tag_vocabulary, user_tags: optional social tags (e.g. Flickr user tags) with
            their own vocabulary, ``n_items x len(tag_vocabulary)``.
        features: optional per-item feature matrices by encoder id, each
            ``n_items x dim`` (dense, possibly memory-mapped); what models consume.
        maps: optional per-item spatial feature maps by `MapSpec.key`, each
            ``n_items x C x H x W``: arrays, or rows of the feature-map store read only
            when indexed (anything with ``shape``, ``[index]`` and ``take``). Not saved.
        metadata: optional per-item arrays (group ids, ...), each of length n_items.
        splits: named subsets as sorted item indices, e.g. ``{"train": ..., "test": ...}``.
        notes: data-quality findings of the reader (known defects it handled).
    """

    name: str
    item_ids: list[str]
    vocabulary: Vocabulary
    labels: sp.csr_matrix
    image_paths: list[str] | None = None
    tag_vocabulary: Vocabulary | None = None
    user_tags: sp.csr_matrix | None = None
    features: dict[str, np.ndarray] = field(default_factory=dict)
    maps: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, np.ndarray] = field(default_factory=dict)
    splits: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        self.item_ids = [str(i) for i in self.item_ids]
        self.labels = _as_csr(self.labels, "labels", (n, len(self.vocabulary)))
        if self.image_paths is not None and len(self.image_paths) != n:
            raise InvalidInputError(
                "image_paths", f"{n} paths (one per item)", f"{len(self.image_paths)}"
            )
        if (self.user_tags is None) != (self.tag_vocabulary is None):
            raise InvalidInputError(
                "user_tags", "user_tags and tag_vocabulary given together", "only one of them"
            )
        if self.user_tags is not None and self.tag_vocabulary is not None:
            shape = (n, len(self.tag_vocabulary))
            self.user_tags = _as_csr(self.user_tags, "user_tags", shape)
        tables = (("features", self.features), ("maps", self.maps), ("metadata", self.metadata))
        for kind, table in tables:
            for key, values in table.items():
                if len(values) != n:
                    raise InvalidInputError(f"{kind}[{key!r}]", f"{n} rows", f"{len(values)}")
        for split, indices in list(self.splits.items()):
            indices = np.unique(np.asarray(indices, dtype=np.int64))
            if len(indices) and (indices[0] < 0 or indices[-1] >= n):
                raise InvalidInputError(
                    f"splits[{split!r}]", f"item indices in [0, {n})", "an index outside"
                )
            self.splits[split] = indices

    # ------------------------------------------------------------------ views
    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_labels(self) -> int:
        return len(self.vocabulary)

    def __len__(self) -> int:
        return self.n_items

    def label_sets(self) -> list[list[str]]:
        """Each item's labels as names, in vocabulary order."""
        names = self.vocabulary.names
        indptr, indices = self.labels.indptr, self.labels.indices
        return [[names[j] for j in indices[indptr[i] : indptr[i + 1]]] for i in range(self.n_items)]

    def label_counts(self) -> np.ndarray:
        """Number of labels of each item."""
        return np.diff(self.labels.indptr)

    def label_frequencies(self) -> np.ndarray:
        """Number of items carrying each label."""
        return np.bincount(self.labels.indices, minlength=self.n_labels)

    def user_tags_in(self, vocabulary: Vocabulary) -> sp.csr_matrix:
        """The items' user tags as a boolean ``[n_items, len(vocabulary)]`` matrix over
        `vocabulary` (a model's own tag vocabulary): tags it does not have are dropped."""
        if self.user_tags is None or self.tag_vocabulary is None:
            raise InvalidInputError("user_tags", f"user tags on {self.name}", "none")
        if self.tag_vocabulary == vocabulary:
            return self.user_tags
        known = [j for j, word in enumerate(self.tag_vocabulary) if word in vocabulary]
        moved = vocabulary.indices([self.tag_vocabulary[j] for j in known])
        columns = np.full(len(self.tag_vocabulary), -1, dtype=np.int64)
        columns[known] = moved
        coo = self.user_tags.tocoo()
        keep = columns[coo.col] >= 0
        matrix = sp.csr_matrix(
            (coo.data[keep], (coo.row[keep], columns[coo.col[keep]])),
            shape=(self.n_items, len(vocabulary)),
            dtype=bool,
        )
        matrix.sort_indices()
        return matrix

    def missing_inputs(self, inputs: ModelInputs) -> list[str]:
        """The parts of `inputs` this set does not hold, as their attribute paths."""
        missing = [f"features[{key!r}]" for key in inputs.features if key not in self.features]
        missing += [f"maps[{s.key!r}]" for s in inputs.maps if s.key not in self.maps]
        if inputs.user_tags and self.user_tags is None:
            missing.append("user_tags")
        missing += [f"metadata[{key!r}]" for key in inputs.metadata if key not in self.metadata]
        return missing

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> AnnotationSet:
        """The items at `indices`, in that order; splits are re-indexed to the subset."""
        idx = np.asarray(indices, dtype=np.int64)
        position = np.full(self.n_items, -1, dtype=np.int64)
        position[idx] = np.arange(len(idx))
        splits = {}
        for split, members in self.splits.items():
            kept = position[members]
            splits[split] = kept[kept >= 0]
        return AnnotationSet(
            name=name or self.name,
            item_ids=[self.item_ids[i] for i in idx],
            vocabulary=self.vocabulary,
            labels=self.labels[idx],
            image_paths=None if self.image_paths is None else [self.image_paths[i] for i in idx],
            tag_vocabulary=self.tag_vocabulary,
            user_tags=None if self.user_tags is None else self.user_tags[idx],
            features={k: np.asarray(v[idx]) for k, v in self.features.items()},
            maps={k: v.take(idx, axis=0) for k, v in self.maps.items()},
            metadata={k: np.asarray(v)[idx] for k, v in self.metadata.items()},
            splits=splits,
            notes=list(self.notes),
        )

    def split(self, name: str) -> AnnotationSet:
        """The items of split `name` (e.g. ``"train"``, ``"test"``)."""
        if name not in self.splits:
            available = ", ".join(sorted(self.splits)) or "none"
            raise InvalidInputError(
                "split", f"one of the dataset's splits ({available})", repr(name)
            )
        return self.subset(self.splits[name], name=f"{self.name}:{name}")

    def summary(self) -> dict[str, Any]:
        """Sizes and label statistics, as `phototag datasets info` prints them."""
        counts = self.label_counts()
        out: dict[str, Any] = {
            "name": self.name,
            "items": self.n_items,
            "splits": {k: int(len(v)) for k, v in self.splits.items()},
            "labels": self.n_labels,
            "label_cardinality": float(counts.mean()) if self.n_items else 0.0,
            "items_without_labels": int((counts == 0).sum()),
            "labels_without_items": int((self.label_frequencies() == 0).sum()),
            "images": self.image_paths is not None,
            "features": {k: int(np.shape(v)[1]) for k, v in self.features.items()},
            "tag_vocabulary": None if self.tag_vocabulary is None else len(self.tag_vocabulary),
            "notes": list(self.notes),
        }
        if self.user_tags is not None:
            out["tags_per_item"] = float(np.diff(self.user_tags.indptr).mean())
        return out

    # ------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``annotations.npz``, then ``annotations.json``, into `directory` (each
        atomically; `StorageError` when the disk is full)."""
        directory = Path(directory)
        arrays: dict[str, np.ndarray] = {}
        for key, matrix in (("labels", self.labels), ("user_tags", self.user_tags)):
            if matrix is not None:
                arrays[f"{key}.indptr"] = matrix.indptr
                arrays[f"{key}.indices"] = matrix.indices
        for kind, table in (("features", self.features), ("metadata", self.metadata)):
            for key, values in table.items():
                arrays[f"{kind}.{key}"] = np.asarray(values)
        for key, values in self.splits.items():
            arrays[f"splits.{key}"] = values
        header = {
            "format": "phototag.AnnotationSet",
            "version": FORMAT_VERSION,
            "name": self.name,
            "item_ids": self.item_ids,
            "vocabulary": self.vocabulary.to_json(),
            "tag_vocabulary": None
            if self.tag_vocabulary is None
            else self.tag_vocabulary.to_json(),
            "image_paths": self.image_paths,
            "features": sorted(self.features),
            "metadata": sorted(self.metadata),
            "splits": sorted(self.splits),
            "notes": self.notes,
        }
        atomic_write(directory / "annotations.npz", lambda f: np.savez_compressed(f, **arrays))
        atomic_write(directory / "annotations.json", json.dumps(header, ensure_ascii=False))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> AnnotationSet:
        """Read a set written by `save`; `DatasetFormatError` when it is damaged."""
        directory = Path(directory)
        header_path = directory / "annotations.json"
        try:
            header = json.loads(header_path.read_bytes())
        except FileNotFoundError:
            raise DatasetFormatError(header_path, "missing; not a saved AnnotationSet") from None
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(header_path, f"invalid JSON ({exc.msg})", exc.lineno) from None
        except ValueError:
            raise DatasetFormatError(header_path, "not UTF-8 text") from None
        if not isinstance(header, dict) or header.get("format") != "phototag.AnnotationSet":
            raise DatasetFormatError(header_path, "not a phototag AnnotationSet header")
        try:
            return cls._from_saved(header, directory / "annotations.npz")
        except PhototagError:
            raise
        except (OSError, EOFError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as exc:
            problem = f"damaged, or not saved together with annotations.json ({exc!r})"
            raise DatasetFormatError(directory / "annotations.npz", problem) from None

    @classmethod
    def _from_saved(cls, header: dict[str, Any], path: Path) -> AnnotationSet:
        n = len(header["item_ids"])
        with np.load(path, allow_pickle=False) as arrays:

            def matrix(key: str, width: int) -> sp.csr_matrix:
                indices = arrays[f"{key}.indices"]
                data = np.ones(len(indices), dtype=bool)
                return sp.csr_matrix((data, indices, arrays[f"{key}.indptr"]), shape=(n, width))

            vocabulary = Vocabulary(header["vocabulary"])
            tag_vocabulary = (
                None if header["tag_vocabulary"] is None else Vocabulary(header["tag_vocabulary"])
            )
            return cls(
                name=header["name"],
                item_ids=header["item_ids"],
                vocabulary=vocabulary,
                labels=matrix("labels", len(vocabulary)),
                image_paths=header["image_paths"],
                tag_vocabulary=tag_vocabulary,
                user_tags=None
                if tag_vocabulary is None
                else matrix("user_tags", len(tag_vocabulary)),
                features={k: arrays[f"features.{k}"] for k in header["features"]},
                metadata={k: arrays[f"metadata.{k}"] for k in header["metadata"]},
                splits={k: arrays[f"splits.{k}"] for k in header["splits"]},
                notes=header["notes"],
            )


def from_label_sets(
    name: str,
    item_ids: Sequence[str],
    label_sets: Sequence[Sequence[str]],
    vocabulary: Vocabulary | None = None,
    **fields: Any,
) -> AnnotationSet:
    """Build a set from label names per item; the vocabulary defaults to the sorted union."""
    if vocabulary is None:
        vocabulary = Vocabulary(sorted({label for labels in label_sets for label in labels}))
    rows = [vocabulary.indices(labels) for labels in label_sets]
    return AnnotationSet(
        name=name,
        item_ids=list(item_ids),
        vocabulary=vocabulary,
        labels=multi_hot(rows, len(vocabulary)),
        **fields,
    )


def merge_splits(name: str, parts: Mapping[str, AnnotationSet], **fields: Any) -> AnnotationSet:
    """Concatenate sets sharing one vocabulary into one set whose splits are the parts."""
    sets = list(parts.values())
    vocabulary = sets[0].vocabulary
    if any(s.vocabulary != vocabulary for s in sets):
        raise InvalidInputError("parts", "sets with one shared vocabulary", "different ones")
    offsets = np.cumsum([0] + [s.n_items for s in sets])
    has_paths = all(s.image_paths is not None for s in sets)
    return AnnotationSet(
        name=name,
        item_ids=[i for s in sets for i in s.item_ids],
        vocabulary=vocabulary,
        labels=sp.vstack([s.labels for s in sets], format="csr"),
        image_paths=[p for s in sets for p in s.image_paths] if has_paths else None,  # type: ignore[union-attr]
        splits={key: np.arange(offsets[k], offsets[k + 1]) for k, key in enumerate(parts)},
        notes=[note for s in sets for note in s.notes],
        **fields,
    )
