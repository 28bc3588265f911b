"""Dataset readers: each turns a dataset's official file layout into an `AnnotationSet`.

On the command line a dataset is ``NAME:PATH`` with optional reader options after a
``?``, e.g. ``corel5k:../data/corel5k?labels=duygulu`` or ``nuswide:/data/NUS-WIDE?images=/img``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from phototag.data.annotation_set import AnnotationSet
from phototag.errors import InvalidInputError

Reader = Callable[..., AnnotationSet]


@dataclass(frozen=True)
class ReaderInfo:
    name: str
    read: Reader
    summary: str

    @property
    def options(self) -> list[str]:
        """Keyword options the reader accepts (after the path)."""
        params = list(inspect.signature(self.read).parameters.values())[1:]
        return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


_READERS: dict[str, ReaderInfo] = {}


def register_reader(name: str) -> Callable[[Reader], Reader]:
    """Register `read(path, *, option=...) -> AnnotationSet` under `name`."""

    def decorator(read: Reader) -> Reader:
        doc = (read.__doc__ or "").strip().splitlines()
        _READERS[name] = ReaderInfo(name, read, doc[0] if doc else "")
        return read

    return decorator


def available_readers() -> dict[str, ReaderInfo]:
    """All registered readers by name."""
    _import_builtin_readers()
    return dict(sorted(_READERS.items()))


def parse_dataset_spec(spec: str) -> tuple[str, Path, dict[str, str]]:
    """Split ``NAME:PATH[?key=value&...]`` into its parts."""
    name, sep, rest = spec.partition(":")
    if not sep or not name or not rest:
        raise InvalidInputError(
            "--dataset",
            "NAME:PATH (e.g. corel5k:data/corel5k)",
            repr(spec),
            "Run `phototag datasets` for the reader names.",
        )
    path, _, query = rest.partition("?")
    return name, Path(path).expanduser(), dict(parse_qsl(query, keep_blank_values=True))


def read_dataset(spec: str, **options: str) -> AnnotationSet:
    """Read a dataset given as ``NAME:PATH[?options]``; `options` override the spec's."""
    name, path, spec_options = parse_dataset_spec(spec)
    readers = available_readers()
    if name not in readers:
        raise InvalidInputError(
            "--dataset",
            f"a reader name ({', '.join(readers)})",
            repr(name),
            "Run `phototag datasets` to list them.",
        )
    info = readers[name]
    merged = {**spec_options, **options}
    holdout = {key: merged.pop(key) for key in HOLDOUT_OPTIONS if key in merged}
    unknown = sorted(set(merged) - set(info.options))
    if unknown:
        allowed = [*info.options, *HOLDOUT_OPTIONS]
        raise InvalidInputError(f"{name} options", f"any of {allowed}", ", ".join(unknown))
    if not path.exists():
        raise InvalidInputError(
            "--dataset",
            f"an existing path for {name}",
            f"{path} (not found)",
            "Check the path after the colon.",
        )
    data = info.read(path, **merged)
    if "valid" in holdout:
        data = hold_out_valid(data, holdout["valid"], holdout.get("valid_seed", "0"))
    elif "valid_seed" in holdout:
        raise InvalidInputError("valid_seed", "to come with valid=FRACTION", "valid_seed alone")
    return data


#: Options every reader takes: ``valid=F`` moves a seeded random fraction F of the
#: ``train`` split into a new ``valid`` split (``valid_seed=S``, default 0).
HOLDOUT_OPTIONS = ("valid", "valid_seed")


def hold_out_valid(
    data: AnnotationSet, fraction: str | float, seed: str | int = 0
) -> AnnotationSet:
    """`data` with ``round(fraction * n)`` of its ``train`` items, drawn by a seeded
    permutation, moved into a new ``valid`` split (``train`` keeps the rest)."""
    try:
        fraction, seed = float(fraction), int(seed)
    except ValueError:
        raise InvalidInputError(
            "valid", "a fraction in (0, 1) and an integer valid_seed", f"{fraction!r}, {seed!r}"
        ) from None
    if not 0 < fraction < 1:
        raise InvalidInputError("valid", "a fraction in (0, 1)", repr(fraction))
    if "train" not in data.splits or "valid" in data.splits:
        raise InvalidInputError(
            "valid",
            "a dataset with a train split and no valid split",
            f"splits {sorted(data.splits)}",
        )
    train = np.asarray(data.splits["train"])
    shuffled = np.random.default_rng(seed).permutation(train)
    n_valid = round(fraction * len(train))
    splits = {
        **data.splits,
        "train": np.sort(shuffled[n_valid:]),
        "valid": np.sort(shuffled[:n_valid]),
    }
    return dataclasses.replace(data, splits=splits)


def _import_builtin_readers() -> None:
    from phototag.data.readers import (  # noqa: F401
        coco,
        corel5k,
        everyday,
        folder,
        mirflickr,
        mulan,
        nuswide,
        saved,
    )


__all__ = [
    "ReaderInfo",
    "available_readers",
    "parse_dataset_spec",
    "read_dataset",
    "register_reader",
]
