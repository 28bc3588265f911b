"""Exception types. Every error a user can cause says what was wrong and how to fix it."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


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
# The one place that checks plain arguments (model and reader settings, options); each
# returns the value as a plain Python int / float / choice (JSON-able configs) or raises
# `InvalidInputError`. An optional argument is checked as ``None if v is None else check...``.
def check_int(argument: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """`value` as an int in ``[minimum, maximum]``, or `InvalidInputError`."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and value >= minimum and (maximum is None or value <= maximum):
        return int(value)
    upper = f" and at most {maximum}" if maximum is not None else ""
    raise InvalidInputError(argument, f"an integer at least {minimum}{upper}", repr(value))


def check_float(
    argument: str,
    value: object,
    minimum: float,
    strict: bool = True,
    maximum: float | None = None,
) -> float:
    """`value` as a finite float above (or, not `strict`, at least) `minimum` and at most
    `maximum`, or `InvalidInputError`."""
    number = isinstance(value, numbers.Real)
    ok = number and not isinstance(value, bool) and math.isfinite(value)
    above = ok and (value > minimum if strict else value >= minimum)
    if above and (maximum is None or value <= maximum):
        return float(value)
    word = "above" if strict else "at least"
    upper = f" and at most {maximum}" if maximum is not None else ""
    raise InvalidInputError(argument, f"a number {word} {minimum}{upper}", repr(value))


def check_choice(argument: str, value: object, choices: Iterable[T]) -> T:
    """The one of `choices` (strings, or None) that `value` is, or `InvalidInputError`."""
    choices = tuple(choices)
    for choice in choices:
        if value is choice or (isinstance(value, str) and value == choice):
            return choice
    raise InvalidInputError(argument, f"one of {', '.join(map(repr, choices))}", repr(value))
