"""``file:PATH``: word vectors from a word2vec (binary or text) or GloVe text file.

Formats, detected from the content (gzip-compressed files are read transparently):

- word2vec binary: a header line ``"<count> <dim>"``, then per word the UTF-8 word, a
  space and ``dim`` little-endian float32 (an optional newline between records).
- word2vec text: the same header line, then ``word v1 ... vdim`` per line.
- GloVe text: ``word v1 ... vdim`` per line, no header.

Files can be huge (GoogleNews word2vec is 3.6 GB), so nothing is loaded up front:
each look-up of new words streams through the file once, parses only the lines of the
requested words and stops as soon as all of them have been seen. Words are matched
case-insensitively; when a file holds several casings (``Dog``, ``dog``), the first
one in the file (the most frequent, in word2vec and GloVe files) wins.
"""

from __future__ import annotations

import gzip
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Self

import numpy as np

from phototag.errors import DatasetFormatError, InvalidInputError
from phototag.features.embeddings._base import TableEmbedding, _check_words, phrase_keys, tag_tokens

_CHUNK = 1 << 24  # bytes read at a time from binary files
_MAX_WORD_BYTES = 1 << 16  # a longer "word" means the file is not what it claims to be
_MAX_HEADER_BYTES = 1 << 20


class WordVectorFile:
    """A word-vector file: its format and dimension (read on construction) and a scanner."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise InvalidInputError(
                "file embedding path",
                "an existing word2vec (.bin / text) or GloVe text file",
                str(self.path) + (" (a directory)" if self.path.is_dir() else " (not found)"),
                "Write the spec as file:/path/to/vectors.bin or file:/path/to/glove.txt.",
            )
        self.compressed = _is_gzip(self.path)
        self.count: int | None = None  # words announced by a word2vec header
        self._sniff()

    @contextmanager
    def _open(self) -> Iterator[BinaryIO]:
        with gzip.open(self.path, "rb") if self.compressed else open(self.path, "rb") as file:
            yield file  # type: ignore[misc]

    def _error(self, problem: str, line: int | None = None) -> DatasetFormatError:
        return DatasetFormatError(self.path, problem, line)

    def _sniff(self) -> None:
        with self._open() as file:
            first = file.readline(_MAX_HEADER_BYTES)
            if not first:
                raise self._error("the file is empty; expected word vectors")
            if not first.endswith(b"\n") and len(first) == _MAX_HEADER_BYTES:
                raise self._error("the first line is longer than 1 MB; not a word-vector file", 1)
            fields = first.split()
            if len(fields) == 2 and all(f.isdigit() for f in fields):
                self.count, self.dim = int(fields[0]), int(fields[1])
                if self.dim < 1:
                    raise self._error(f"header declares dimension {self.dim}", 1)
                self.header_bytes = len(first)
                peek = file.read(self.dim * 40 + 1024)
                self.format = "word2vec-text" if self._is_text(peek) else "word2vec-binary"
                return
            self.header_bytes = 0
            self.format = "glove-text"
            self.dim = len(fields) - 1
            if self.dim < 1:
                raise self._error(
                    "expected a word2vec header '<count> <dim>' or a GloVe line "
                    f"'word v1 v2 ...', got {first[:60]!r}",
                    1,
                )
            self._parse_vector(fields[1:], 1)

    def _is_text(self, peek: bytes) -> bool:
        """Whether the data after a word2vec header is a text line of ``dim`` numbers."""
        if self.count == 0:
            return True
        end = peek.find(b"\n")
        if end < 0:
            return False
        fields = peek[:end].rstrip().rsplit(b" ", self.dim)
        if len(fields) != self.dim + 1:
            return False
        try:
            [float(value) for value in fields[1:]]
        except ValueError:
            return False
        return True

    def _parse_vector(self, fields: Sequence[bytes], line: int) -> np.ndarray:
        if len(fields) != self.dim:
            raise self._error(
                f"expected a word and {self.dim} numbers separated by single spaces, "
                f"found {len(fields)} numbers",
                line,
            )
        try:
            return np.array([float(value) for value in fields], dtype=np.float32)
        except ValueError:
            bad = next(v for v in fields if not _is_float(v))
            raise self._error(f"{bad[:40]!r} is not a number", line) from None

    # ------------------------------------------------------------------ scanning
    def read(self, wanted: Collection[str] | None = None) -> dict[str, np.ndarray]:
        """Vectors of the `wanted` lower-case keys found in the file (all when None)."""
        if wanted is not None and not wanted:
            return {}
        if self.format == "word2vec-binary":
            return self._read_binary(wanted)
        return self._read_text(wanted)

    def _read_text(self, wanted: Collection[str] | None) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        dim = self.dim
        records = 0
        with self._open() as file:
            if self.header_bytes:
                file.readline()
            for number, raw in enumerate(file, start=2 if self.header_bytes else 1):
                line = raw.rstrip()
                if not line:
                    continue
                records += 1
                spaces = line.count(b" ")
                if spaces < dim:
                    raise self._error(
                        f"expected a word and {dim} numbers separated by single spaces, "
                        f"found {spaces} numbers",
                        number,
                    )
                if spaces == dim:
                    cut = line.find(b" ")
                    word, values = line[:cut], line[cut + 1 :].split(b" ")
                else:  # words with spaces inside (GloVe 840B has a few)
                    word, *values = line.rsplit(b" ", dim)
                key = word.decode("utf-8", "replace").lower()
                if (wanted is None or key in wanted) and key not in found:
                    found[key] = self._parse_vector(values, number)
                    if wanted is not None and len(found) == len(wanted):
                        return found
        self._check_count(records)
        return found

    def _read_binary(self, wanted: Collection[str] | None) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        size = 4 * self.dim
        assert self.count is not None
        with self._open() as file:
            file.read(self.header_bytes)
            buffer, pos, consumed = b"", 0, self.header_bytes
            for record in range(1, self.count + 1):
                while True:
                    while pos < len(buffer) and buffer[pos] in b"\n\r":
                        pos += 1
                    cut = buffer.find(b" ", pos)
                    if cut >= 0 and len(buffer) >= cut + 1 + size:
                        break
                    if cut < 0 and len(buffer) - pos > _MAX_WORD_BYTES:
                        raise self._error(
                            f"record {record} (byte {consumed + pos}): no space after the "
                            f"word within {_MAX_WORD_BYTES} bytes; not a word2vec binary file"
                        )
                    chunk = file.read(_CHUNK)
                    if not chunk:
                        raise self._error(
                            f"the file ends inside record {record} (byte {consumed + pos}) "
                            f"but its header declares {self.count} words of dimension "
                            f"{self.dim}; the file is truncated or the header is wrong"
                        )
                    consumed += pos
                    buffer, pos = buffer[pos:] + chunk, 0
                key = buffer[pos:cut].decode("utf-8", "replace").lower()
                if (wanted is None or key in wanted) and key not in found:
                    found[key] = np.frombuffer(buffer, "<f4", self.dim, cut + 1).astype(np.float32)
                    if wanted is not None and len(found) == len(wanted):
                        return found
                pos = cut + 1 + size
        return found

    def _check_count(self, records: int) -> None:
        if self.count is not None and records != self.count:
            raise self._error(
                f"the header declares {self.count} words but the file has {records}; the "
                "file is truncated or the header is wrong"
            )


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(2) == b"\x1f\x8b"


def _is_float(value: bytes) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


class FileEmbedding(TableEmbedding):
    """Vectors from a user-supplied word2vec / GloVe file (see the module docstring).

    `fit(vocabulary)` prefetches the vectors of all its tags in one pass over the file;
    later `embed` calls only read the file again for words not seen before.
    ``preload=True`` reads the whole file into memory at once instead.
    """

    def __init__(self, path: str | Path, *, preload: bool = False) -> None:
        self.file = WordVectorFile(path)
        self.name = f"file:{path}"
        self._table: dict[str, np.ndarray] = {}
        self._absent: set[str] = set()
        self._complete = False
        if preload:
            self._table = self.file.read(None)
            self._complete = True

    @property
    def dim(self) -> int:
        return self.file.dim

    @property
    def format(self) -> str:
        """``"word2vec-binary"``, ``"word2vec-text"`` or ``"glove-text"``."""
        return self.file.format

    def fit(self, vocabulary: Iterable[str]) -> Self:
        keys: dict[str, None] = {}
        for tag in _check_words(vocabulary, "vocabulary"):
            tokens = tag_tokens(tag)
            keys.update(dict.fromkeys((*phrase_keys(tokens), *tokens)))
        self._fetch(list(keys))
        return self

    def _fetch(self, keys: Sequence[str]) -> None:
        if self._complete:
            return
        needed = {key for key in keys if key not in self._table and key not in self._absent}
        if needed:
            self._table.update(self.file.read(needed))
            self._absent.update(needed - self._table.keys())

    def _lookup(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        self._fetch(keys)
        return {key: self._table[key] for key in keys if key in self._table}
