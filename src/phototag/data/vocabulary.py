"""`Vocabulary`: an ordered list of label names and their integer ids."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal, overload

import numpy as np

from phototag.errors import DatasetFormatError, InvalidInputError
from phototag.fileio import atomic_write


class Vocabulary(Sequence[str]):
    """Ordered, unique label names; position in the list is the label id.

    >>> vocab = Vocabulary(["sky", "sea"])
    >>> vocab.index("sea"), vocab[0]
    (1, 'sky')
    """

    def __init__(self, names: Iterable[str]) -> None:
        self._names: tuple[str, ...] = tuple(names)
        self._ids: dict[str, int] = {}
        for i, name in enumerate(self._names):
            if not isinstance(name, str) or not name.strip():
                raise InvalidInputError(
                    "vocabulary", "non-empty strings", f"{name!r} at position {i}"
                )
            if name in self._ids:
                raise InvalidInputError(
                    "vocabulary",
                    "unique label names",
                    f"{name!r} twice (positions {self._ids[name]} and {i})",
                    "Remove the duplicate.",
                )
            self._ids[name] = i

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._names[index]

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._names == other._names

    def __hash__(self) -> int:
        return hash(self._names)

    def __repr__(self) -> str:
        head = ", ".join(self._names[:5])
        more = ", ..." if len(self) > 5 else ""
        return f"Vocabulary([{head}{more}], size={len(self)})"

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def index(self, name: str, start: int = 0, stop: int | None = None) -> int:  # noqa: ARG002
        """Id of `name`; raises `InvalidInputError` for an unknown label."""
        try:
            return self._ids[name]
        except KeyError:
            raise InvalidInputError(
                "label", f"one of the {len(self)} vocabulary labels", repr(name)
            ) from None

    def indices(
        self, names: Iterable[str], unknown: Literal["error", "skip"] = "error"
    ) -> np.ndarray:
        """Ids of `names` as int64; unknown names raise or are skipped."""
        if unknown == "skip":
            return np.fromiter((self._ids[n] for n in names if n in self._ids), dtype=np.int64)
        return np.fromiter((self.index(n) for n in names), dtype=np.int64)

    def to_json(self) -> list[str]:
        return list(self._names)

    @classmethod
    def from_json(cls, data: list[str]) -> Vocabulary:
        return cls(data)

    def save(self, path: str | Path) -> None:
        """Write the names as a JSON list (atomically; `StorageError` on a full disk)."""
        atomic_write(path, json.dumps(self.to_json(), ensure_ascii=False, indent=0) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a JSON list, or a text file with one label per line."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DatasetFormatError(path, "not UTF-8 text") from None
        if path.suffix != ".json":
            return cls(line.strip() for line in text.splitlines() if line.strip())
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(path, f"invalid JSON ({exc.msg})", exc.lineno) from None
        if not isinstance(names, list):
            raise DatasetFormatError(path, "not a JSON list of label names")
        return cls.from_json(names)
