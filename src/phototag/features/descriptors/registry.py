"""Descriptor registry (short names -> configured descriptors) and batch helpers."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from phototag.errors import InvalidInputError
from phototag.features.descriptors.base import Descriptor, ImageViews, as_views
from phototag.features.descriptors.bovw import COLORS, SAMPLINGS, BagOfVisualWords, bovw_name
from phototag.features.descriptors.color import HSVHistogram, LabMoments
from phototag.features.descriptors.gist import GIST
from phototag.features.descriptors.texture import (
    EdgeDirectionHistogram,
    LocalBinaryPattern,
    WaveletTexture,
)

_REGISTRY: dict[str, tuple[type[Descriptor], dict[str, Any]]] = {
    "hsv_hist": (HSVHistogram, {}),
    "lab_moments": (LabMoments, {}),
    "edge_direction": (EdgeDirectionHistogram, {}),
    "wavelet": (WaveletTexture, {}),
    "lbp": (LocalBinaryPattern, {}),
    "gist": (GIST, {}),
}
for _color in COLORS:
    for _sampling in SAMPLINGS:
        _REGISTRY[bovw_name(_color, _sampling)] = (
            BagOfVisualWords,
            {"color": _color, "sampling": _sampling},
        )

#: The modality-fusion paper's 12 features (x 3 similarity functions = its 36
#: modalities): 6 global descriptors and SIFT / C-SIFT / RGB-SIFT words on dense and
#: on Harris points.
PAPER_FEATURES: tuple[str, ...] = (
    "hsv_hist",
    "lab_moments",
    "edge_direction",
    "wavelet",
    "lbp",
    "gist",
    "bovw_sift_dense",
    "bovw_sift_harris",
    "bovw_csift_dense",
    "bovw_csift_harris",
    "bovw_rgbsift_dense",
    "bovw_rgbsift_harris",
)


def available_descriptors() -> list[str]:
    """Registered descriptor names, sorted."""
    return sorted(_REGISTRY)


def create_descriptor(name: str, **config: Any) -> Descriptor:
    """A new descriptor `name`, configured by its constructor keywords.

    >>> create_descriptor("hsv_hist").dim
    128
    >>> create_descriptor("bovw_sift", vocabulary_size=500).dim
    2500
    """
    if name not in _REGISTRY:
        raise InvalidInputError(
            "descriptor", f"one of {', '.join(available_descriptors())}", repr(name)
        )
    cls, preset = _REGISTRY[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise InvalidInputError(
            f"{name} configuration", f"any of {', '.join(accepted)}", ", ".join(unknown)
        )
    for key, value in preset.items():
        if key in config and config[key] != value:
            raise InvalidInputError(
                f"{name} configuration",
                f"{key}={value!r} (fixed by the name {name!r})",
                f"{key}={config[key]!r}",
                "Use the registry name matching that setting; see available_descriptors().",
            )
    return cls(**{**config, **preset})


def _check_unique(descriptors: Sequence[Descriptor]) -> None:
    names = [d.name for d in descriptors]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInputError(
            "descriptors",
            "descriptors with distinct names (results are keyed by name)",
            f"{', '.join(duplicates)} more than once",
        )


def combined(
    rgb: np.ndarray | ImageViews, descriptors: Sequence[Descriptor]
) -> dict[str, np.ndarray]:
    """Several descriptors of one image, sharing its grey / HSV / Lab conversions.

    Returns ``{descriptor.name: float32 [descriptor.dim]}`` in the order given.
    """
    _check_unique(descriptors)
    views = as_views(rgb)
    return {d.name: d.compute(views) for d in descriptors}


def describe_images(
    images: Iterable[np.ndarray | ImageViews], descriptors: Sequence[Descriptor]
) -> dict[str, np.ndarray]:
    """Descriptors of many images: ``{name: float32 [n_images, dim]}``."""
    _check_unique(descriptors)
    rows: dict[str, list[np.ndarray]] = {d.name: [] for d in descriptors}
    for i, image in enumerate(images):
        views = as_views(image, f"images[{i}]")
        for d in descriptors:
            rows[d.name].append(d.compute(views))
    return {
        d.name: np.stack(rows[d.name]) if rows[d.name] else np.zeros((0, d.dim), np.float32)
        for d in descriptors
    }
