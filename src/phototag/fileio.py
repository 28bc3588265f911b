"""Writing phototag's own files safely: atomic replacement and clear storage errors.

Every file phototag writes for itself (store metadata, journals, model files, the
feedback database, cached data) and every photo or sidecar it rewrites goes through
`atomic_write`: a temporary file in the same folder, ``fsync``, ``os.replace``, then an
``fsync`` of the folder, so a crash, a kill or a power cut leaves either the old file or
the new one, never a part of either. A full disk or a read-only folder becomes one
`StorageError` that names the folder and says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from phototag.errors import PhototagError

__all__ = [
    "TEMPORARY_SUFFIX",
    "DamagedFileError",
    "StorageError",
    "atomic_write",
    "fsync_directory",
    "is_damaged_database",
    "storage_error",
]

TEMPORARY_SUFFIX = ".phototag-tmp"
"""Every temporary file phototag creates ends with this, so stale ones can be found."""

_FIXES = {
    errno.ENOSPC: "no space left on the device: free some space and run again",
    errno.EDQUOT: "disk quota exceeded: free some space and run again",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.EACCES: "permission denied: choose a folder you can write to",
    errno.EPERM: "permission denied: choose a folder you can write to",
}


class StorageError(PhototagError, OSError):
    """phototag could not write one of its files: names the folder and what to do."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        super().__init__(f"{os.fsdecode(path)}: {problem}")


class DamagedFileError(PhototagError, ValueError):
    """A file phototag wrote earlier is unreadable (for example cut short by a crash)."""

    def __init__(self, path: str | os.PathLike[str], problem: str, fix: str) -> None:
        self.path = Path(path)
        super().__init__(f"{os.fsdecode(path)}: {problem}. {fix}")


def is_damaged_database(error: BaseException) -> bool:
    """Whether `error` says an SQLite file is not a database or is corrupt."""
    return (getattr(error, "sqlite_errorcode", 0) & 0xFF) in (
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_NOTADB,
    )


def storage_error(path: str | os.PathLike[str], error: BaseException) -> StorageError:
    """`error` (an `OSError` or `sqlite3.Error` while writing under the folder `path`) in
    words. SQLite does not pass the errno on: a full disk can surface as ``SQLITE_FULL``
    or, when growing its ``-shm`` file, as a "disk I/O error" (``SQLITE_IOERR_*``), which
    counts as a full disk when the folder has under 1 MiB free."""
    code = getattr(error, "errno", None)
    if isinstance(error, sqlite3.Error):
        primary = getattr(error, "sqlite_errorcode", 0) & 0xFF
        if primary == sqlite3.SQLITE_FULL or (
            primary == sqlite3.SQLITE_IOERR and _free_bytes(path) < 1 << 20
        ):
            code = errno.ENOSPC
        elif primary == sqlite3.SQLITE_READONLY:
            code = errno.EROFS
    problem = _FIXES.get(code) if code is not None else None
    if problem is None:
        detail = getattr(error, "strerror", None) or str(error)
        problem = f"cannot write here ({detail})"
    return StorageError(path, problem)


def _free_bytes(path: str | os.PathLike[str]) -> int:
    try:
        info = os.statvfs(path)
    except OSError:
        return 1 << 62
    return info.f_bavail * info.f_frsize


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename or new file in `directory` durable (a no-op where unsupported)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def atomic_write(
    path: str | os.PathLike[str],
    content: bytes | str | Callable[[BinaryIO], Any],
    *,
    mode: int | None = 0o644,
) -> None:
    """Create or replace `path` with `content` (bytes, text as UTF-8, or a function that
    writes to the open file) so that readers see the old file or the whole new one.

    `mode` sets the permission bits (None keeps `tempfile`'s private 0600). Raises
    `StorageError` naming the folder when the disk is full or not writable; a
    `PhototagError` from `content` passes through as it is. Either way the old file is
    unchanged and no temporary file is left behind.
    """
    path = Path(path)
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=directory, prefix=".tmp", suffix=TEMPORARY_SUFFIX)
    except OSError as error:
        raise storage_error(directory, error) from None
    try:
        with os.fdopen(handle, "wb") as file:
            if callable(content):
                content(file)
            else:
                file.write(content.encode("utf-8") if isinstance(content, str) else content)
            file.flush()
            os.fsync(file.fileno())
        if mode is not None:
            os.chmod(name, mode)
        os.replace(name, path)
    except OSError as error:
        _remove_quietly(name)
        if isinstance(error, PhototagError):  # raised by `content`: already says what to do
            raise
        raise storage_error(directory, error) from None
    except BaseException:
        _remove_quietly(name)
        raise
    fsync_directory(directory)


def _remove_quietly(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)
