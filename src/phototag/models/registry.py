"""Model registry: short names -> `Annotator` classes, like timm's `create_model`.

Every subpackage of `phototag.models` is a model family; the registry imports them all, so
a new family registers by existing (no list to edit).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any, TypeVar

from phototag.errors import InvalidInputError
from phototag.extras import MissingExtraError, missing_extra
from phototag.models.base import Annotator

_MODELS: dict[str, type[Annotator]] = {}
#: Families this install cannot import (a package of an extra is missing), with the error.
_UNAVAILABLE: dict[str, ImportError] = {}
A = TypeVar("A", bound=type[Annotator])


def register_annotator(name: str) -> Callable[[A], A]:
    """Class decorator registering an `Annotator` under `name`."""

    def decorator(cls: A) -> A:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"annotator name {name!r} registered twice")
        cls.name = name
        _MODELS[name] = cls
        return cls

    return decorator


def _families() -> list[str]:
    import phototag.models

    return [f.name for f in pkgutil.iter_modules(phototag.models.__path__) if f.ispkg]


def _import_builtin_models(name: str | None = None) -> None:
    """Import the model families: each subpackage of `phototag.models` registers its classes.

    With `name`, the family of that name is tried first (``everyday`` lives in
    ``phototag.models.everyday``), so loading one model does not import every family's
    dependencies.
    """
    families = _families()
    if name in families:
        importlib.import_module(f"phototag.models.{name}")
        if name in _MODELS:
            return
    for family in families:
        try:
            importlib.import_module(f"phototag.models.{family}")
            _UNAVAILABLE.pop(family, None)
        except ImportError as error:
            if missing_extra(error, family) is None:
                raise
            _UNAVAILABLE[family] = error


def unavailable_families() -> dict[str, MissingExtraError]:
    """The model families this install cannot load, each with the error naming the extra
    (``phototag[train]`` or ``phototag[research]``) that brings what it needs."""
    _import_builtin_models()
    return {
        family: error
        for family, cause in sorted(_UNAVAILABLE.items())
        if (error := missing_extra(cause, f"the {family} model family")) is not None
    }


def available_annotators() -> list[str]:
    """Registered model names."""
    _import_builtin_models()
    return sorted(_MODELS)


def annotator_class(name: str) -> type[Annotator]:
    """The `Annotator` class registered as `name`."""
    _import_builtin_models(name)
    if name not in _MODELS and _UNAVAILABLE:
        missing = unavailable_families()
        extra = "research" if any(e.extra == "research" for e in missing.values()) else "train"
        packages = ", ".join(sorted({e.package for e in missing.values()}))
        raise MissingExtraError(
            f"model {name!r} (not in the model families this install loads; those it "
            f"cannot: {', '.join(missing)})", packages, extra
        )  # fmt: skip
    if name not in _MODELS:
        raise InvalidInputError(
            "model",
            f"one of {', '.join(sorted(_MODELS))}",
            repr(name),
            "Run `phototag models` to list them.",
        )
    return _MODELS[name]


def create_annotator(name: str, **config: Any) -> Annotator:
    """A new, unfitted model `name` configured by its constructor keywords."""
    model_class = annotator_class(name)
    accepted = [p for p in inspect.signature(model_class.__init__).parameters if p != "self"]
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise InvalidInputError(
            f"{name} configuration", f"any of {accepted or 'no arguments'}", ", ".join(unknown)
        )
    return model_class(**config)
