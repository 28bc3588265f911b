"""Reading predictions made elsewhere, aligned to a dataset split, for `phototag evaluate`.

Accepted files (rows are items, columns are labels):

* ``.npy``: a 2-D array in the split's item order and the vocabulary's label order.
  Floating point = scores; bool or integer 0/1 = label sets.
* ``.npz`` or ``.json`` object: ``scores`` (2-D, required) or ``label_sets`` (0/1), plus
  optional ``item_ids`` (rows matched to items by id), ``labels`` (column names; columns
  are reordered to the dataset vocabulary, labels not given score below every given
  score) and ``quantities`` (one predicted label count per item, for ``--protocol quantity``).
* ``.jsonl``: one object per line, ``{"id": ..., "tags": [...]}``; ``"path"`` instead of
  ``"id"`` matches the file name; tags are label names (a label set) or
  ``{"label": ..., "score": ...}`` objects (scores), exactly what
  ``phototag annotate --format json`` prints.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from phototag.data import AnnotationSet
from phototag.errors import InvalidInputError


@dataclass(frozen=True)
class Prediction:
    """What a model predicts for ``n`` items over its ``L`` labels, or a file holds.

    Attributes:
        scores: float ``[n, L]``, higher = more relevant (every model makes them).
        quantities: ``[n]`` predicted label counts (label-quantity prediction, M3), for
            the `Quantity` decoder.
        label_sets: boolean ``[n, L]`` sets a model chose itself (a sequence decoder
            that stops at its end token, CNN-RNN/JVSP), kept by the `OwnLabelSets`
            decoder; a file may hold label sets instead of scores.
    """

    scores: np.ndarray | None = None
    label_sets: np.ndarray | None = None
    quantities: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.scores is None and self.label_sets is None:
            raise InvalidInputError("prediction", "scores or label sets", "neither")
        shape = (self.scores if self.scores is not None else self.label_sets).shape
        if len(shape) != 2:
            raise InvalidInputError("prediction", "a 2-D [items, labels] matrix", f"{shape}")
        if self.label_sets is not None and self.label_sets.shape != shape:
            raise InvalidInputError("label_sets", f"shape {shape}", f"{self.label_sets.shape}")
        if self.quantities is not None and self.quantities.shape != (shape[0],):
            raise InvalidInputError(
                "quantities", f"one per item ({shape[0]})", f"shape {self.quantities.shape}"
            )

    @property
    def has_scores(self) -> bool:
        return self.scores is not None

    def take(self, rows: np.ndarray | list[int]) -> Prediction:
        """The prediction of items `rows` (in that order)."""

        def pick(matrix: np.ndarray | None) -> np.ndarray | None:
            return None if matrix is None else matrix[rows]

        return Prediction(pick(self.scores), pick(self.label_sets), pick(self.quantities))

    def moved(
        self, source: np.ndarray, target: np.ndarray, n_labels: int, fill: float
    ) -> Prediction:
        """This prediction over `n_labels` labels whose column ``target[j]`` is its column
        ``source[j]``; other columns score `fill` and are in no label set."""

        def move(matrix: np.ndarray | None, value: float | bool) -> np.ndarray | None:
            if matrix is None:
                return None
            out = np.full((len(matrix), n_labels), value, dtype=matrix.dtype)
            out[:, target] = matrix[:, source]
            return out

        return Prediction(move(self.scores, fill), move(self.label_sets, False), self.quantities)


def read_predictions(path: str | Path, target: AnnotationSet) -> Prediction:
    """Read `path` and align its rows to `target`'s items and columns to its vocabulary."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError("--predictions", "an existing file", f"{path} (not found)")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _from_matrix(path, _load_npy(path), target)
    if suffix == ".npz":
        return _from_table(path, _load_npz(path), target)
    if suffix == ".json":
        data = _load_json(path)
        if not isinstance(data, dict):
            raise _bad(path, "a JSON object with 'scores' or 'label_sets'", type(data).__name__)
        return _from_table(path, data, target)
    if suffix == ".jsonl":
        return _from_lines(path, target)
    raise InvalidInputError(
        "--predictions",
        "a .npy, .npz, .json or .jsonl file",
        f"{path} ({suffix or 'no suffix'})",
        "See `phototag evaluate --help` for the formats.",
    )


def _bad(path: Path, expected: str, received: str, fix: str = "") -> InvalidInputError:
    return InvalidInputError(f"--predictions {path}", expected, received, fix)


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise _bad(path, "a NumPy .npy array", f"unreadable content ({exc})") from None


def _load_npz(path: Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise _bad(path, "a NumPy .npz archive", f"unreadable content ({exc})") from None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise _bad(path, "UTF-8 JSON text", "binary content") from None
    except json.JSONDecodeError as exc:
        raise _bad(path, "valid JSON", f"{exc.msg} at line {exc.lineno}") from None


def _as_matrix(path: Path, key: str, value: Any) -> np.ndarray:
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise _bad(
            path, f"'{key}' as a rectangular array of numbers", "ragged or non-numeric"
        ) from None
    if matrix.ndim != 2:
        raise _bad(path, f"'{key}' as a 2-D array [items, labels]", f"{matrix.ndim}-D")
    if not np.isfinite(matrix).all():
        row, col = np.argwhere(~np.isfinite(matrix))[0]
        raise _bad(path, "finite values", f"{matrix[row, col]} at row {row}, column {col}")
    return matrix


def _is_binary(matrix: np.ndarray) -> bool:
    return bool(np.isin(matrix, (0, 1)).all())


def _from_matrix(path: Path, matrix: np.ndarray, target: AnnotationSet) -> Prediction:
    is_sets = matrix.dtype == bool or np.issubdtype(matrix.dtype, np.integer)
    values = _as_matrix(path, "array", matrix)
    expected = (target.n_items, target.n_labels)
    if values.shape != expected:
        raise _bad(
            path,
            f"shape {expected} (items of the split x vocabulary labels)",
            f"{values.shape}",
            "Rows must follow the split's item order and columns the dataset vocabulary.",
        )
    if is_sets:
        if not _is_binary(values):
            raise _bad(path, "an integer array of 0/1 label sets", "other values")
        return Prediction(label_sets=values.astype(bool))
    return Prediction(scores=values.astype(np.float32))


def _from_table(path: Path, data: dict[str, Any], target: AnnotationSet) -> Prediction:
    if ("scores" in data) == ("label_sets" in data):
        raise _bad(path, "exactly one of 'scores' or 'label_sets'", f"keys {sorted(data)}")
    key = "scores" if "scores" in data else "label_sets"
    matrix = _as_matrix(path, key, data[key])
    if key == "label_sets" and not _is_binary(matrix):
        raise _bad(path, "'label_sets' of 0/1 values", "other values")
    rows = _row_order(path, data.get("item_ids"), len(matrix), target)
    columns = _column_order(path, data.get("labels"), matrix.shape[1], target)
    floor = matrix.min() - 1.0 if matrix.size else 0.0
    aligned = np.full((target.n_items, target.n_labels), 0.0 if key == "label_sets" else floor)
    aligned[:, columns] = matrix[rows]
    quantities = None
    if "quantities" in data:
        q = np.asarray(data["quantities"], dtype=np.float64).reshape(-1)
        if len(q) != len(matrix):
            raise _bad(path, f"{len(matrix)} quantities (one per row)", f"{len(q)}")
        quantities = q[rows]
    if key == "label_sets":
        return Prediction(label_sets=aligned.astype(bool), quantities=quantities)
    return Prediction(scores=aligned.astype(np.float32), quantities=quantities)


def _row_order(path: Path, item_ids: Any, n_rows: int, target: AnnotationSet) -> np.ndarray:
    """For each target item, the row of the file holding it."""
    if item_ids is None:
        if n_rows != target.n_items:
            raise _bad(
                path,
                f"{target.n_items} rows (one per item of the split)",
                f"{n_rows}",
                "Add 'item_ids' to match rows by id.",
            )
        return np.arange(n_rows)
    ids = [str(i) for i in np.asarray(item_ids).reshape(-1)]
    if len(ids) != n_rows:
        raise _bad(path, f"{n_rows} item_ids (one per row)", f"{len(ids)}")
    position = {item: row for row, item in enumerate(ids)}
    missing = [item for item in target.item_ids if item not in position]
    if missing:
        raise _bad(
            path,
            f"a prediction for each of the {target.n_items} items of the split",
            f"{len(missing)} missing (first: {missing[0]!r})",
        )
    return np.array([position[item] for item in target.item_ids], dtype=np.int64)


def _column_order(path: Path, labels: Any, n_columns: int, target: AnnotationSet) -> np.ndarray:
    """For each file column, its label id in the target vocabulary."""
    if labels is None:
        if n_columns != target.n_labels:
            raise _bad(
                path,
                f"{target.n_labels} columns (the dataset vocabulary)",
                f"{n_columns}",
                "Add 'labels' to name the columns.",
            )
        return np.arange(n_columns)
    names = [str(n) for n in np.asarray(labels).reshape(-1)]
    if len(names) != n_columns:
        raise _bad(path, f"{n_columns} labels (one per column)", f"{len(names)}")
    unknown = [n for n in names if n not in target.vocabulary]
    if unknown:
        raise _bad(
            path,
            "label names from the dataset vocabulary",
            f"{len(unknown)} unknown (first: {unknown[0]!r})",
        )
    return target.vocabulary.indices(names)


def _from_lines(path: Path, target: AnnotationSet) -> Prediction:
    row_of = {item: row for row, item in enumerate(target.item_ids)}
    scores = np.full((target.n_items, target.n_labels), np.nan)
    seen = np.zeros(target.n_items, dtype=bool)
    has_scores: bool | None = None
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(where, "one JSON object per line", exc.msg) from None
            if not isinstance(record, dict) or not isinstance(record.get("tags"), list):
                raise InvalidInputError(
                    where, 'an object with "id" or "path" and "tags"', line[:80]
                )
            item = str(record["id"]) if "id" in record else PurePath(str(record.get("path"))).name
            if item not in row_of:
                raise InvalidInputError(where, "an item of the split", repr(item))
            row = row_of[item]
            seen[row] = True
            for tag in record["tags"]:
                scored = isinstance(tag, dict)
                if has_scores is None:
                    has_scores = scored
                if scored != has_scores:
                    raise InvalidInputError(where, "tags all names or all {label, score}", "a mix")
                label = tag["label"] if scored else tag
                if label not in target.vocabulary:
                    raise InvalidInputError(where, "a label of the dataset vocabulary", repr(label))
                value = float(tag["score"]) if scored else 1.0
                if not np.isfinite(value):
                    raise InvalidInputError(where, "finite scores", repr(tag["score"]))
                scores[row, target.vocabulary.index(label)] = value
    if not seen.all():
        first = target.item_ids[int(np.argmin(seen))]
        raise _bad(
            path,
            f"a line for each of the {target.n_items} items of the split",
            f"{int((~seen).sum())} missing (first: {first!r})",
        )
    if not has_scores:
        return Prediction(label_sets=~np.isnan(scores))
    given = scores[~np.isnan(scores)]
    floor = given.min() - 1.0 if given.size else 0.0
    return Prediction(scores=np.where(np.isnan(scores), floor, scores).astype(np.float32))
