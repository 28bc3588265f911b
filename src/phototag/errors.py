"""Exception types. Every error a user can cause says what was wrong and how to fix it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np


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


# ------------------------------------------------------------ argument checks
def check_int(argument: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """`value` as an int in ``[minimum, maximum]``, or `InvalidInputError`."""
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if ok and value >= minimum and (maximum is None or value <= maximum):
        return int(value)
    upper = f" and at most {maximum}" if maximum is not None else ""
    raise InvalidInputError(argument, f"an integer at least {minimum}{upper}", repr(value))


def check_float(argument: str, value: object, minimum: float, strict: bool = True) -> float:
    """`value` as a float above (or at least) `minimum`, or `InvalidInputError`."""
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if ok and (value > minimum if strict else value >= minimum):
        return float(value)
    word = "above" if strict else "at least"
    raise InvalidInputError(argument, f"a number {word} {minimum}", repr(value))


def check_choice(argument: str, value: object, choices: Iterable[str]) -> str:
    """`value` if it is one of `choices`, or `InvalidInputError`."""
    choices = tuple(choices)
    if value in choices:
        return str(value)
    raise InvalidInputError(argument, f"one of {', '.join(map(repr, choices))}", repr(value))
