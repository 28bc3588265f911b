"""Colour descriptors: the HSV colour histogram and grid LAB colour moments."""

from __future__ import annotations

import numpy as np

from phototag.errors import check_int
from phototag.features.descriptors.base import Descriptor, ImageViews

#: Largest cube root of a third central moment of values in [0, 255]. Over [0, 1] the
#: third central moment peaks at 1 / (6 sqrt 3), for the two-point distribution on
#: {0, 1} with P(1) = (3 - sqrt 3) / 6; it scales with the cube of the range.
SKEW_BOUND = 255.0 * (1.0 / (6.0 * np.sqrt(3.0))) ** (1.0 / 3.0)


class HSVHistogram(Descriptor):
    """Joint HSV colour histogram, ``h_bins * s_bins * v_bins`` bins (8 x 4 x 4 = 128).

    Hue is quantised into `h_bins` equal sectors *centred* on 0, 360/h_bins, ...
    degrees (so pure red, hue 0, sits in the middle of bin 0 rather than on a bin edge
    where noise would split it between the first and the last bin); saturation and value
    are cut into equal bins over 0..255. Bin index = ``(h * s_bins + s) * v_bins + v``.
    The histogram is divided by the pixel count (sums to 1), so every bin is in [0, 1].
    Grey pixels (saturation near 0) have an arbitrary hue of 0 and land in the
    low-saturation bins of hue sector 0.
    """

    name = "hsv_hist"

    def __init__(self, *, h_bins: int = 8, s_bins: int = 4, v_bins: int = 4) -> None:
        self.h_bins = check_int("h_bins", h_bins, 1, 256)
        self.s_bins = check_int("s_bins", s_bins, 1, 256)
        self.v_bins = check_int("v_bins", v_bins, 1, 256)
        levels = np.arange(256)
        # Look-up tables from 8-bit channel values to (partial) flat bin indices.
        hue = (levels * self.h_bins + 128) // 256 % self.h_bins
        self._lut_h = (hue * self.s_bins * self.v_bins).astype(np.intp)
        self._lut_s = (levels * self.s_bins // 256 * self.v_bins).astype(np.intp)
        self._lut_v = (levels * self.v_bins // 256).astype(np.intp)

    @property
    def dim(self) -> int:
        return self.h_bins * self.s_bins * self.v_bins

    def _compute(self, views: ImageViews) -> np.ndarray:
        hsv = views.hsv
        index = self._lut_h[hsv[..., 0]] + self._lut_s[hsv[..., 1]] + self._lut_v[hsv[..., 2]]
        counts = np.bincount(index.ravel(), minlength=self.dim)
        return counts / index.size


class LabMoments(Descriptor):
    """Colour moments of the 8-bit L*a*b* channels on a ``grid x grid`` layout (225-d).

    Dimension: ``grid * grid`` cells (5 x 5 = 25) x 3 channels (L, a, b) x 3 moments
    = 225, ordered (cell row, cell column, channel, moment). The image is split into
    near-equal cells (edges at ``round(k * H / grid)``). Moments follow Stricker and
    Orengo (1995) on the 8-bit channel values x in [0, 255]:

    - mean ``mu``, scaled ``mu / 255``;
    - standard deviation ``sigma`` (population), at most 127.5, scaled ``sigma / 127.5``;
    - "skewness" as the cube root of the third central moment ``s = cbrt(E[(x-mu)^3])``,
      which keeps the unit of x and is defined for flat cells, at most `SKEW_BOUND`
      (~116.8) in magnitude, scaled ``(s / SKEW_BOUND + 1) / 2`` (0.5 = symmetric).

    All three bounds are exact for any image, so no training data is needed.
    """

    name = "lab_moments"

    def __init__(self, *, grid: int = 5) -> None:
        self.grid = check_int("grid", grid, 1, 16)

    @property
    def dim(self) -> int:
        return self.grid * self.grid * 9

    def _compute(self, views: ImageViews) -> np.ndarray:
        lab = views.lab.astype(np.float64)
        height, width = views.shape
        rows = np.round(np.linspace(0, height, self.grid + 1)).astype(np.intp)
        cols = np.round(np.linspace(0, width, self.grid + 1)).astype(np.intp)
        sizes = np.outer(np.diff(rows), np.diff(cols))[:, :, None]  # [grid, grid, 1]

        def cell_sums(values: np.ndarray) -> np.ndarray:  # [H, W, 3] -> [grid, grid, 3]
            return np.add.reduceat(np.add.reduceat(values, rows[:-1], 0), cols[:-1], 1)

        mean = cell_sums(lab) / sizes
        # Broadcast each cell's mean back to its pixels to take exact central moments.
        centred = lab - np.repeat(np.repeat(mean, np.diff(rows), 0), np.diff(cols), 1)
        squared = centred * centred
        variance = cell_sums(squared) / sizes
        third = cell_sums(squared * centred) / sizes
        moments = np.stack(
            [
                mean / 255.0,
                np.sqrt(np.maximum(variance, 0.0)) / 127.5,
                (np.cbrt(third) / SKEW_BOUND + 1.0) / 2.0,
            ],
            axis=-1,
        )  # [grid, grid, 3 channels, 3 moments]
        return moments.reshape(-1)
