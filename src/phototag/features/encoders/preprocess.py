"""How an encoder turns photos into its input tensor: a small, JSON-serialisable recipe.

The recipe (:class:`Preprocess`) is saved with every model that uses an encoder, so
features computed later are computed exactly the same way. :func:`transform` applies
it to a batch of in-memory images (Pillow images, ``uint8`` arrays or tensors); it
never opens files (that is :mod:`phototag.imaging`'s job).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import numpy as np
from PIL import Image

from phototag.errors import InvalidInputError, check_int

if TYPE_CHECKING:
    import torch

#: Resize modes. ``center_crop``: keep the central square whose side is
#: ``crop_fraction`` x the shorter image side, resize it to ``input_size`` (the
#: evaluation crop the ImageNet weights were measured with). ``squash``: the whole
#: image resized to ``input_size`` x ``input_size`` (aspect ratio not kept; nothing
#: cut off, which suits multi-label annotation of objects near the borders).
RESIZE_MODES: Final = ("center_crop", "squash")
INTERPOLATIONS: Final = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "lanczos": Image.Resampling.LANCZOS,
}

ImageLike: TypeAlias = "Image.Image | np.ndarray | torch.Tensor"


def is_tensor(value: object) -> bool:
    """Whether `value` is a torch tensor, without importing PyTorch (a tensor can only
    exist once PyTorch is imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


@dataclass(frozen=True)
class Preprocess:
    """Input recipe of an encoder.

    ``mean`` and ``std`` are per RGB channel on the 0-255 pixel scale: the network
    sees ``(pixel - mean) / std``.
    """

    input_size: int
    resize: str = "center_crop"
    crop_fraction: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)

    def __post_init__(self) -> None:
        check_int("input_size", self.input_size, 16)
        if self.resize not in RESIZE_MODES:
            raise InvalidInputError(
                "resize", f"one of {', '.join(RESIZE_MODES)}", repr(self.resize)
            )
        if not isinstance(self.crop_fraction, (int, float)) or not (
            0.0 < float(self.crop_fraction) <= 1.0
        ):
            raise InvalidInputError("crop_fraction", "a number in (0, 1]", repr(self.crop_fraction))
        if self.interpolation not in INTERPOLATIONS:
            raise InvalidInputError(
                "interpolation", f"one of {', '.join(INTERPOLATIONS)}", repr(self.interpolation)
            )
        for field, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != 3:
                raise InvalidInputError(field, "3 numbers (R, G, B)", repr(values))
        if min(self.std) <= 0:
            raise InvalidInputError("std", "3 positive numbers", repr(self.std))
        # Normalise to plain floats/tuples so equality and JSON round trips are exact.
        object.__setattr__(self, "crop_fraction", float(self.crop_fraction))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (lists for the channel triples)."""
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError("preprocess", f"keys among {sorted(known)}", ", ".join(unknown))
        values = dict(data)
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def digest(self) -> str:
        """Short stable hash of the recipe (part of an encoder's feature id)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


def to_rgb_image(image: ImageLike, *, argument: str = "images") -> Image.Image:
    """One in-memory image as an 8-bit RGB Pillow image.

    Accepted: a Pillow image of any mode (alpha is flattened onto white, as
    :mod:`phototag.imaging` does); a ``uint8`` numpy array ``(H, W)``, ``(H, W, 1)``,
    ``(H, W, 3)`` or ``(H, W, 4)``; a ``uint8`` tensor ``(H, W)`` or channels-first
    ``(C, H, W)`` with C in 1, 3, 4 (torchvision's ``read_image`` layout).
    Grey images are repeated to three channels.
    """
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    if is_tensor(image):
        import torch

        if image.dtype != torch.uint8 or image.ndim not in (2, 3):
            raise InvalidInputError(
                argument,
                "uint8 tensors of shape (H, W) or (C, H, W)",
                f"a {image.dtype} tensor of shape {tuple(image.shape)}",
                "Convert with (x * 255).round().clamp(0, 255).to(torch.uint8).",
            )
        array = image.detach().cpu().numpy()
        if array.ndim == 3:
            if array.shape[0] not in (1, 3, 4):
                raise InvalidInputError(
                    argument,
                    "a (C, H, W) tensor with C in 1, 3, 4",
                    f"shape {tuple(image.shape)}",
                )
            array = np.ascontiguousarray(array.transpose(1, 2, 0))
        return _array_to_rgb(array, argument)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, argument)
    raise InvalidInputError(
        argument,
        "Pillow images, uint8 numpy arrays or uint8 tensors",
        f"an object of type {type(image).__name__}",
        "Load files with phototag.imaging.load_image.",
    )


def _pil_to_rgb(image: Image.Image) -> Image.Image:
    if image.width < 1 or image.height < 1:
        raise InvalidInputError("images", "images with at least 1 x 1 pixels", "an empty image")
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", image.size, "white")
        background.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _array_to_rgb(array: np.ndarray, argument: str) -> Image.Image:
    if array.dtype != np.uint8:
        raise InvalidInputError(
            argument,
            "uint8 arrays (0-255 pixel values)",
            f"an array of dtype {array.dtype}",
            "Convert with np.clip(x * 255, 0, 255).round().astype(np.uint8).",
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        if array.size == 0:
            raise InvalidInputError(argument, "non-empty images", f"shape {array.shape}")
        return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InvalidInputError(
            argument, "arrays of shape (H, W), (H, W, 3) or (H, W, 4)", f"shape {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidInputError(argument, "non-empty images", f"shape {array.shape}")
    # Pillow infers "RGB" / "RGBA" from the uint8 (H, W, 3|4) layout.
    return _pil_to_rgb(Image.fromarray(np.ascontiguousarray(array)))


def resize_to_input(image: Image.Image, preprocess: Preprocess) -> Image.Image:
    """Crop/resize an RGB image to ``input_size`` x ``input_size`` per the recipe."""
    width, height = image.size
    if preprocess.resize == "center_crop":
        side = min(width, height) * preprocess.crop_fraction
        left, top = (width - side) / 2.0, (height - side) / 2.0
        box = (left, top, left + side, top + side)
    else:
        box = (0.0, 0.0, float(width), float(height))
    size = (preprocess.input_size, preprocess.input_size)
    # `box` crops with sub-pixel precision inside the resampling filter: one pass,
    # and the crop never rounds to whole pixels.
    return image.resize(size, INTERPOLATIONS[preprocess.interpolation], box=box)


def transform(images: Sequence[ImageLike], preprocess: Preprocess) -> torch.Tensor:
    """A batch of images as a normalised float32 tensor ``(N, 3, S, S)``."""
    import torch

    if isinstance(images, (Image.Image, np.ndarray, torch.Tensor)):
        raise InvalidInputError(
            "images",
            "a list of images",
            f"a single {type(images).__name__}",
            "Wrap one image in a list: encoder.transform([image]).",
        )
    images = list(images)
    size = preprocess.input_size
    batch = np.empty((len(images), size, size, 3), dtype=np.float32)
    for i, image in enumerate(images):
        rgb = resize_to_input(to_rgb_image(image, argument=f"images[{i}]"), preprocess)
        batch[i] = np.asarray(rgb, dtype=np.float32)
    mean = np.asarray(preprocess.mean, dtype=np.float32)
    scale = 1.0 / np.asarray(preprocess.std, dtype=np.float32)
    batch -= mean
    batch *= scale
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()


def normalize(pixels: np.ndarray | torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """uint8 ``[N, S, S, 3]`` model inputs -> the network's float32 ``[N, 3, S, S]`` batch
    (on the device of `pixels` when they are a tensor)."""
    import torch

    x = torch.as_tensor(pixels).permute(0, 3, 1, 2).float()
    mean = torch.tensor(preprocess.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.contiguous_format)
