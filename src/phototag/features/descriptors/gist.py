"""Colour GIST: Gabor filter-bank energies pooled on a coarse grid (Oliva and Torralba)."""

from __future__ import annotations

import numpy as np

from phototag.errors import InvalidInputError, check_float, check_int
from phototag.features.descriptors.base import Descriptor, ImageViews

_PREFILTER_PAD = 5  # symmetric padding of the whitening step, as in LMgist
_FLAT_NORM = 1e-4  # below this, the raw GIST is rounding noise of a flat image


def _frequency_grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer frequencies ``(fx, fy)`` of an ``n x n`` FFT, in FFT (unshifted) order."""
    f = np.fft.fftfreq(n, d=1.0 / n)
    fx, fy = np.meshgrid(f, f)
    return fx, fy


def gabor_bank(size: int, orientations: tuple[int, ...]) -> np.ndarray:
    """Frequency responses ``float32 [n_filters, size, size]`` (FFT order) of the bank.

    The filters are the Gaussians in log-polar-like coordinates of LMgist's
    ``createGabor``: scale ``i`` (0 = finest) is centred on radial frequency
    ``0.3 / 1.85**i`` cycles/pixel with radial spread set by 0.35, orientation ``j`` of
    ``n`` on angle ``pi j / n`` with angular spread ``16 n**2 / 32**2``. Each filter is
    one-sided in frequency, so the magnitude of its response is the local energy (a
    quadrature pair). Two departures from LMgist keep the bank exactly mirror-symmetric
    (a mirrored image gives the same energies with orientations permuted): the DC term
    is zeroed (LMgist gives it an orientation-dependent gain because the angle of the
    zero frequency is taken as 0; a band-pass filter should not pass the mean), and so
    are the Nyquist row and column (they alias +/- the same frequency).
    """
    fx, fy = _frequency_grid(size)
    radius = np.sqrt(fx**2 + fy**2) / size
    angle = np.arctan2(fy, fx)
    filters = []
    for scale, n_orient in enumerate(orientations):
        centre = 0.3 / 1.85**scale
        angular = 16.0 * n_orient**2 / 32.0**2
        for j in range(n_orient):
            theta = angle + np.pi * j / n_orient
            theta = np.where(theta < -np.pi, theta + 2 * np.pi, theta)
            theta = np.where(theta > np.pi, theta - 2 * np.pi, theta)
            response = np.exp(
                -10.0 * 0.35 * (radius / centre - 1.0) ** 2 - 2.0 * angular * np.pi * theta**2
            )
            filters.append(response)
    bank = np.stack(filters).astype(np.float32)
    bank[:, 0, 0] = 0.0
    if size % 2 == 0:
        bank[:, size // 2, :] = 0.0
        bank[:, :, size // 2] = 0.0
    return bank


class GIST(Descriptor):
    """Colour GIST: 3 RGB channels x 20 Gabor filters x 4 x 4 grid = 960-d.

    Following Oliva and Torralba's LMgist and the colour variant of Douze et al.
    (2009, 960-d: ``n_blocks = 4``, orientations per scale ``(8, 8, 4)``):

    1. resize the image to ``image_size x image_size`` (aspect ratio not kept, so the
       grid covers the whole picture; area interpolation when shrinking);
    2. per RGB channel, ``log(1 + x)`` then LMgist's prefilter: subtract a Gaussian
       low-pass (cut-off `prefilter_fc` cycles/image) and divide by the local contrast
       ``0.2 + sqrt(lowpass(x**2))`` (whitening + contrast normalisation);
    3. pad by `padding` pixels (symmetric; LMgist pads 32 at 256 px, 16 here at 128)
       and filter in the frequency domain with the
       `gabor_bank` (scales x orientations = 8 + 8 + 4 = 20 filters);
    4. average the response magnitude over a ``n_blocks x n_blocks`` grid.

    Output order: (channel R/G/B, filter scale-major, block row, block column).
    Scaling: the vector is divided by its L2 norm, a fixed rule that puts every value
    in [0, 1] (all values are non-negative); the prefilter has already removed global
    contrast, so the norm carries little information. A flat image gives all zeros.
    """

    name = "gist"

    def __init__(
        self,
        *,
        image_size: int = 128,
        n_blocks: int = 4,
        orientations: tuple[int, ...] = (8, 8, 4),
        prefilter_fc: float = 4.0,
        padding: int = 16,
    ) -> None:
        self.image_size = check_int("image_size", image_size, 16, 1024)
        self.n_blocks = check_int("n_blocks", n_blocks, 1, self.image_size)
        orientations = tuple(orientations)
        if not orientations or not all(
            isinstance(n, int | np.integer) and 1 <= n <= 32 for n in orientations
        ):
            raise InvalidInputError(
                "orientations",
                "a non-empty sequence of orientation counts per scale, each 1..32",
                repr(orientations),
            )
        self.orientations = tuple(int(n) for n in orientations)
        self.prefilter_fc = check_float("prefilter_fc", prefilter_fc, 0.0)
        self.padding = check_int("padding", padding, 0, self.image_size)
        self._bank: np.ndarray | None = None
        self._lowpass: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return 3 * sum(self.orientations) * self.n_blocks**2

    # Filters are built on first use and not pickled (cheap to rebuild).
    def __getstate__(self) -> dict:
        return {**self.__dict__, "_bank": None, "_lowpass": None}

    def _filters(self) -> tuple[np.ndarray, np.ndarray]:
        if self._bank is None or self._lowpass is None:
            n = self.image_size + 2 * _PREFILTER_PAD
            fx, fy = _frequency_grid(n)
            s1 = self.prefilter_fc / np.sqrt(np.log(2.0))
            lowpass = np.exp(-(fx**2 + fy**2) / s1**2).astype(np.float32)
            self._lowpass = np.ascontiguousarray(lowpass[:, : n // 2 + 1])  # rfft2 half
            self._bank = gabor_bank(self.image_size + 2 * self.padding, self.orientations)
        return self._bank, self._lowpass

    def _prefilter(self, channels: np.ndarray, lowpass: np.ndarray) -> np.ndarray:
        import scipy.fft as sfft

        p = _PREFILTER_PAD
        x = np.pad(np.log1p(channels), ((0, 0), (p, p), (p, p)), mode="symmetric")
        shape = x.shape[-2:]
        x = x - sfft.irfft2(sfft.rfft2(x) * lowpass, s=shape)
        local_std = np.sqrt(np.abs(sfft.irfft2(sfft.rfft2(x * x) * lowpass, s=shape)))
        x = x / (np.float32(0.2) + local_std)
        return x[:, p:-p, p:-p]

    def _compute(self, views: ImageViews) -> np.ndarray:
        import cv2
        import scipy.fft as sfft

        bank, lowpass = self._filters()
        size = self.image_size
        height, width = views.shape
        shrink = size <= min(height, width)
        rgb = cv2.resize(
            views.rgb, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
        channels = np.moveaxis(rgb, -1, 0).astype(np.float32)
        x = self._prefilter(channels, lowpass).astype(np.float32)
        if self.padding:
            pad = self.padding
            x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), mode="symmetric")
        spectrum = sfft.fft2(x)  # [3, n, n] complex64
        magnitude = np.abs(sfft.ifft2(spectrum[:, None] * bank[None], overwrite_x=True))
        if self.padding:
            magnitude = magnitude[..., self.padding : -self.padding, self.padding : -self.padding]
        edges = np.floor(np.linspace(0, size, self.n_blocks + 1)).astype(np.intp)
        sums = np.add.reduceat(np.add.reduceat(magnitude, edges[:-1], -2), edges[:-1], -1)
        blocks = sums / np.outer(np.diff(edges), np.diff(edges))
        vector = blocks.reshape(-1).astype(np.float64)
        norm = np.linalg.norm(vector)
        # A flat image leaves only float rounding (norm ~1e-6; natural images: ~1).
        return vector / norm if norm > _FLAT_NORM else np.zeros_like(vector)
