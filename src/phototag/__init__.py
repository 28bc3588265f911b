"""phototag: automatic multi-label image annotation for photo libraries and research.

The names below are imported on first use, so that ``import phototag`` (and the
``phototag`` command's start-up) costs nothing until they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phototag.data import AnnotationSet, Vocabulary
    from phototag.models import Annotator, available_annotators, create_annotator

_EXPORTS = {
    "AnnotationSet": "phototag.data",
    "Vocabulary": "phototag.data",
    "Annotator": "phototag.models",
    "available_annotators": "phototag.models",
    "create_annotator": "phototag.models",
}

__all__ = ["AnnotationSet", "Annotator", "Vocabulary", "available_annotators", "create_annotator"]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("phototag")
        except PackageNotFoundError:  # running from a source tree that is not installed
            value = "0.0.0+unknown"
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, "__version__"])
