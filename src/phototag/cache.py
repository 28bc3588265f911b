"""Where phototag caches derived data on disk (word lists, WordNet vectors, features, ONNX).

``$PHOTOTAG_CACHE`` if set, else ``$XDG_CACHE_HOME/phototag``, else
``~/.cache/phototag``. Files are written with `phototag.fileio.atomic_write`, so a
killed process or two processes filling the cache at once never leave a half-written
file behind.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of phototag's on-disk cache (not created)."""
    override = os.environ.get("PHOTOTAG_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "phototag"


def default_store_root() -> Path:
    """Where features are stored unless told otherwise: ``<cache>/features``."""
    return cache_dir() / "features"
