"""Where phototag caches derived data on disk (word lists, WordNet vectors, features, ONNX).

``$PHOTOTAG_CACHE`` if set, else ``$XDG_CACHE_HOME/phototag``, else
``~/.cache/phototag``. Files are written to a temporary name and renamed into place,
so a killed process or two processes filling the cache at once never leave a
half-written file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def cache_dir() -> Path:
    """Root of phototag's on-disk cache (not created)."""
    override = os.environ.get("PHOTOTAG_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "phototag"


def write_atomically(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Create `path` by calling ``write(file)`` on a temporary file, then renaming it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        with open(temporary, "wb") as file:
            write(file)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the cache is not secret
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
