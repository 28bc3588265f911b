"""Filling a real disk (a tmpfs from the `tmpfs` fixture) for the full-disk tests."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

#: What phototag says when a disk is full (`phototag.fileio.storage_error`).
NO_SPACE = "no space left on the device: free some space and run again"


def fill(disk: Path, leave: int = 0) -> Path:
    """Write zeros to ``disk/fill`` until only `leave` bytes are free (0: until ENOSPC)."""
    path = disk / "fill"
    with path.open("wb", buffering=0) as handle:
        if leave:
            stat = os.statvfs(disk)
            handle.write(bytes(max(0, stat.f_bavail * stat.f_frsize - leave)))
            return path
        with pytest.raises(OSError) as error:
            while True:
                handle.write(bytes(1 << 16))
        assert error.value.errno == errno.ENOSPC
    return path


def add_while_the_disk_fills(
    mount: Callable[[str], Path],
    open_store: Callable[[Path], Any],
    row_shape: tuple[int, ...],
    dtype: type,
    data_file: str,
) -> set[str]:
    """Fill a fresh 256 KiB tmpfs to every free-space level from none to 64 KiB between
    two adds to the store `open_store(disk)` makes: each add either succeeds or raises
    `StorageError` naming the store's folder and records nothing, and the store holds
    exactly what was recorded once space is freed. Returns where adds failed: "rows cut
    short" (`data_file` shorter than its rows) or "index full" (rows whole, index not)."""
    from phototag.fileio import StorageError

    row_bytes = int(np.prod(row_shape)) * np.dtype(dtype).itemsize
    failures = set()
    for leave in range(0, 64 * 1024, 2048):
        disk = mount("256k")
        with open_store(disk) as store:
            store.add(["a"], np.ones((1, *row_shape), dtype))
            filler = fill(disk, leave=leave)
            try:
                store.add([f"r{i}" for i in range(4)], np.full((4, *row_shape), 2, dtype))
            except StorageError as error:
                assert str(error) == f"{store.directory}: {NO_SPACE}"
                assert len(store) == 1
                written = (store.directory / data_file).stat().st_size
                failures.add("index full" if written == 5 * row_bytes else "rows cut short")
                expected = 1
            else:
                expected = 5
            filler.unlink()
            store.add(["z"], np.full((1, *row_shape), 3, dtype))
        with open_store(disk) as reopened:
            assert len(reopened) == expected + 1
            rows, found = reopened.get(["a", "r3", "z"])
            assert found.tolist() == [True, expected == 5, True]
            first = rows.reshape(len(rows), -1)[:, 0]
            assert first.tolist() == [1.0, 2.0 if expected == 5 else 0.0, 3.0]
    return failures
