"""Helpers shared by the dataset readers: option parsing, strict file reading, image lookup.

Every problem with a dataset file is raised as `DatasetFormatError(path, problem, line)`;
every problem with a reader option as `InvalidInputError`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import scipy.sparse as sp

from phototag.data.annotation_set import AnnotationSet
from phototag.data.vocabulary import Vocabulary
from phototag.errors import DataDefectWarning, DatasetFormatError, InvalidInputError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic", ".heif"}
)

# ---------------------------------------------------------------------------- options


def choice_option(name: str, value: str | None, choices: Sequence[str], default: str) -> str:
    """A string option that must be one of `choices`."""
    if value is None or value == "":
        return default
    if value not in choices:
        raise InvalidInputError(name, f"one of {', '.join(choices)}", repr(value))
    return value


def bool_option(name: str, value: str | bool | None, default: bool) -> bool:
    """A true/false option as it arrives from ``NAME:PATH?key=value`` (or a Python bool)."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in {"true", "1", "yes", "on"}:
        return True
    if lowered in {"false", "0", "no", "off"}:
        return False
    raise InvalidInputError(name, "true or false", repr(value))


def int_option(name: str, value: str | int | None, default: int, minimum: int = 0) -> int:
    """A whole-number option, at least `minimum`."""
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidInputError(name, "a whole number", repr(value)) from None
    if number < minimum:
        raise InvalidInputError(name, f"a number >= {minimum}", repr(value))
    return number


def directory_option(name: str, value: str | os.PathLike[str] | None) -> Path | None:
    """An optional existing directory given as an option."""
    if value is None or value == "":
        return None
    directory = Path(value).expanduser()
    if not directory.is_dir():
        raise InvalidInputError(name, "an existing directory", f"{value} (not found)")
    return directory.resolve()


# ----------------------------------------------------------------------- notes, ids


def record_defect(notes: list[str], message: str) -> None:
    """Record a data defect the reader handled: in `notes` and as a `DataDefectWarning`."""
    notes.append(message)
    warnings.warn(message, DataDefectWarning, stacklevel=3)


def synthetic_ids(prefix: str, n: int, width: int = 6) -> list[str]:
    """Stable ids ``prefix/000000`` ... for items whose dataset gives no id."""
    return [f"{prefix}/{i:0{width}d}" for i in range(n)]


# --------------------------------------------------------------------- files, lines


def require_file(path: Path, layout: str) -> Path:
    """`path` if it is a file, else a `DatasetFormatError` that shows the expected layout."""
    if not path.is_file():
        raise DatasetFormatError(path, f"file not found; expected layout: {layout}")
    return path


def first_existing(candidates: Sequence[Path], layout: str) -> Path:
    """The first of `candidates` that is a file; else an error naming the first candidate."""
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    others = ", ".join(str(c) for c in candidates[1:])
    also = f" (also looked for {others})" if others else ""
    raise DatasetFormatError(candidates[0], f"file not found{also}; expected layout: {layout}")


def decode_text(data: bytes, where: str | Path) -> str:
    """UTF-8 text (an optional byte-order mark is dropped); errors name the line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetFormatError(where, "not UTF-8 text", line) from None


def read_text(path: Path) -> str:
    return decode_text(path.read_bytes(), path)


def line_at(text: str, position: int) -> int:
    """1-based line number of character `position` in `text`."""
    return text.count("\n", 0, max(position, 0)) + 1


def line_of(text: str, needle: str, start: int = 0) -> int | None:
    """1-based line of the first `needle` at or after `start`, or None."""
    position = text.find(needle, start)
    return None if position < 0 else line_at(text, position)


def read_name_list(text: str, where: str | Path, what: str = "name") -> list[tuple[int, str]]:
    """Non-blank stripped lines with their 1-based line numbers; duplicates are an error."""
    seen: dict[str, int] = {}
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        name = raw.strip()
        if not name:
            continue
        if name in seen:
            raise DatasetFormatError(
                where,
                f"{what} {name!r} repeats line {seen[name]} (expected unique {what}s)",
                number,
            )
        seen[name] = number
        out.append((number, name))
    return out


def read_vocabulary_file(path: Path, what: str = "label") -> Vocabulary:
    """A vocabulary file: one name per line, in label-id order."""
    names = read_name_list(read_text(path), path, what)
    if not names:
        raise DatasetFormatError(path, f"empty; expected one {what} per line")
    return Vocabulary(name for _, name in names)


def load_json(path: Path) -> tuple[Any, str]:
    """Parsed JSON and its text; syntax errors name the line."""
    text = read_text(path)
    try:
        return json.loads(text), text
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(path, f"invalid JSON: {exc.msg}", exc.lineno) from None


# ------------------------------------------------------------------------- images


class ImageResolver:
    """Finds image files under `root` by name: ``root/<split>/<name>``, ``root/<name>``, or
    anywhere below `root` when the file name is unique there."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._index: dict[str, Path | None] | None = None

    def _by_name(self) -> dict[str, Path | None]:
        if self._index is None:
            index: dict[str, Path | None] = {}
            for folder, dirs, files in os.walk(self.root):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for file in files:
                    # a name found twice is ambiguous: remember that with None
                    index[file] = None if file in index else Path(folder) / file
            self._index = index
        return self._index

    def find(self, name: str, split: str | None = None) -> Path | None:
        candidates = [self.root / split / name] if split else []
        candidates.append(self.root / name)
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        return self._by_name().get(Path(name).name)


def resolve_image_paths(
    root: Path,
    names: Sequence[str],
    find: Callable[[int], Path | None],
    *,
    drop_missing: bool,
    notes: list[str],
    fix: str = "Pass missing_images=drop to leave those items out.",
) -> tuple[list[str], np.ndarray]:
    """Absolute image paths of the items that have an image, and those items' indices.

    `find(i)` locates item i's image. Missing images raise `DatasetFormatError` naming
    the first and how many, unless `drop_missing`: then those items are left out and
    the count is noted.
    """
    paths: list[str] = []
    kept: list[int] = []
    missing: list[str] = []
    for i, name in enumerate(names):
        found = find(i)
        if found is None:
            missing.append(name)
            continue
        paths.append(os.path.abspath(found))
        kept.append(i)
    if missing and not drop_missing:
        raise DatasetFormatError(
            root / missing[0],
            f"image not found ({len(missing)} of {len(names)} images missing under {root}). {fix}",
        )
    if missing:
        notes.append(
            f"{len(missing)} of {len(names)} items left out because their image is missing "
            f"under {root} (missing_images=drop), e.g. {missing[0]}"
        )
    return paths, np.asarray(kept, dtype=np.int64)


def attach_images(dataset: AnnotationSet, paths: list[str], kept: np.ndarray) -> AnnotationSet:
    """`dataset` restricted to the items at `kept`, with their image paths."""
    if len(kept) != dataset.n_items:
        dataset = dataset.subset(kept)
    dataset.image_paths = paths
    return dataset


# ------------------------------------------------------------ fast 0/1 text tables


class BinaryTable:
    """Rows of a whitespace-separated 0/1 text table, and its non-0/1 entries.

    `anomalies` holds ``(line, column, token)`` for integer entries other than 0 and 1;
    they are read as 0 (only the value 1 means "present").
    """

    def __init__(self, rows: sp.csr_matrix, anomalies: list[tuple[int, int, str]]) -> None:
        self.rows = rows
        self.anomalies = anomalies


_BLANK_BYTES = frozenset(b" \t\r\n\v\f")
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 32]] = True
# byte classes for the fixed-width check: 0 blank, 1 newline, 2 "0" or "1", 3 anything else
_CLASS = np.full(256, 3, dtype=np.uint8)
_CLASS[[9, 11, 12, 13, 32]] = 0
_CLASS[10] = 1
_CLASS[[48, 49]] = 2


def _parse_fixed_width(chunk: bytes, b: np.ndarray, n_columns: int | None) -> sp.csr_matrix | None:
    """The common case in a few passes: every line has the same layout of one-byte 0/1
    values (``0\\n`` per line, or ``0 1 0 ...\\n``). None when it does not apply."""
    width = chunk.find(b"\n") + 1
    if width == 0 or len(b) % width:
        return None
    template = _CLASS[b[:width]]  # the first line's byte classes
    columns = np.flatnonzero(template == 2)
    if len(columns) == 0 or (template == 3).any() or (template[:-1] == 1).any():
        return None
    if (n_columns is not None and len(columns) != n_columns) or (np.diff(columns) == 1).any():
        return None  # another width, or a value longer than one byte
    n_rows = len(b) // width
    rows = b.reshape(n_rows, width)
    # Lines may differ from the first only where it has a value, and only "0" <-> "1"
    # (48 ^ 49 == 1); every other byte must repeat the first line's exactly.
    allowed = (template == 2).astype(np.uint8)
    if not (np.bitwise_xor(rows, rows[0]) <= allowed).all():
        return None
    ones = np.flatnonzero(b == 49)
    row, offset = np.divmod(ones, width)
    column_of = np.full(width, -1, dtype=np.int64)
    column_of[columns] = np.arange(len(columns))
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=n_rows), out=indptr[1:])
    data = np.ones(len(ones), dtype=bool)
    return sp.csr_matrix((data, column_of[offset], indptr), shape=(n_rows, len(columns)))


def _parse_binary_chunk(
    chunk: bytes, n_columns: int | None, where: str | Path, first_line: int
) -> tuple[sp.csr_matrix, list[tuple[int, int, str]]]:
    """Parse whole lines of 0/1 tokens with numpy; only unusual lines go through Python."""
    b = np.frombuffer(chunk, dtype=np.uint8)
    if len(b) == 0:
        return sp.csr_matrix((0, n_columns or 0), dtype=bool), []
    fixed = _parse_fixed_width(chunk, b, n_columns)
    if fixed is not None:
        return fixed, []
    ws = np.empty(len(b) + 1, dtype=bool)  # one whitespace sentinel after the end
    np.take(_WHITESPACE, b, out=ws[:-1])
    ws[-1] = True
    newline = np.flatnonzero(b == 10)
    ends = newline if b[-1] == 10 else np.append(newline, len(b))
    line_starts = np.concatenate([[0], ends[:-1] + 1])
    starts_token = ~ws[:-1]
    starts_token[1:] &= ws[:-2]
    token_pos = np.flatnonzero(starts_token)
    token_line = np.cumsum(b == 10, dtype=np.int32)[token_pos]
    counts = np.bincount(token_line, minlength=len(ends))
    if n_columns is None:
        n_columns = int(counts[0])
        if n_columns == 0:
            raise DatasetFormatError(where, "expected 0/1 values, found an empty line", first_line)
    first = b[token_pos]
    simple = ((first == 48) | (first == 49)) & ws[token_pos + 1]
    unusual_lines = np.unique(token_line[~simple])
    bad_count = np.flatnonzero(counts != n_columns)
    first_bad_count = int(bad_count[0]) if len(bad_count) else len(counts)

    anomalies: list[tuple[int, int, str]] = []
    fixes: list[tuple[int, np.ndarray]] = []
    for line in unusual_lines.tolist():
        if line > first_bad_count:
            break
        text = chunk[line_starts[line] : ends[line]].decode("latin-1")
        values = np.zeros(n_columns, dtype=np.uint8)
        tokens = text.split()
        if len(tokens) != n_columns:
            break  # reported as a wrong count below
        for column, token in enumerate(tokens):
            try:
                number = int(token)
            except ValueError:
                raise DatasetFormatError(
                    where,
                    f"expected 0 or 1, found {token!r} (value {column + 1} of {n_columns})",
                    first_line + line,
                ) from None
            if number == 1:
                values[column] = 1
            elif number != 0:
                anomalies.append((first_line + line, column + 1, token))
        fixes.append((line, values))
    if len(bad_count):
        line = int(bad_count[0])
        raise DatasetFormatError(
            where,
            f"expected {n_columns} whitespace-separated 0/1 values, found {int(counts[line])}",
            first_line + line,
        )
    matrix = (first - 48).reshape(len(counts), n_columns)
    for line, values in fixes:
        matrix[line] = values
    return sp.csr_matrix(matrix, dtype=bool), anomalies


def _chunks(stream: IO[bytes], chunk_bytes: int) -> Iterator[bytes]:
    """Successive pieces of `stream`, each ending at a line end (the last may not)."""
    rest = b""
    while True:
        block = stream.read(chunk_bytes)
        if not block:
            break
        block = rest + block
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            rest = block
            continue
        rest = block[cut:]
        yield block[:cut]
    if rest:
        yield rest


def read_binary_table(
    stream: IO[bytes],
    where: str | Path,
    n_columns: int | None = None,
    chunk_bytes: int = 16 << 20,
) -> BinaryTable:
    """Read a text table of 0/1 values (one row per line), fast, in bounded memory.

    `n_columns` None takes the width of the first line. Trailing blank lines are
    ignored; any other deviation raises `DatasetFormatError` naming the line.
    """
    pieces: list[sp.csr_matrix] = []
    anomalies: list[tuple[int, int, str]] = []
    line = 1
    pending = b""
    for chunk in _chunks(stream, chunk_bytes):
        # hold back trailing blank lines until we know whether more data follows
        data = pending + chunk if pending else chunk
        content_end = len(data)
        while content_end and data[content_end - 1] in _BLANK_BYTES:
            content_end -= 1
        if content_end == 0:
            pending = data
            continue
        cut = data.find(b"\n", content_end)
        cut = len(data) if cut < 0 else cut + 1
        body, pending = (data, b"") if cut == len(data) else (data[:cut], data[cut:])
        matrix, found = _parse_binary_chunk(body, n_columns, where, line)
        n_columns = matrix.shape[1]
        anomalies.extend(found)
        pieces.append(matrix)
        line += matrix.shape[0]
    if not pieces:
        return BinaryTable(sp.csr_matrix((0, n_columns or 0), dtype=bool), anomalies)
    return BinaryTable(sp.vstack(pieces, format="csr"), anomalies)


def describe_anomalies(anomalies: Sequence[tuple[int, int, str]], where: str | Path) -> str:
    """A note naming the file, lines and values of non-0/1 entries read as 0."""
    shown = ", ".join(f"line {line}: {token!r}" for line, _, token in anomalies[:5])
    more = f" and {len(anomalies) - 5} more" if len(anomalies) > 5 else ""
    return (
        f"{where}: {len(anomalies)} value(s) other than 0/1 ({shown}{more}); "
        "read as 0 (only 1 means the label is present)"
    )


def csv_columns(header: Sequence[str], required: Sequence[str], where: Path) -> Mapping[str, int]:
    """Column positions of a CSV header; missing required columns are an error on line 1."""
    positions = {name.strip().lower(): i for i, name in enumerate(header)}
    absent = [name for name in required if name not in positions]
    if absent:
        raise DatasetFormatError(
            where,
            f"header must name the columns {', '.join(required)} (found {', '.join(header)})",
            1,
        )
    return positions
