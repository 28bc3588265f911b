"""Encoder registry: short names -> builder functions, like timm's ``create_model``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from phototag.errors import InvalidInputError

if TYPE_CHECKING:
    from phototag.features.encoders.base import ImageEncoder

Builder = Callable[..., "ImageEncoder"]
B = TypeVar("B", bound=Builder)

_BUILDERS: dict[str, Builder] = {}
_DEFAULT: list[str] = []


def register_encoder(name: str, *, default: bool = False) -> Callable[[B], B]:
    """Decorator registering a builder (keyword-only arguments) under ``name``."""

    def decorator(builder: B) -> B:
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"encoder name {name!r} registered twice")
        _BUILDERS[name] = builder
        if default:
            _DEFAULT[:] = [name]
        return builder

    return decorator


def _import_builtin_encoders() -> None:
    from phototag.features.encoders import builders  # noqa: F401


def default_encoder() -> str:
    """Name of the encoder used when none is named (``efficientnet_lite2``)."""
    _import_builtin_encoders()
    return _DEFAULT[0]


def available_encoders() -> list[str]:
    """Registered encoder names, sorted."""
    _import_builtin_encoders()
    return sorted(_BUILDERS)


def encoder_arguments(name: str) -> dict[str, Any]:
    """A builder's keyword arguments and their defaults (its configuration)."""
    builder = _builder(name)
    return {p.name: p.default for p in inspect.signature(builder).parameters.values()}


def create_encoder(name: str | None = None, **config: Any) -> ImageEncoder:
    """A ready-to-use encoder ``name`` (default :func:`default_encoder`).

    ``config`` holds the builder's keywords (see :func:`encoder_arguments`), e.g.
    ``create_encoder("efficientnet_lite2", runtime="onnx")`` or
    ``create_encoder("resnet101", weights="resnet101.safetensors")``.
    Nothing is downloaded.
    """
    name = default_encoder() if name is None else name
    builder = _builder(name)
    accepted = list(inspect.signature(builder).parameters)
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise InvalidInputError(f"{name} configuration", f"any of {accepted}", ", ".join(unknown))
    return builder(**config)


def _builder(name: str) -> Builder:
    _import_builtin_encoders()
    if name not in _BUILDERS:
        raise InvalidInputError("encoder", f"one of {', '.join(sorted(_BUILDERS))}", repr(name))
    return _BUILDERS[name]
