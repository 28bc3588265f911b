"""Errors specific to embeddings (the shared ones live in `phototag.errors`)."""

from __future__ import annotations

from phototag.errors import PhototagError


class MissingDependencyError(PhototagError, ImportError):
    """An embedding needs an optional package or data files that are not installed."""

    def __init__(self, embedding: str, missing: str, fix: str) -> None:
        self.embedding = embedding
        super().__init__(f"The {embedding!r} embedding needs {missing}, which is missing. {fix}")
