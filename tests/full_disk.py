"""Filling a real disk (a tmpfs from the `tmpfs` fixture) for the full-disk tests."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest


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
