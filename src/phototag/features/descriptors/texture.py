"""Texture and edge descriptors: edge direction histogram, wavelet texture, uniform LBP."""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

from phototag.errors import InvalidInputError, check_float, check_int
from phototag.features.descriptors.base import Descriptor, ImageViews


class EdgeDirectionHistogram(Descriptor):
    """Histogram of gradient directions at Canny edge pixels + a non-edge bin (37-d).

    Edges come from Canny (`canny_low`, `canny_high` hysteresis thresholds on the 3x3
    Sobel L2 gradient magnitude of the grey image). At each edge pixel the gradient
    direction ``atan2(-gy, gx)`` (y pointing up, so 90 degrees = brightness increasing
    upwards) is quantised into `n_bins` sectors of ``360 / n_bins`` degrees *centred*
    on 0, 10, 20, ... degrees. As in Vailaya et al. (1998), the `n_bins` direction bins
    are divided by the number of edge pixels (they sum to 1 when there are edges, are
    all 0 otherwise) and the last bin is the fraction of non-edge pixels, so all values
    are in [0, 1]. Horizontal stripes put their mass in the 90 and 270 degree bins.
    """

    name = "edge_direction"

    def __init__(self, *, n_bins: int = 36, canny_low: float = 100.0, canny_high: float = 200.0):
        self.n_bins = check_int("n_bins", n_bins, 1, 3600)
        self.canny_low = check_float("canny_low", canny_low, 0.0, strict=False)
        self.canny_high = check_float("canny_high", canny_high, 0.0, strict=False)
        if self.canny_high < self.canny_low:
            raise InvalidInputError(
                "canny_high", f"a threshold at least canny_low={canny_low}", repr(canny_high)
            )

    @property
    def dim(self) -> int:
        return self.n_bins + 1

    def _compute(self, views: ImageViews) -> np.ndarray:
        import cv2

        gray = views.gray
        edges = cv2.Canny(gray, self.canny_low, self.canny_high, L2gradient=True) > 0
        out = np.zeros(self.dim, dtype=np.float64)
        n_edges = int(np.count_nonzero(edges))
        out[-1] = 1.0 - n_edges / edges.size
        if n_edges:
            gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)[edges]
            gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)[edges]
            degrees = np.degrees(np.arctan2(-gy, gx).astype(np.float64))
            width = 360.0 / self.n_bins
            bins = np.floor(degrees / width + 0.5).astype(np.intp) % self.n_bins
            out[:-1] = np.bincount(bins, minlength=self.n_bins) / n_edges
        return out


@lru_cache(maxsize=32)
def _detail_bounds(wavelet: str, levels: int) -> np.ndarray:
    """``[levels, 3]``: largest |coefficient| of each detail band for inputs in [0, 1].

    A detail coefficient is a linear functional <w, x> of the image; over x in [0, 1]^n
    its magnitude peaks at max(sum of positive w, -sum of negative w). `w` is found by
    reconstructing from a single unit coefficient (the transform is orthogonal with
    periodization, so synthesis is the adjoint of analysis).
    """
    import pywt

    filter_length = pywt.Wavelet(wavelet).dec_len
    size = 2**levels * max(filter_length, 2) * 4
    template = pywt.wavedec2(np.zeros((size, size)), wavelet, mode="periodization", level=levels)
    bounds = np.empty((levels, 3))
    for level in range(1, levels + 1):
        index = levels - level + 1  # wavedec2 lists the coarsest detail level first
        for band in range(3):
            coeffs = [np.zeros_like(template[0])] + [
                tuple(np.zeros_like(c) for c in detail) for detail in template[1:]
            ]
            detail = list(coeffs[index])
            middle = tuple(s // 2 for s in detail[band].shape)
            detail[band][middle] = 1.0
            coeffs[index] = tuple(detail)
            kernel = pywt.waverec2(coeffs, wavelet, mode="periodization")
            bounds[level - 1, band] = max(kernel[kernel > 0].sum(), -kernel[kernel < 0].sum())
    return bounds


class WaveletTexture(Descriptor):
    """Pyramid-structured wavelet texture energies of the L*, a*, b* channels (36-d).

    Each 8-bit Lab channel (scaled to [0, 1]) gets a `levels`-level 2-D discrete wavelet
    transform (Mallat's pyramid: only the approximation band is split again; orthogonal
    `wavelet`, periodization). Each detail band (horizontal, vertical, diagonal detail at
    levels 1..`levels`) is summarised by its energy ``mean |c|`` (Chang and Kuo, 1993).
    Dimension: 3 channels x `levels` (4) x 3 orientations = 36, ordered
    (channel, level fine-to-coarse, orientation).

    Scaling: each energy is divided by the largest |coefficient| that band can have for
    an image in [0, 1] (for Haar, ``2 ** (level - 1)``), a fixed exact bound. A constant
    image has all 36 energies 0.
    """

    name = "wavelet"

    def __init__(self, *, wavelet: str = "haar", levels: int = 4) -> None:
        import pywt

        if wavelet not in pywt.wavelist(kind="discrete"):
            raise InvalidInputError(
                "wavelet",
                "an orthogonal discrete wavelet name known to PyWavelets",
                repr(wavelet),
                "See pywt.wavelist(kind='discrete'), e.g. 'haar', 'db2', 'sym4'.",
            )
        if not pywt.Wavelet(wavelet).orthogonal:
            raise InvalidInputError("wavelet", "an orthogonal wavelet", repr(wavelet))
        self.wavelet = wavelet
        self.levels = check_int("levels", levels, 1, 4)
        self._bounds = _detail_bounds(wavelet, self.levels)

    @property
    def dim(self) -> int:
        return 3 * self.levels * 3

    def _compute(self, views: ImageViews) -> np.ndarray:
        import pywt

        channels = np.moveaxis(views.lab, -1, 0).astype(np.float32) / np.float32(255.0)
        with warnings.catch_warnings():  # deep levels on small images: boundary effects
            warnings.simplefilter("ignore", UserWarning)
            coeffs = pywt.wavedec2(
                channels, self.wavelet, mode="periodization", level=self.levels, axes=(-2, -1)
            )
        energies = np.empty((3, self.levels, 3))
        for level in range(1, self.levels + 1):
            for band, c in enumerate(coeffs[self.levels - level + 1]):
                energies[:, level - 1, band] = np.abs(c).mean(axis=(-2, -1))
        return energies / self._bounds[None]


class LocalBinaryPattern(Descriptor):
    """Histogram of non-rotation-invariant uniform LBP codes, P=8, R=1 (59-d).

    Codes come from scikit-image's ``local_binary_pattern(method="nri_uniform")`` on
    the grey image: each of the ``P (P - 1) + 2`` uniform patterns (at most two 0/1
    transitions around the circle; 58 for P=8) has its own bin and all non-uniform
    patterns share one, so ``P (P - 1) + 3`` = 59 bins. Circular neighbours are
    bilinearly interpolated. Pixels closer than `radius` to the border are skipped
    (their out-of-image neighbours would be fake zeros). The histogram is divided by the
    number of counted pixels (sums to 1).
    """

    name = "lbp"

    def __init__(self, *, points: int = 8, radius: float = 1.0) -> None:
        self.points = check_int("points", points, 2, 24)
        self.radius = check_float("radius", radius, 0.0)
        if self.radius > 4:
            raise InvalidInputError("radius", "a radius of at most 4 pixels", repr(radius))

    @property
    def dim(self) -> int:
        return self.points * (self.points - 1) + 3

    def _compute(self, views: ImageViews) -> np.ndarray:
        from skimage.feature import local_binary_pattern

        codes = local_binary_pattern(views.gray, self.points, self.radius, method="nri_uniform")
        border = int(np.ceil(self.radius))
        inner = codes[border:-border, border:-border].astype(np.intp).ravel()
        return np.bincount(inner, minlength=self.dim) / inner.size
