"""On-disk feature store: features computed once, keyed by file content + encoder id.

Layout of one store (one directory per encoder id under the store root)::

    ROOT/<encoder id>/meta.json       encoder id, dimension, dtype
    ROOT/<encoder id>/vectors.bin     raw rows, appended, memory-mapped for reading
    ROOT/<encoder id>/index.sqlite    content digest -> row

Rows are written and synced before their index entries are committed, so a process
killed at any point leaves a consistent store: rows without a committed index entry are
cut off by the next write, and their images are simply computed again. Writers take an
exclusive lock on ``ROOT/<encoder id>/lock``, so several processes may fill and read one
store at the same time.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from phototag.cache import cache_dir
from phototag.errors import InvalidInputError

_DTYPES = ("float16", "float32")


def _safe_name(encoder_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder_id)


def default_store_root() -> Path:
    """Where features are stored unless told otherwise: ``<cache>/features``."""
    return cache_dir() / "features"


class FeatureStore:
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
        self.dtype = np.dtype(dtype)
        self.directory = Path(root).expanduser() / _safe_name(encoder_id)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._check_meta()
        self._vectors_path = self.directory / "vectors.bin"
        self._db = sqlite3.connect(self.directory / "index.sqlite")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS rows (digest TEXT PRIMARY KEY, row INTEGER NOT NULL)"
        )
        self._db.commit()
        self._vectors_path.touch()
        self._mmap: np.memmap | None = None

    @property
    def _row_bytes(self) -> int:
        return self.dim * self.dtype.itemsize

    def _check_meta(self) -> None:
        meta_path = self.directory / "meta.json"
        meta = {"encoder": self.encoder_id, "dim": self.dim, "dtype": self.dtype.name}
        if meta_path.exists():
            found = json.loads(meta_path.read_text())
            if found != meta:
                raise InvalidInputError(
                    f"feature store {self.directory}",
                    f"features matching {meta}",
                    str(found),
                    "Use another --out directory, or delete this one to recompute.",
                )
        else:
            meta_path.write_text(json.dumps(meta))

    @property
    def _n_rows(self) -> int:
        """Committed rows (other processes may have added some since the last call)."""
        return int(self._db.execute("SELECT COUNT(*) FROM rows").fetchone()[0])

    def __len__(self) -> int:
        return self._n_rows

    def __contains__(self, digest: object) -> bool:
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
            for digest, row in self._db.execute(query, chunk):
                result[position[digest]] = row
        return result

    def vectors(self) -> np.ndarray:
        """All stored rows as a read-only memory map ``[len(self), dim]``."""
        n_rows = self._n_rows
        if n_rows == 0:
            return np.zeros((0, self.dim), dtype=self.dtype)
        if self._mmap is None or len(self._mmap) != n_rows:
            self._mmap = np.memmap(
                self._vectors_path, dtype=self.dtype, mode="r", shape=(n_rows, self.dim)
            )
        return self._mmap

    def get(self, digests: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors for `digests` (zeros where missing) and the boolean `found` mask."""
        rows = self.rows_of(digests)
        found = rows >= 0
        out = np.zeros((len(digests), self.dim), dtype=self.dtype)
        if found.any():
            out[found] = self.vectors()[rows[found]]
        return out, found

    def add(self, digests: Sequence[str], vectors: np.ndarray) -> None:
        """Append `vectors` under `digests` (digests already stored are skipped)."""
        vectors = np.asarray(vectors)
        if vectors.shape != (len(digests), self.dim):
            raise InvalidInputError(
                "vectors", f"shape ({len(digests)}, {self.dim})", str(vectors.shape)
            )
        if not np.isfinite(vectors).all():
            raise InvalidInputError("vectors", "finite features", "NaN or inf values")
        new: dict[str, int] = {}
        for i, digest in enumerate(digests):
            if digest not in new:
                new[digest] = i
        with self._write_lock():
            stored = self.rows_of(list(new))
            keep = [i for (digest, i), row in zip(new.items(), stored, strict=True) if row < 0]
            if not keep:
                return
            n_rows = self._n_rows
            block = np.ascontiguousarray(vectors[keep], dtype=self.dtype)
            with self._vectors_path.open("r+b") as handle:
                handle.truncate(n_rows * self._row_bytes)  # rows of a writer that was killed
                handle.seek(0, os.SEEK_END)
                handle.write(block.tobytes())
                handle.flush()
                os.fsync(handle.fileno())
            entries = [(digests[i], n_rows + k) for k, i in enumerate(keep)]
            with self._db:
                self._db.executemany("INSERT INTO rows (digest, row) VALUES (?, ?)", entries)

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        """Exclusive lock of this store's writers, across processes."""
        with (self.directory / "lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        self._mmap = None
        self._db.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
