"""The `Descriptor` interface, the shared per-image conversions, and input checks.

A descriptor maps one RGB image (``uint8 [H, W, 3]``) to a fixed-length ``float32``
vector whose every value lies in ``[0, 1]``. Descriptors never open files: callers
decode images (``phototag.imaging``) and pass arrays.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any, ClassVar, Self

import numpy as np

from phototag.errors import InvalidInputError, NotFittedError

#: Smallest accepted image side, in pixels (the wavelet pyramid and the grids need it).
MIN_SIDE = 16


def check_image(rgb: object, argument: str = "rgb") -> np.ndarray:
    """`rgb` as a C-contiguous ``uint8 [H, W, 3]`` array, or `InvalidInputError`."""
    if not isinstance(rgb, np.ndarray):
        raise InvalidInputError(
            argument,
            "a numpy array of shape (H, W, 3)",
            type(rgb).__name__,
            "Decode the image first with phototag.imaging.load_rgb(path).",
        )
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InvalidInputError(
            argument,
            "an RGB image of shape (H, W, 3)",
            f"shape {rgb.shape}",
            "Convert grey or RGBA images to RGB first.",
        )
    if rgb.dtype != np.uint8:
        raise InvalidInputError(
            argument,
            "dtype uint8 (0..255)",
            f"dtype {rgb.dtype}",
            "Scale to 0..255 and cast, e.g. (x * 255).round().astype(np.uint8).",
        )
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise InvalidInputError(
            argument,
            f"an image at least {MIN_SIDE}x{MIN_SIDE} pixels",
            f"{rgb.shape[1]}x{rgb.shape[0]}",
            "Upscale very small images before describing them.",
        )
    return np.ascontiguousarray(rgb)


class ImageViews:
    """One RGB image and its colour conversions, each computed at most once.

    Pass the same `ImageViews` to several descriptors (see `combined`) so that the
    grey, HSV and Lab versions are converted only once per image.

    Conversions (OpenCV, 8-bit):

    - ``gray``: ITU-R BT.601 luma, ``uint8 [H, W]``.
    - ``hsv``: full-range 8-bit HSV, hue 0..255 for 0..360 degrees, ``uint8 [H, W, 3]``.
    - ``lab``: 8-bit CIE L*a*b* (D65), L = L* * 255/100, a = a* + 128, b = b* + 128.
    """

    def __init__(self, rgb: np.ndarray) -> None:
        self.rgb = check_image(rgb)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return self.rgb.shape[0], self.rgb.shape[1]

    @cached_property
    def gray(self) -> np.ndarray:
        import cv2

        return cv2.cvtColor(self.rgb, cv2.COLOR_RGB2GRAY)

    @cached_property
    def hsv(self) -> np.ndarray:
        import cv2

        return cv2.cvtColor(self.rgb, cv2.COLOR_RGB2HSV_FULL)

    @cached_property
    def lab(self) -> np.ndarray:
        import cv2

        return cv2.cvtColor(self.rgb, cv2.COLOR_RGB2LAB)


def as_views(image: np.ndarray | ImageViews, argument: str = "rgb") -> ImageViews:
    """`image` wrapped in `ImageViews` (checked), or `image` itself if already wrapped."""
    if isinstance(image, ImageViews):
        return image
    return ImageViews(check_image(image, argument))


class Descriptor(ABC):
    """An image descriptor: ``descriptor(rgb) -> float32 [dim]`` with values in [0, 1].

    Subclasses take their configuration as explicit keyword arguments stored under the
    same attribute names (so `get_config` is the constructor signature), and keep
    learned state in numpy attributes ending in ``_`` exposed by `state_dict`.
    """

    #: Registry name of the descriptor (subclasses whose name depends on their
    #: configuration override it per instance).
    name: str = ""
    #: Whether `fit` must run (or `load_state_dict`) before the descriptor can be used.
    requires_fit: ClassVar[bool] = False

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of the output vector."""

    @abstractmethod
    def _compute(self, views: ImageViews) -> np.ndarray:
        """The raw vector of one image, already scaled to [0, 1]."""

    # ----------------------------------------------------------------- compute
    def __call__(self, rgb: np.ndarray | ImageViews) -> np.ndarray:
        """Descriptor of one ``uint8 [H, W, 3]`` RGB image: ``float32 [dim]`` in [0, 1]."""
        return self.compute(as_views(rgb))

    def compute(self, views: ImageViews) -> np.ndarray:
        """Descriptor of an image whose conversions may be shared with other descriptors."""
        self._check_fitted()
        out = np.asarray(self._compute(views), dtype=np.float32).reshape(-1)
        if out.shape != (self.dim,):  # a bug in the descriptor, not a user error
            raise RuntimeError(f"{type(self).__name__} returned {out.shape}, not ({self.dim},)")
        # Rounding can leave values a few ulps outside [0, 1]; the bounds are documented.
        return np.clip(out, 0.0, 1.0, out=out)

    # --------------------------------------------------------------- learning
    def fit(self, images: Iterable[np.ndarray | ImageViews]) -> Self:
        """Learn the descriptor's state from training images (no-op for fixed ones)."""
        return self

    @property
    def is_fitted(self) -> bool:
        return not self.requires_fit or bool(self.state_dict())

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"descriptor {self.name!r} has no learned state yet: call fit(images) or "
                "load_state_dict(state) before computing it"
            )

    def state_dict(self) -> dict[str, np.ndarray]:
        """Learned state as plain numpy arrays (safetensors-compatible); empty if none."""
        return {}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> Self:
        """Restore the state returned by `state_dict`."""
        if state:
            raise InvalidInputError(
                "state",
                f"an empty state ({self.name!r} learns nothing)",
                f"arrays {sorted(state)}",
            )
        return self

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        """Constructor keyword arguments that rebuild this descriptor (JSON-compatible)."""
        params = inspect.signature(type(self).__init__).parameters
        config = {}
        for key in params:
            if key == "self":
                continue
            value = getattr(self, key)
            config[key] = list(value) if isinstance(value, tuple) else value
        return config

    @property
    def descriptor_id(self) -> str:
        """Stable id of name + configuration + learned state, e.g. a feature-store key."""
        digest = hashlib.sha256(json.dumps(self.get_config(), sort_keys=True).encode())
        for key, value in sorted(self.state_dict().items()):
            array = np.ascontiguousarray(value)
            digest.update(f"{key}:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.tobytes())
        return f"{self.name}-{digest.hexdigest()[:12]}"

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
