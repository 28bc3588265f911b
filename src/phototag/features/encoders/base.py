"""The encoder object every backbone is wrapped in, and what describes its outputs.

Importing this module does not import PyTorch: an encoder that runs a shipped ONNX graph
(`phototag.features.encoders.shipped`) never needs it. The torch networks and their
runtime live in `phototag.features.encoders.network`.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from phototag.errors import InvalidInputError, PhototagError, check_int
from phototag.features import ENCODER_BATCH_SIZE
from phototag.features.encoders.imagenet import ImageNetClass
from phototag.features.encoders.preprocess import (
    ImageLike,
    Preprocess,
    is_tensor,
    resize_to_input,
    to_rgb_image,
    transform,
)

if TYPE_CHECKING:
    import torch

    from phototag.features.encoders.network import Backbone

POOLED = "pooled"
LOGITS = "logits"

#: What an encoder's forward pass returns per output: a torch tensor on the torch
#: runtime, a numpy array on ONNX Runtime (``np.asarray`` reads both on the CPU).
Output = Any


def __getattr__(name: str) -> Any:
    # The torch classes moved to `network`; old imports keep working (and import torch).
    if name in ("Backbone", "TorchBackend"):
        from phototag.features.encoders import network

        return getattr(network, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class StageSpec:
    """One feature map an encoder returns: its key, channels, and stride w.r.t. the input."""

    name: str
    channels: int
    reduction: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "channels": self.channels, "reduction": self.reduction}


@dataclass(frozen=True)
class NetworkLayout:
    """What a backbone returns: its stage maps, the multi-scale subset, the pooled
    vector's length and the classifier size (0 without a classifier)."""

    stages: tuple[StageSpec, ...]
    scales: tuple[str, ...]
    num_features: int
    num_classes: int

    @property
    def output_names(self) -> tuple[str, ...]:
        names = (*(s.name for s in self.stages), POOLED)
        return (*names, LOGITS) if self.num_classes else names

    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": [s.to_dict() for s in self.stages],
            "scales": list(self.scales),
            "num_features": self.num_features,
            "num_classes": self.num_classes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkLayout:
        return cls(
            stages=tuple(StageSpec(**s) for s in data["stages"]),
            scales=tuple(data["scales"]),
            num_features=int(data["num_features"]),
            num_classes=int(data["num_classes"]),
        )


class Backend(Protocol):
    """Runs a backbone on a normalised batch and returns the requested outputs."""

    runtime: str

    def run(self, x: Any, names: Sequence[str]) -> dict[str, Output]: ...

    def run_pixels(
        self, pixels: np.ndarray, preprocess: Preprocess, names: Sequence[str]
    ) -> dict[str, Output]:
        """Like `run`, from uint8 ``[N, S, S, 3]`` inputs normalised per `preprocess`."""
        ...


class ImageEncoder:
    """A pretrained (or user-weighted) image backbone plus its input recipe.

    Create one with :func:`phototag.features.encoders.create_encoder`. The torch
    module is :attr:`model` (for fine-tuning or for building models on top of it);
    the methods below are for feature extraction and always run without gradients.
    Outputs are torch tensors on the torch runtime and numpy arrays on ONNX Runtime.

    ``model`` is the network, or (with ``layout`` and ``backend``) a function that builds
    it on first use of :attr:`model`: an encoder running a shipped ONNX graph needs no
    PyTorch until something asks for the network itself.
    """

    def __init__(
        self,
        name: str,
        model: Backbone | Callable[[], Backbone],
        preprocess: Preprocess,
        *,
        weights_sha256: str,
        weights_source: str,
        class_names: Sequence[ImageNetClass] | None = None,
        layout: NetworkLayout | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.name = name
        self.preprocess = preprocess
        self.weights_sha256 = weights_sha256
        self.weights_source = weights_source
        if layout is None:
            self._model: Backbone | None = model.eval()  # type: ignore[union-attr]
            self._build_model: Callable[[], Backbone] | None = None
            self.layout = self._model.layout
        else:
            if backend is None:
                raise ValueError("an encoder without its network needs a backend")
            self._model, self._build_model = None, model
            self.layout = layout
        if class_names is not None and len(class_names) != self.layout.num_classes:
            raise ValueError("class_names must match the classifier size")
        self.class_names: tuple[ImageNetClass, ...] | None = (
            tuple(class_names) if class_names is not None else None
        )
        if backend is None:
            from phototag.features.encoders.network import TorchBackend

            backend = TorchBackend(self.model)
        self._backend: Backend = backend

    # ------------------------------------------------------------------ description

    @property
    def model(self) -> Backbone:
        """The torch network (built on first use for an encoder that runs a shipped graph;
        that needs PyTorch, ``pip install 'phototag[train]'``)."""
        if self._model is None:
            assert self._build_model is not None
            self._model = self._build_model().eval()
        return self._model

    @property
    def runtime(self) -> str:
        """Where :meth:`forward_features` runs: ``"torch"`` or ``"onnx"``."""
        return self._backend.runtime

    @property
    def stages(self) -> tuple[StageSpec, ...]:
        return self.layout.stages

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.layout.stages)

    @property
    def scales(self) -> tuple[str, ...]:
        """Names of the five multi-scale maps (last map at stride 2, 4, 8, 16, 32)."""
        return self.layout.scales

    @property
    def num_features(self) -> int:
        """Length of the pooled feature vector."""
        return self.layout.num_features

    @property
    def num_classes(self) -> int:
        """Classifier outputs (1000 for ImageNet weights; 0 when there is no classifier)."""
        return self.layout.num_classes

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.layout.output_names

    @property
    def feature_id(self) -> str:
        """Identifies what the pooled features depend on: network, weights, preprocessing.

        Use it to key stored features (``FeatureStore(root, encoder.feature_id, ...)``).
        """
        return f"{self.name}@{self.weights_sha256[:12]}-{self.preprocess.digest()}"

    def config(self) -> dict[str, Any]:
        """JSON-serialisable description (saved with models built on this encoder)."""
        return {
            "name": self.name,
            "feature_id": self.feature_id,
            "weights_sha256": self.weights_sha256,
            "weights_source": self.weights_source,
            "runtime": self.runtime,
            "preprocess": self.preprocess.to_dict(),
            "num_features": self.num_features,
            "num_classes": self.num_classes,
            "stages": [s.to_dict() for s in self.stages],
            "scales": list(self.scales),
        }

    def __repr__(self) -> str:
        return (
            f"ImageEncoder({self.name!r}, runtime={self.runtime!r}, "
            f"input_size={self.preprocess.input_size}, num_features={self.num_features}, "
            f"weights={self.weights_source!r})"
        )

    # ------------------------------------------------------------------ computing

    def transform(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """Images -> normalised float32 batch ``(N, 3, S, S)`` per :attr:`preprocess`."""
        return transform(images, self.preprocess)

    def forward_features(self, x: Any, outputs: Iterable[str] | None = None) -> dict[str, Output]:
        """Named outputs for a batch from :meth:`transform`.

        ``outputs`` selects keys among :attr:`output_names` (default: all): the stage
        maps, ``"pooled"`` and ``"logits"``. Runs under ``torch.inference_mode()``.
        """
        names = self._check_outputs(outputs)
        self._check_batch(x)
        return self._backend.run(x, names)

    def forward_pixels(
        self, pixels: np.ndarray, outputs: Iterable[str] | None = None
    ) -> dict[str, Output]:
        """Named outputs for uint8 model inputs ``[N, S, S, 3]`` (already cropped and
        resized to ``input_size``, as `phototag.features.extract.load_model_input` gives).

        Same outputs as ``forward_features(normalize(pixels))``; on ONNX Runtime the
        normalisation runs inside the graph, which saves a pass over the batch.
        """
        names = self._check_outputs(outputs)
        size = self.preprocess.input_size
        if (
            not isinstance(pixels, np.ndarray)
            or pixels.dtype != np.uint8
            or pixels.shape[1:] != (size, size, 3)
        ):
            got = (
                f"{pixels.dtype} array of shape {pixels.shape}"
                if isinstance(pixels, np.ndarray)
                else type(pixels).__name__
            )
            raise InvalidInputError("pixels", f"a uint8 array (N, {size}, {size}, 3)", got)
        return self._backend.run_pixels(np.ascontiguousarray(pixels), self.preprocess, names)

    def pooled(self, x: Any) -> Output:
        """Global-average-pooled features ``(N, num_features)``."""
        return self.forward_features(x, [POOLED])[POOLED]

    def feature_maps(self, x: Any, names: Iterable[str] | None = None) -> dict[str, Output]:
        """Stage maps by name (default: all stages, in network order)."""
        names = list(self.stage_names if names is None else names)
        for name in names:
            if name not in self.stage_names:
                raise InvalidInputError(
                    "names", f"stage names among {list(self.stage_names)}", repr(name)
                )
        return self.forward_features(x, names)

    def class_probabilities(self, x: Any) -> Output:
        """Softmax over the classifier (ImageNet: ``(N, 1000)``, order of ``class_names``)."""
        self._require_classifier()
        logits = self.forward_features(x, [LOGITS])[LOGITS]
        if is_tensor(logits):
            return logits.softmax(dim=-1)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)

    def top_classes(self, x: Any, k: int = 5) -> list[list[tuple[ImageNetClass, float]]]:
        """The ``k`` most probable classes per image, best first, with probabilities."""
        self._require_classifier()
        if self.class_names is None:
            raise PhototagError(f"{self.name}: these weights come without class names")
        check_int("k", k, 1, self.num_classes)
        probs = as_array(self.class_probabilities(x))
        top = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
        return [
            [(self.class_names[i], float(row[i])) for i in order]
            for row, order in zip(probs, top, strict=True)
        ]

    def encode(
        self, images: Sequence[ImageLike] | ImageLike, batch_size: int = ENCODER_BATCH_SIZE
    ) -> np.ndarray:
        """Pooled features of images as a float32 array ``(N, num_features)``."""
        check_int("batch_size", batch_size, 1)
        items: list[ImageLike] = (
            [images]
            if isinstance(images, (Image.Image, np.ndarray)) or is_tensor(images)
            else list(images)
        )
        out = np.empty((len(items), self.num_features), dtype=np.float32)
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            pixels = np.stack(
                [
                    np.asarray(resize_to_input(to_rgb_image(image), self.preprocess))
                    for image in batch
                ]
            )
            pooled = self.forward_pixels(pixels, [POOLED])[POOLED]
            out[start : start + len(batch)] = as_array(pooled)
        return out

    # ------------------------------------------------------------------ helpers

    def _set_backend(self, backend: Backend) -> None:
        self._backend = backend

    def _check_outputs(self, outputs: Iterable[str] | None) -> list[str]:
        available = self.output_names
        if outputs is None:
            return list(available)
        if isinstance(outputs, str):
            outputs = [outputs]
        names = list(outputs)
        unknown = [n for n in names if n not in available]
        if unknown:
            raise InvalidInputError(
                "outputs", f"names among {list(available)}", ", ".join(map(repr, unknown))
            )
        return names

    def _check_batch(self, x: Any) -> None:
        expected = "a float tensor (N, 3, H, W) from encoder.transform(images)"
        if not is_tensor(x) or x.ndim != 4 or x.shape[1] != 3:
            got = f"shape {tuple(x.shape)}" if is_tensor(x) else type(x).__name__
            raise InvalidInputError("x", expected, got)
        if not x.is_floating_point():
            raise InvalidInputError(
                "x",
                "a float tensor from encoder.transform(images)",
                f"dtype {x.dtype}",
                "Pass raw images to encoder.transform first.",
            )

    def _require_classifier(self) -> None:
        if not self.num_classes:
            raise PhototagError(
                f"{self.name}: these weights have no classifier (no 'fc'/'classifier' "
                "tensors), so there are no class probabilities; use pooled features."
            )


def as_array(value: Output) -> np.ndarray:
    """An encoder output as a numpy array (a tensor is copied to the CPU first)."""
    if is_tensor(value):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def torch_loaded() -> bool:
    """Whether PyTorch is already imported (so using it costs nothing more)."""
    return sys.modules.get("torch") is not None


def warn_fallback(message: str) -> None:
    """The one warning shape for 'asked for a faster runtime, running eager torch'."""
    warnings.warn(message, RuntimeWarning, stacklevel=3)
