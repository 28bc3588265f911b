"""Classic hand-crafted image descriptors (colour, edges, texture, GIST, SIFT words).

Every descriptor maps one RGB ``uint8 [H, W, 3]`` image to a ``float32 [dim]`` vector
with values in [0, 1]; see ``docs/descriptors.md`` for each definition.

>>> from phototag.features.descriptors import create_descriptor, combined
>>> hsv = create_descriptor("hsv_hist")                   # doctest: +SKIP
>>> vector = hsv(rgb)                                     # doctest: +SKIP
>>> parts = combined(rgb, [hsv, create_descriptor("lbp")])  # doctest: +SKIP

The descriptors need OpenCV (``opencv-python-headless``); the wavelet texture needs
PyWavelets, the LBP scikit-image, and fitting the bag of visual words faiss-cpu or
scikit-learn. They are imported on first use.
"""

from phototag.features.descriptors.base import (
    MIN_SIDE,
    Descriptor,
    ImageViews,
    check_image,
)
from phototag.features.descriptors.bovw import BagOfVisualWords
from phototag.features.descriptors.color import HSVHistogram, LabMoments
from phototag.features.descriptors.gist import GIST
from phototag.features.descriptors.registry import (
    PAPER_FEATURES,
    available_descriptors,
    combined,
    create_descriptor,
    describe_images,
)
from phototag.features.descriptors.texture import (
    EdgeDirectionHistogram,
    LocalBinaryPattern,
    WaveletTexture,
)

__all__ = [
    "GIST",
    "MIN_SIDE",
    "PAPER_FEATURES",
    "BagOfVisualWords",
    "Descriptor",
    "EdgeDirectionHistogram",
    "HSVHistogram",
    "ImageViews",
    "LabMoments",
    "LocalBinaryPattern",
    "WaveletTexture",
    "available_descriptors",
    "check_image",
    "combined",
    "create_descriptor",
    "describe_images",
]
