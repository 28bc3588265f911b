"""The encoder object every backbone is wrapped in, and the backbone base class."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch import nn

from phototag.errors import InvalidInputError, PhototagError, check_int
from phototag.features.encoders.imagenet import ImageNetClass
from phototag.features.encoders.preprocess import ImageLike, Preprocess, normalize, transform

POOLED = "pooled"
LOGITS = "logits"


@dataclass(frozen=True)
class StageSpec:
    """One feature map an encoder returns: its key, channels, and stride w.r.t. the input."""

    name: str
    channels: int
    reduction: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "channels": self.channels, "reduction": self.reduction}


class Backbone(nn.Module):
    """Base of the encoder networks.

    ``forward(x)`` returns a dict: one entry per stage in :attr:`stages` (feature maps
    ``(N, C, H, W)``), ``"pooled"`` (global average of the last map, ``(N,
    num_features)``) and, when the network has a classifier, ``"logits"`` ``(N,
    num_classes)``. Gradients flow as usual (fine-tuning calls the module directly);
    :class:`ImageEncoder` wraps it for inference.
    """

    stages: tuple[StageSpec, ...] = ()
    #: The final map of each stride level /2, /4, /8, /16, /32 (the multi-scale set).
    scales: tuple[str, ...] = ()
    num_features: int = 0
    num_classes: int = 0

    @property
    def output_names(self) -> tuple[str, ...]:
        names = (*(s.name for s in self.stages), POOLED)
        return (*names, LOGITS) if self.num_classes else names


class Backend(Protocol):
    """Runs a backbone on a normalised batch and returns the requested outputs."""

    runtime: str

    def run(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]: ...

    def run_pixels(
        self, pixels: np.ndarray, preprocess: Preprocess, names: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Like `run`, from uint8 ``[N, S, S, 3]`` inputs normalised per `preprocess`."""
        ...


class TorchBackend:
    """Eager PyTorch, under ``torch.inference_mode()`` and in eval mode.

    The returned tensors are copied out of inference mode (about 1% of the forward
    time) so that they are ordinary tensors, usable as inputs of training code, as the
    ONNX runtime's are; inference tensors cannot be saved for backward.
    """

    runtime = "torch"

    def __init__(self, model: Backbone) -> None:
        self.model = model

    def run(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                out = self.model(x)
        finally:
            self.model.train(was_training)
        return {name: out[name].clone() for name in names}

    def run_pixels(
        self, pixels: np.ndarray, preprocess: Preprocess, names: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        return self.run(normalize(pixels, preprocess), names)


class ImageEncoder:
    """A pretrained (or user-weighted) image backbone plus its input recipe.

    Create one with :func:`phototag.features.encoders.create_encoder`. The torch
    module is :attr:`model` (for fine-tuning or for building models on top of it);
    the methods below are for feature extraction and always run without gradients.
    """

    def __init__(
        self,
        name: str,
        model: Backbone,
        preprocess: Preprocess,
        *,
        weights_sha256: str,
        weights_source: str,
        class_names: Sequence[ImageNetClass] | None = None,
    ) -> None:
        self.name = name
        self.model = model.eval()
        self.preprocess = preprocess
        self.weights_sha256 = weights_sha256
        self.weights_source = weights_source
        if class_names is not None and len(class_names) != model.num_classes:
            raise ValueError("class_names must match the classifier size")
        self.class_names: tuple[ImageNetClass, ...] | None = (
            tuple(class_names) if class_names is not None else None
        )
        self._backend: Backend = TorchBackend(model)

    # ------------------------------------------------------------------ description

    @property
    def runtime(self) -> str:
        """Where :meth:`forward_features` runs: ``"torch"`` or ``"onnx"``."""
        return self._backend.runtime

    @property
    def stages(self) -> tuple[StageSpec, ...]:
        return self.model.stages

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.model.stages)

    @property
    def scales(self) -> tuple[str, ...]:
        """Names of the five multi-scale maps (last map at stride 2, 4, 8, 16, 32)."""
        return self.model.scales

    @property
    def num_features(self) -> int:
        """Length of the pooled feature vector."""
        return self.model.num_features

    @property
    def num_classes(self) -> int:
        """Classifier outputs (1000 for ImageNet weights; 0 when there is no classifier)."""
        return self.model.num_classes

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.model.output_names

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

    def forward_features(
        self, x: torch.Tensor, outputs: Iterable[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Named outputs for a batch from :meth:`transform`.

        ``outputs`` selects keys among :attr:`output_names` (default: all): the stage
        maps, ``"pooled"`` and ``"logits"``. Runs under ``torch.inference_mode()``.
        """
        names = self._check_outputs(outputs)
        self._check_batch(x)
        return self._backend.run(x, names)

    def forward_pixels(
        self, pixels: np.ndarray, outputs: Iterable[str] | None = None
    ) -> dict[str, torch.Tensor]:
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

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled features ``(N, num_features)``."""
        return self.forward_features(x, [POOLED])[POOLED]

    def feature_maps(
        self, x: torch.Tensor, names: Iterable[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Stage maps by name (default: all stages, in network order)."""
        names = list(self.stage_names if names is None else names)
        for name in names:
            if name not in self.stage_names:
                raise InvalidInputError(
                    "names", f"stage names among {list(self.stage_names)}", repr(name)
                )
        return self.forward_features(x, names)

    def class_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax over the classifier (ImageNet: ``(N, 1000)``, order of ``class_names``)."""
        self._require_classifier()
        return torch.softmax(self.forward_features(x, [LOGITS])[LOGITS], dim=-1)

    def top_classes(self, x: torch.Tensor, k: int = 5) -> list[list[tuple[ImageNetClass, float]]]:
        """The ``k`` most probable classes per image, best first, with probabilities."""
        self._require_classifier()
        if self.class_names is None:
            raise PhototagError(f"{self.name}: these weights come without class names")
        check_int("k", k, 1, self.num_classes)
        probs = self.class_probabilities(x)
        top = torch.topk(probs, k, dim=-1)
        return [
            [
                (self.class_names[i], float(p))
                for p, i in zip(vals.tolist(), idx.tolist(), strict=True)
            ]
            for vals, idx in zip(top.values, top.indices, strict=True)
        ]

    def encode(self, images: Sequence[ImageLike] | ImageLike, batch_size: int = 32) -> np.ndarray:
        """Pooled features of images as a float32 array ``(N, num_features)``."""
        check_int("batch_size", batch_size, 1)
        items: list[ImageLike] = (
            [images]
            if isinstance(images, (Image.Image, np.ndarray, torch.Tensor))
            else list(images)
        )
        out = np.empty((len(items), self.num_features), dtype=np.float32)
        for start in range(0, len(items), batch_size):
            batch = self.transform(items[start : start + batch_size])
            out[start : start + len(batch)] = self.pooled(batch).numpy()
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

    def _check_batch(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise InvalidInputError(
                "x", "a float tensor (N, 3, H, W) from encoder.transform(images)", got
            )
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


def warn_fallback(message: str) -> None:
    """The one warning shape for 'asked for a faster runtime, running eager torch'."""
    warnings.warn(message, RuntimeWarning, stacklevel=3)
