"""On-disk feature store: features computed once, keyed by file content + encoder id.

Layout of one store (one directory per encoder id under the store root)::

    ROOT/<encoder id>/meta.json       encoder id, dimension, dtype
    ROOT/<encoder id>/vectors.bin     raw rows, appended, memory-mapped for reading
    ROOT/<encoder id>/index.sqlite    content digest -> row
    ROOT/<encoder id>/maps/<stage>.<view>/   spatial maps, the same layout
                                      (`phototag.features.maps`)

Rows are written and synced before their index entries are committed, so a process
killed at any point, or a disk that fills up, leaves a consistent store: rows without a
committed index entry are cut off by the next write, and their images are simply
computed again. ``meta.json`` is replaced atomically (`phototag.fileio.atomic_write`).
Writers take an exclusive lock on ``lock`` in the store's folder, so several processes
may fill and read one store at the same time.

A full disk or an unwritable folder is one `StorageError` naming the folder; a damaged
file (``meta.json`` that is not JSON, an index that is not SQLite, a rows file shorter
than its index says) is a `DamagedFileError` that says to delete the folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from phototag.cache import default_store_root  # noqa: F401  (its home before cache.py)
from phototag.errors import InvalidInputError, PhototagError
from phototag.fileio import DamagedFileError, atomic_write, storage_error

_DTYPES = ("float16", "float32")
_SCHEMA = "CREATE TABLE IF NOT EXISTS rows (digest TEXT PRIMARY KEY, row INTEGER NOT NULL)"


def safe_name(key: str) -> str:
    """`key` (an encoder id, a stage name) as one portable folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key)


def encoder_directory(root: str | Path, encoder_id: str) -> Path:
    """The folder of `encoder_id`'s features under the store root `root`."""
    return Path(root).expanduser() / safe_name(encoder_id)


@dataclass(frozen=True)
class MappedRows:
    """Stored rows picked by digest, read from the store's memory map only when indexed.

    ``rows[i]``, ``rows[a:b]`` or ``rows[indices]`` read just those rows (a training
    batch), ``np.asarray(rows)`` all of them; nothing is loaded before.
    """

    source: np.memmap
    rows: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.source.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.source.dtype

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self.source[self.rows[index]])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self[:] if dtype is None else self[:].astype(dtype)

    def take(self, indices: Any, axis: int = 0) -> MappedRows:
        """Rows `indices` of these, still unread (as ``ndarray.take`` along axis 0)."""
        if axis != 0:
            raise InvalidInputError("axis", "0 (rows)", repr(axis))
        return MappedRows(self.source, self.rows[np.asarray(indices, dtype=np.int64)])


class RowStore:
    """Append-only store of fixed-shape rows keyed by file content digest, in one folder.

    The two kinds are `FeatureStore` (pooled vectors) and
    `phototag.features.maps.FeatureMapStore` (spatial maps); both follow the layout and
    safety rules of this module.
    """

    #: The file of raw rows in the store's folder.
    data_name: ClassVar[str] = "vectors.bin"
    #: What the rows are called in messages about `add`'s argument.
    rows_name: ClassVar[str] = "vectors"

    def __init__(
        self, directory: Path, meta: dict[str, Any], row_shape: tuple[int, ...], dtype: str
    ) -> None:
        if dtype not in _DTYPES:
            raise InvalidInputError("dtype", f"one of {_DTYPES}", repr(dtype))
        self.row_shape = tuple(int(n) for n in row_shape)
        self.dtype = np.dtype(dtype)
        self.directory = directory
        self._data_path = self.directory / self.data_name
        self._mmap: np.memmap | None = None
        with self._guard():
            self.directory.mkdir(parents=True, exist_ok=True)
            self._check_meta(meta)
            self._data_path.touch()
            self._db = sqlite3.connect(self.directory / "index.sqlite")
        try:
            with self._guard(), self._db:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute(_SCHEMA)
            self._checked_rows()
        except PhototagError:
            self._db.close()
            raise

    @property
    def _row_bytes(self) -> int:
        return int(np.prod(self.row_shape)) * self.dtype.itemsize

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Failures to read or write this store's files as one clear error."""
        try:
            yield
        except PhototagError:
            raise
        except (OSError, sqlite3.OperationalError) as error:  # full, read-only, locked
            raise storage_error(self.directory, error) from None
        except sqlite3.DatabaseError as error:  # "file is not a database", "malformed"
            raise self._damaged("index.sqlite", f"not a readable SQLite index ({error})") from None

    def _damaged(self, name: str, problem: str) -> DamagedFileError:
        fix = f"Delete the folder {self.directory} to recompute these features"
        return DamagedFileError(self.directory / name, problem, fix)

    def _check_meta(self, meta: dict[str, Any]) -> None:
        meta_path = self.directory / "meta.json"
        if not meta_path.exists():
            atomic_write(meta_path, json.dumps(meta))
            return
        try:
            found = json.loads(meta_path.read_bytes())
        except ValueError:  # empty, cut short, not UTF-8
            raise self._damaged("meta.json", "empty or not valid JSON") from None
        if found != meta:
            raise InvalidInputError(
                f"feature store {self.directory}",
                f"features matching {meta}",
                str(found),
                "Use another --store folder, or delete this one to recompute.",
            )

    @property
    def _n_rows(self) -> int:
        """Committed rows (other processes may have added some since the last call)."""
        with self._guard():
            return int(self._db.execute("SELECT COUNT(*) FROM rows").fetchone()[0])

    def _checked_rows(self) -> int:
        """`_n_rows`, after checking that the rows file holds every one of them."""
        n_rows = self._n_rows
        with self._guard():
            size = self._data_path.stat().st_size
        if size < n_rows * self._row_bytes:
            raise self._damaged(
                self.data_name,
                f"{size} bytes, but the index lists {n_rows} rows of {self._row_bytes} bytes",
            )
        return n_rows

    def __len__(self) -> int:
        return self._n_rows

    def __contains__(self, digest: object) -> bool:
        with self._guard():
            row = self._db.execute("SELECT 1 FROM rows WHERE digest = ?", (digest,)).fetchone()
        return row is not None

    def rows_of(self, digests: Sequence[str]) -> np.ndarray:
        """Row of each digest in the store, -1 where it is not stored yet."""
        result = np.full(len(digests), -1, dtype=np.int64)
        position: dict[str, list[int]] = {}
        for i, digest in enumerate(digests):
            position.setdefault(digest, []).append(i)
        unique = list(position)
        for start in range(0, len(unique), 900):  # SQLite's bound-parameter limit
            chunk = unique[start : start + 900]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT digest, row FROM rows WHERE digest IN ({marks})"
            with self._guard():
                found = self._db.execute(query, chunk).fetchall()
            for digest, row in found:
                result[position[digest]] = row
        return result

    def vectors(self) -> np.ndarray:
        """All stored rows as a read-only memory map ``[len(self), *row_shape]``."""
        n_rows = self._checked_rows()
        if n_rows == 0:
            return np.zeros((0, *self.row_shape), dtype=self.dtype)
        if self._mmap is None or len(self._mmap) != n_rows:
            with self._guard():
                self._mmap = np.memmap(
                    self._data_path, dtype=self.dtype, mode="r", shape=(n_rows, *self.row_shape)
                )
        return self._mmap

    def get(self, digests: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Rows for `digests` in memory (zeros where missing) and the boolean `found` mask."""
        rows = self.rows_of(digests)
        found = rows >= 0
        out = np.zeros((len(digests), *self.row_shape), dtype=self.dtype)
        if found.any():
            out[found] = self.vectors()[rows[found]]
        return out, found

    def mapped(self, digests: Sequence[str]) -> MappedRows:
        """The rows of `digests`, memory-mapped: read only when indexed (`MappedRows`).

        Every digest must be stored (`rows_of` says which are).
        """
        rows = self.rows_of(digests)
        missing = int((rows < 0).sum())
        if missing:
            raise InvalidInputError(
                "digests",
                f"files stored in {self.directory}",
                f"{missing} of {len(digests)} not stored",
                "Compute them first (phototag features).",
            )
        source = self.vectors()
        if not isinstance(source, np.memmap):  # an empty store
            return MappedRows(np.memmap(os.devnull, self.dtype, "r", shape=(0,)), rows)
        return MappedRows(source, rows)

    def add(self, digests: Sequence[str], vectors: np.ndarray) -> None:
        """Append `vectors` under `digests` (digests already stored are skipped).

        On a full disk this raises `StorageError` and records none of them.
        """
        vectors = np.asarray(vectors)
        if vectors.shape != (len(digests), *self.row_shape):
            raise InvalidInputError(
                self.rows_name, f"shape {(len(digests), *self.row_shape)}", str(vectors.shape)
            )
        if not np.isfinite(vectors).all():
            raise InvalidInputError(self.rows_name, "finite features", "NaN or inf values")
        new: dict[str, int] = {}
        for i, digest in enumerate(digests):
            if digest not in new:
                new[digest] = i
        with self._write_lock():
            stored = self.rows_of(list(new))
            keep = [i for (digest, i), row in zip(new.items(), stored, strict=True) if row < 0]
            if not keep:
                return
            n_rows = self._checked_rows()
            block = np.ascontiguousarray(vectors[keep], dtype=self.dtype)
            entries = [(digests[i], n_rows + k) for k, i in enumerate(keep)]
            with self._guard():
                with self._data_path.open("r+b") as handle:
                    handle.truncate(n_rows * self._row_bytes)  # rows of a failed writer
                    handle.seek(0, os.SEEK_END)
                    handle.write(block.data)
                    handle.flush()
                    os.fsync(handle.fileno())
                with self._db:
                    self._db.executemany("INSERT INTO rows (digest, row) VALUES (?, ?)", entries)

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        """Exclusive lock of this store's writers, across processes."""
        with self._guard():
            handle = (self.directory / "lock").open("a")
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        self._mmap = None
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FeatureStore(RowStore):
    """Append-only store of fixed-size feature vectors for one encoder.

    >>> store = FeatureStore("features", "efficientnet_lite2", dim=1280)  # doctest: +SKIP
    >>> store.add(["<digest>"], vectors)                                   # doctest: +SKIP
    >>> rows, found = store.get(["<digest>"])                              # doctest: +SKIP
    """

    def __init__(self, root: str | Path, encoder_id: str, dim: int, dtype: str = "float32") -> None:
        if dtype not in _DTYPES:
            raise InvalidInputError("dtype", f"one of {_DTYPES}", repr(dtype))
        if dim < 1:
            raise InvalidInputError("dim", "a positive feature dimension", repr(dim))
        self.encoder_id = encoder_id
        self.dim = dim
        meta = {"encoder": encoder_id, "dim": dim, "dtype": dtype}
        super().__init__(encoder_directory(root, encoder_id), meta, (dim,), dtype)
