"""Exception types. Every error a user can cause says what was wrong and how to fix it."""

from __future__ import annotations

from pathlib import Path


class PhototagError(Exception):
    """Base class of every error phototag raises on purpose."""


class InvalidInputError(PhototagError, ValueError):
    """An argument, option or file content that phototag cannot use.

    The message always has one shape: which argument, what was expected, what was
    received, and how to fix it.
    """

    def __init__(self, argument: str, expected: str, received: str, fix: str = "") -> None:
        self.argument = argument
        message = f"{argument}: expected {expected}, got {received}"
        if fix:
            message += f". {fix}"
        super().__init__(message)


class DatasetFormatError(PhototagError, ValueError):
    """A dataset file that does not follow its documented layout."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


class NotFittedError(PhototagError, RuntimeError):
    """A model was used before `fit` or `load`."""


class DataDefectWarning(UserWarning):
    """A defect in a dataset's files that a reader handled (also in `AnnotationSet.notes`).

    A program that shows the notes itself can silence these with
    ``warnings.simplefilter("ignore", DataDefectWarning)``.
    """
