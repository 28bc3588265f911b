"""Mulan multi-label datasets: ARFF files (dense or sparse rows) plus an XML label list.

A small streaming ARFF reader is used instead of liac-arff so that every error names
the line of the file, rows can be checked for exact duplicates, and sparse rows go
straight into arrays.
"""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phototag.data.annotation_set import AnnotationSet, merge_splits, multi_hot
from phototag.data.readers import register_reader
from phototag.data.readers._common import (
    choice_option,
    line_of,
    read_text,
    record_defect,
)
from phototag.data.vocabulary import Vocabulary
from phototag.errors import DatasetFormatError, InvalidInputError

LAYOUT = (
    "a directory with NAME.xml and NAME-train.arff + NAME-test.arff (or the -sparse "
    "variants NAME-train-sparse.arff, NAME-test-sparse.arff; or one NAME.arff), "
    "or a single .arff file with xml=FILE"
)
NUMERIC_TYPES = {"numeric", "real", "integer"}


@dataclass
class Attribute:
    name: str
    line: int
    nominal: list[str] | None = None  # None: numeric
    codes: dict[str, float] = field(default_factory=dict)  # nominal value -> number

    @property
    def default(self) -> float:
        """Value of an entry a sparse row leaves out (index 0 = first nominal value)."""
        return self.codes[self.nominal[0]] if self.nominal else 0.0


@dataclass
class ArffTable:
    relation: str
    features: np.ndarray  # n x n_features, float32
    labels: list[list[int]]  # label ids per row
    rows: list[int]  # 0-based data-row index of each kept row
    lines: list[int]  # 1-based file line of each kept row
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (line, first line)


def _unquote(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1].replace("\\" + token[0], token[0])
    return token


def _split_name(text: str, path: Path, line: int) -> tuple[str, str]:
    """``name rest`` where name may be quoted."""
    text = text.strip()
    if text[:1] in "'\"":
        end = text.find(text[0], 1)
        while end > 0 and text[end - 1] == "\\":
            end = text.find(text[0], end + 1)
        if end < 0:
            raise DatasetFormatError(path, "unterminated quoted name", line)
        return text[1:end], text[end + 1 :].strip()
    parts = text.split(None, 1)
    if not parts:
        raise DatasetFormatError(path, "expected a name", line)
    return parts[0], parts[1].strip() if len(parts) > 1 else ""


def _parse_attribute(text: str, path: Path, line: int) -> Attribute:
    name, kind = _split_name(text, path, line)
    if kind.startswith("{"):
        if not kind.endswith("}"):
            raise DatasetFormatError(path, f"attribute {name!r}: unterminated {{...}}", line)
        values = [_unquote(v) for v in next(csv.reader([kind[1:-1]], skipinitialspace=True))]
        attribute = Attribute(name, line, nominal=values)
        try:
            attribute.codes = {v: float(v) for v in values}
        except ValueError:  # non-numeric nominal values: their position
            attribute.codes = {v: float(i) for i, v in enumerate(values)}
        return attribute
    if kind.lower() in NUMERIC_TYPES:
        return Attribute(name, line)
    raise DatasetFormatError(
        path,
        f"attribute {name!r} has type {kind!r}; expected numeric, real, integer or {{...}}",
        line,
    )


def _data_lines(lines: list[str], start: int) -> Iterator[tuple[int, str]]:
    for index in range(start, len(lines)):
        text = lines[index].strip()
        if text and not text.startswith("%"):
            yield index + 1, text


def read_arff(path: Path, label_names: list[str], xml_path: Path) -> ArffTable:
    """Rows of a Mulan ARFF file split into features (float32) and label ids."""
    lines = read_text(path).splitlines()
    relation = ""
    attributes: list[Attribute] = []
    data_start = None
    for index, raw in enumerate(lines):
        text = raw.strip()
        if not text or text.startswith("%"):
            continue
        keyword, *more = text.split(None, 1)
        keyword, rest = keyword.lower(), more[0] if more else ""
        if keyword == "@relation":
            relation = _unquote(rest)
        elif keyword == "@attribute":
            attributes.append(_parse_attribute(rest, path, index + 1))
        elif keyword == "@data":
            data_start = index + 1
            break
        else:
            raise DatasetFormatError(
                path, f"expected @relation, @attribute or @data, found {text[:40]!r}", index + 1
            )
    if data_start is None:
        raise DatasetFormatError(path, "no @data section; not an ARFF file", len(lines) or None)
    if not attributes:
        raise DatasetFormatError(path, "no @attribute lines before @data", data_start)

    position = {a.name: i for i, a in enumerate(attributes)}
    xml_text = read_text(xml_path)
    for name in label_names:
        if name not in position:
            raise DatasetFormatError(
                xml_path,
                f"label {name!r} is not an attribute of {path.name}",
                line_of(xml_text, f'"{name}"'),
            )
    label_column = {position[name]: k for k, name in enumerate(label_names)}
    for column in label_column:
        attribute = attributes[column]
        if attribute.nominal is not None and not set(attribute.nominal) <= {"0", "1"}:
            raise DatasetFormatError(
                path,
                f"label attribute {attribute.name!r} must take the values 0/1, "
                f"declared {{{','.join(attribute.nominal)}}}",
                attribute.line,
            )
    feature_columns = [i for i in range(len(attributes)) if i not in label_column]
    feature_slot = np.full(len(attributes), -1, dtype=np.int64)
    feature_slot[feature_columns] = np.arange(len(feature_columns))
    defaults = np.array([attributes[i].default for i in feature_columns], dtype=np.float32)
    numeric_features = all(attributes[i].nominal is None for i in feature_columns)

    def value(column: int, token: str, line: int) -> float:
        attribute = attributes[column]
        token = _unquote(token)
        if column in label_column:
            if token not in ("0", "1"):
                raise DatasetFormatError(
                    path, f"label {attribute.name!r}: expected 0 or 1, found {token!r}", line
                )
            return float(token)
        if token == "?":
            return float("nan")
        if attribute.nominal is not None:
            if token not in attribute.codes:
                raise DatasetFormatError(
                    path,
                    f"attribute {attribute.name!r}: {token!r} is not one of its declared values",
                    line,
                )
            return attribute.codes[token]
        try:
            return float(token)
        except ValueError:
            raise DatasetFormatError(
                path, f"attribute {attribute.name!r}: expected a number, found {token!r}", line
            ) from None

    n_attributes = len(attributes)
    feature_rows: list[np.ndarray] = []
    label_rows: list[list[int]] = []
    rows: list[int] = []
    row_lines: list[int] = []
    for row, (line, text) in enumerate(_data_lines(lines, data_start)):
        features = defaults.copy()
        labels: list[int] = []
        if text.startswith("{"):
            if not text.endswith("}"):
                raise DatasetFormatError(path, "sparse row must end with '}'", line)
            body = text[1:-1].strip()
            for entry in body.split(",") if body else []:
                index_text, _, token = entry.strip().partition(" ")
                if not index_text.isdigit() or int(index_text) >= n_attributes or not token:
                    raise DatasetFormatError(
                        path,
                        f"sparse entry {entry.strip()!r}: expected '<index> <value>' with "
                        f"index 0..{n_attributes - 1}",
                        line,
                    )
                column = int(index_text)
                number = value(column, token, line)
                if column in label_column:
                    if number == 1.0:
                        labels.append(label_column[column])
                else:
                    features[feature_slot[column]] = number
        else:
            tokens = (
                next(csv.reader([text], quotechar="'", skipinitialspace=True))
                if "'" in text or '"' in text
                else text.split(",")
            )
            if len(tokens) != n_attributes:
                raise DatasetFormatError(
                    path,
                    f"expected {n_attributes} comma-separated values, found {len(tokens)}",
                    line,
                )
            converted = None
            if numeric_features:
                try:
                    converted = np.asarray([tokens[i] for i in feature_columns], dtype=np.float32)
                except ValueError:
                    converted = None
            if converted is None:
                converted = np.array(
                    [value(i, tokens[i], line) for i in feature_columns], dtype=np.float32
                )
            features = converted
            for column, k in label_column.items():
                if value(column, tokens[column], line) == 1.0:
                    labels.append(k)
        feature_rows.append(features)
        label_rows.append(sorted(labels))
        rows.append(row)
        row_lines.append(line)
    matrix = (
        np.vstack(feature_rows)
        if feature_rows
        else np.zeros((0, len(feature_columns)), dtype=np.float32)
    )
    return ArffTable(relation, matrix.astype(np.float32, copy=False), label_rows, rows, row_lines)


def find_duplicates(table: ArffTable) -> list[tuple[int, int]]:
    """(row, earlier row) pairs of rows whose features and labels repeat an earlier row."""
    seen: dict[tuple[bytes, tuple[int, ...]], int] = {}
    pairs = []
    for k in range(len(table.rows)):
        key = (table.features[k].tobytes(), tuple(table.labels[k]))
        if key in seen:
            pairs.append((k, seen[key]))
        else:
            seen[key] = k
    return pairs


def read_label_names(xml_path: Path) -> list[str]:
    """Label names of a Mulan XML file, in document order (nested labels included)."""
    text = read_text(xml_path)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise DatasetFormatError(xml_path, f"invalid XML: {exc}", exc.position[0]) from None
    names = [
        element.get("name", "")
        for element in root.iter()
        if element.tag.rsplit("}", 1)[-1] == "label"
    ]
    if not names or any(not n for n in names):
        raise DatasetFormatError(
            xml_path, 'expected <label name="..."> elements, each with a name', 1
        )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DatasetFormatError(
                xml_path, f"label {name!r} is listed twice", line_of(text, f'"{name}"')
            )
        seen.add(name)
    return names


def _arff_files(directory: Path, name: str) -> dict[str, Path]:
    """The ARFF files of dataset `name`: train/test (sparse preferred) or one whole file."""
    found: dict[str, Path] = {}
    for split in ("train", "test"):
        for candidate in (f"{name}-{split}-sparse.arff", f"{name}-{split}.arff"):
            if (directory / candidate).is_file():
                found[split] = directory / candidate
                break
    if len(found) == 1:
        missing = "test" if "train" in found else "train"
        raise DatasetFormatError(
            directory / f"{name}-{missing}.arff",
            f"file not found (nor {name}-{missing}-sparse.arff), but "
            f"{found[next(iter(found))].name} exists; expected layout: {LAYOUT}",
        )
    if found:
        return found
    for candidate in (f"{name}-sparse.arff", f"{name}.arff"):
        if (directory / candidate).is_file():
            return {"": directory / candidate}
    raise DatasetFormatError(
        directory / f"{name}-train.arff",
        f"file not found (nor any other ARFF file of {name!r}); expected layout: {LAYOUT}",
    )


def _base_name(arff: Path) -> str:
    return re.sub(r"(-sparse)?(-(train|test))?(-sparse)?$", "", arff.stem)


@register_reader("mulan")
def read_mulan(
    path: Path,
    *,
    name: str | None = None,
    xml: str | None = None,
    duplicates: str | None = None,
) -> AnnotationSet:
    """Mulan multi-label ARFF + XML (dense or sparse rows); features in features["arff"].

    PATH is a directory (with ``name=NAME`` unless it holds exactly one ``.xml``) or
    one ``.arff`` file (label list from ``xml=FILE``, default ``NAME.xml`` beside it).

    Options:
        name: dataset name, i.e. the stem of ``NAME.xml`` (``scene``, ``Corel5k``, ...).
        xml: the label XML file (single-file form only).
        duplicates: rows that repeat an earlier row of the same file exactly
            (features and labels): ``auto`` (default) drops them in Mulan's Corel5k
            files, whose rows are Duygulu's images in order and where the repeat is a
            known defect, and keeps them elsewhere; ``drop`` always drops, ``keep``
            always keeps. Every duplicate found is listed in the notes.

    Ids are ``<split>/<row>`` (``row/<row>`` without splits), the 0-based data-row index
    in its file (ARFF rows carry no image id; a dropped row leaves a gap).
    """
    policy = choice_option("duplicates", duplicates, ("auto", "keep", "drop"), "auto")
    path = Path(path)
    if path.is_file():
        if name:
            raise InvalidInputError("name", "no name when PATH is one .arff file", repr(name))
        xml_path = Path(xml).expanduser() if xml else path.with_name(f"{_base_name(path)}.xml")
        if not xml_path.is_file():
            raise DatasetFormatError(
                xml_path, f"label XML file not found; pass xml=FILE. Expected layout: {LAYOUT}"
            )
        files = {"": path}
        dataset_name = _base_name(path)
    elif path.is_dir():
        if xml:
            raise InvalidInputError(
                "xml", "no xml option when PATH is a directory (use name=NAME)", repr(xml)
            )
        if not name:
            candidates = sorted(p.stem for p in path.glob("*.xml"))
            if len(candidates) != 1:
                raise InvalidInputError(
                    "name",
                    "the dataset name (stem of its .xml file) when the directory holds "
                    "other than one .xml file",
                    f"none; found {', '.join(candidates) or 'no .xml files'}",
                    f"Add ?name=NAME, e.g. name={candidates[0] if candidates else 'scene'}.",
                )
            name = candidates[0]
        xml_path = path / f"{name}.xml"
        if not xml_path.is_file():
            raise DatasetFormatError(
                xml_path, f"label XML file not found; expected layout: {LAYOUT}"
            )
        files = _arff_files(path, name)
        dataset_name = name
    else:
        raise DatasetFormatError(path, f"not found; expected layout: {LAYOUT}")

    label_names = read_label_names(xml_path)
    vocabulary = Vocabulary(label_names)
    parts: dict[str, AnnotationSet] = {}
    features: list[np.ndarray] = []
    notes: list[str] = []
    for split, arff_path in files.items():
        table = read_arff(arff_path, label_names, xml_path)
        pairs = find_duplicates(table)
        drop = policy == "drop" or (
            policy == "auto" and table.relation.lower().startswith("corel5k")
        )
        if pairs:
            described = ", ".join(
                f"line {table.lines[k]} (row {table.rows[k]}) = line {table.lines[j]} "
                f"(row {table.rows[j]})"
                for k, j in pairs[:5]
            )
            more = f" and {len(pairs) - 5} more" if len(pairs) > 5 else ""
            action = "dropped" if drop else "kept"
            message = (
                f"{arff_path}: {len(pairs)} row(s) exactly repeat an earlier row "
                f"(features and labels): {described}{more}; {action} (duplicates={policy})"
            )
            if drop:
                record_defect(notes, message)
                keep = np.setdiff1d(np.arange(len(table.rows)), [k for k, _ in pairs])
                table.features = table.features[keep]
                table.labels = [table.labels[k] for k in keep]
                table.rows = [table.rows[k] for k in keep]
            else:
                notes.append(message)
        prefix = split or "row"
        ids = [f"{prefix}/{row:06d}" for row in table.rows]
        labels = multi_hot(table.labels, len(vocabulary))
        parts[split] = AnnotationSet(
            dataset_name, ids, vocabulary, labels, features={"arff": table.features}
        )
        features.append(table.features)
    if "" in parts:
        dataset = parts[""]
    else:
        dataset = merge_splits(dataset_name, parts, features={"arff": np.vstack(features)})
    dataset.notes.extend(notes)
    return dataset
