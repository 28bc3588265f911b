"""Bag of visual words over dense and Harris-point SIFT, with a spatial pyramid and TF-IDF."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Self

import numpy as np

from phototag.errors import InvalidInputError, NotFittedError, check_choice, check_float, check_int
from phototag.features.descriptors.base import Descriptor, ImageViews, as_views

log = logging.getLogger(__name__)

COLORS = ("gray", "rgb", "c")
SAMPLINGS = ("both", "dense", "harris")
NORMS = ("l2", "l1")
SIFT_DIM = 128
_C_EPS = 10.0  # regulariser of the chromatic ratios of C-SIFT (on the R+G+B scale 0..765)


def bovw_name(color: str, sampling: str) -> str:
    """Registry name of a configuration, e.g. ``bovw_sift``, ``bovw_csift_dense``."""
    prefix = {"gray": "", "rgb": "rgb", "c": "c"}[color]
    suffix = "" if sampling == "both" else f"_{sampling}"
    return f"bovw_{prefix}sift{suffix}"


def sift_channels(views: ImageViews, color: str) -> list[np.ndarray]:
    """The ``uint8`` planes SIFT is computed on: grey, R/G/B, or intensity + 2 chromatic.

    ``"c"`` follows the C-SIFT of van de Sande et al. (2010): the intensity plane plus
    the normalised opponent colours O1/O3 and O2/O3, here as (R - G) / (R + G + B) and
    (R + G - 2B) / (R + G + B) (the same ratios up to constant factors, which SIFT's
    normalisation removes), mapped linearly onto 0..255.
    """
    if color == "gray":
        return [views.gray]
    rgb = views.rgb
    if color == "rgb":
        return [np.ascontiguousarray(rgb[..., c]) for c in range(3)]
    r, g, b = (rgb[..., c].astype(np.float32) for c in range(3))
    total = r + g + b + np.float32(_C_EPS)
    o1 = (r - g) / total  # in (-1, 1)
    o2 = (r + g - 2 * b) / total  # in (-2, 1)
    return [
        views.gray,
        np.clip(np.rint((o1 + 1) * 127.5), 0, 255).astype(np.uint8),
        np.clip(np.rint((o2 + 2) * 85.0), 0, 255).astype(np.uint8),
    ]


class BagOfVisualWords(Descriptor):
    """SIFT bag of visual words: k-means codebook, 2-level spatial pyramid, TF-IDF.

    Local features: upright SIFT (OpenCV) on ``patch_size``-pixel square patches
    (4 x 4 cells of ``patch_size / 4`` pixels, 8 orientations = 128-d per plane) at

    - ``dense``: a regular grid with spacing `step`, patch centres at least half a patch
      from the border;
    - ``harris``: up to `max_harris_points` Harris corners (``cv2.goodFeaturesToTrack``
      with ``useHarrisDetector=True``, quality `harris_quality`, at least `step / 2`
      pixels apart);
    - ``both``: the union of the two (the default).

    `color` picks the planes: ``gray`` (SIFT, 128-d), ``rgb`` (RGB-SIFT, 384-d), ``c``
    (C-SIFT, 384-d; see `sift_channels`). Each local feature is assigned to its nearest
    word of a `vocabulary_size`-word codebook (Euclidean). Word counts, divided by the
    number of local features (term frequency), are pooled over a spatial pyramid with
    `pyramid_levels` levels (level l has a 2^l x 2^l grid: 1 + 4 = 5 cells for 2 levels,
    5 x 1000 = 5000-d), weighted per level as in Lazebnik et al. (2006) (1/2^L for level
    0, 1/2^(L-l+1) for level l >= 1, with L = levels - 1), multiplied by the inverse
    document frequency ``idf_w = ln((1 + N) / (1 + df_w)) + 1`` of each word over the N
    training images, and divided by the vector's L2 (or L1) norm, which puts every
    value in [0, 1].

    `fit` learns the codebook (k-means, FAISS when installed, else scikit-learn
    MiniBatchKMeans, on at most `max_fit_descriptors` randomly chosen local features)
    and the idf weights; `state_dict` returns both as numpy arrays.
    """

    requires_fit = True

    def __init__(
        self,
        *,
        vocabulary_size: int = 1000,
        color: str = "gray",
        sampling: str = "both",
        patch_size: int = 16,
        step: int = 8,
        max_harris_points: int = 300,
        harris_quality: float = 0.001,
        pyramid_levels: int = 2,
        norm: str = "l2",
        max_fit_descriptors: int = 100_000,
        kmeans_iterations: int = 20,
        seed: int = 0,
    ) -> None:
        self.vocabulary_size = check_int("vocabulary_size", vocabulary_size, 2)
        self.color = check_choice("color", color, COLORS)
        self.sampling = check_choice("sampling", sampling, SAMPLINGS)
        self.patch_size = check_int("patch_size", patch_size, 4, 64)
        self.step = check_int("step", step, 1, 64)
        self.max_harris_points = check_int("max_harris_points", max_harris_points, 1)
        self.harris_quality = check_float("harris_quality", harris_quality, 0.0)
        self.pyramid_levels = check_int("pyramid_levels", pyramid_levels, 1, 4)
        self.norm = check_choice("norm", norm, NORMS)
        self.max_fit_descriptors = check_int("max_fit_descriptors", max_fit_descriptors, 1)
        self.kmeans_iterations = check_int("kmeans_iterations", kmeans_iterations, 1)
        self.seed = check_int("seed", seed, 0)
        self.name = bovw_name(self.color, self.sampling)
        self._sift: Any = None

    # ------------------------------------------------------------ properties
    @property
    def local_dim(self) -> int:
        """Length of one local (SIFT / RGB-SIFT / C-SIFT) feature."""
        return SIFT_DIM * (1 if self.color == "gray" else 3)

    @property
    def n_cells(self) -> int:
        return sum(4**level for level in range(self.pyramid_levels))

    @property
    def dim(self) -> int:
        return self.vocabulary_size * self.n_cells

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "codebook_") and hasattr(self, "idf_")

    def __getstate__(self) -> dict:  # OpenCV objects do not pickle; rebuilt on use
        return {**self.__dict__, "_sift": None, "_dense_cache": {}}

    # -------------------------------------------------------- local features
    def local_features(self, image: np.ndarray | ImageViews) -> tuple[np.ndarray, np.ndarray]:
        """``(xy float32 [n, 2], features uint8 [n, local_dim])`` of one image."""
        import cv2

        views = as_views(image, "image")
        if self._sift is None:
            self._sift = cv2.SIFT_create()
        points, keypoints = self._keypoints(views)
        if not keypoints:
            return np.zeros((0, 2), np.float32), np.zeros((0, self.local_dim), np.uint8)
        parts = []
        for plane in sift_channels(views, self.color):
            kept, features = self._sift.compute(plane, keypoints)
            if features is None or len(kept) != len(keypoints):
                raise RuntimeError("OpenCV SIFT dropped keypoints; cannot align colour planes")
            parts.append(features)
        features = np.clip(np.rint(np.concatenate(parts, axis=1)), 0, 255).astype(np.uint8)
        return points.astype(np.float32), features

    def _make_keypoints(self, points: np.ndarray) -> list[Any]:
        import cv2

        size = self.patch_size / 6.0  # OpenCV: SIFT cell width = 3 * size / 2
        # angle 0 = upright SIFT (no dominant-orientation rotation)
        return [cv2.KeyPoint(float(x), float(y), size, 0.0) for x, y in points]

    def _dense(self, height: int, width: int) -> tuple[np.ndarray, list[Any]]:
        """Dense grid points and keypoints of an image size (cached: sizes repeat)."""
        cache = self.__dict__.setdefault("_dense_cache", {})
        if (height, width) not in cache:
            half = self.patch_size / 2.0
            xs = np.arange(half, width - half + 1e-9, self.step)
            ys = np.arange(half, height - half + 1e-9, self.step)
            gx, gy = np.meshgrid(xs, ys)
            points = np.stack([gx.ravel(), gy.ravel()], axis=1)
            if len(cache) > 8:
                cache.clear()
            cache[height, width] = (points, self._make_keypoints(points))
        return cache[height, width]

    def _keypoints(self, views: ImageViews) -> tuple[np.ndarray, list[Any]]:
        """Sampling positions ``[n, 2]`` (x, y) and the matching OpenCV keypoints."""
        import cv2

        points: list[np.ndarray] = []
        keypoints: list[Any] = []
        if self.sampling in ("both", "dense"):
            dense_points, dense_keypoints = self._dense(*views.shape)
            points.append(dense_points)
            keypoints += dense_keypoints
        if self.sampling in ("both", "harris"):
            corners = cv2.goodFeaturesToTrack(
                views.gray,
                maxCorners=self.max_harris_points,
                qualityLevel=self.harris_quality,
                minDistance=max(self.step / 2.0, 1.0),
                blockSize=3,
                useHarrisDetector=True,
                k=0.04,
            )
            if corners is not None:
                corners = corners.reshape(-1, 2).astype(np.float64)
                points.append(corners)
                keypoints += self._make_keypoints(corners)
        return (np.concatenate(points) if points else np.zeros((0, 2))), keypoints

    # ------------------------------------------------------------ quantising
    def quantize(self, features: np.ndarray) -> np.ndarray:
        """Index of the nearest codebook word of each local feature, ``intp [n]``."""
        self._check_fitted()
        return nearest_word(features, self.codebook_)

    def _compute(self, views: ImageViews) -> np.ndarray:
        xy, features = self.local_features(views)
        out = np.zeros(self.dim, dtype=np.float64)
        if not len(features):
            return out
        words = self.quantize(features)
        height, width = views.shape
        top = self.pyramid_levels - 1
        offset = 0
        for level in range(self.pyramid_levels):
            grid = 2**level
            cx = np.minimum((xy[:, 0] * grid / width).astype(np.intp), grid - 1)
            cy = np.minimum((xy[:, 1] * grid / height).astype(np.intp), grid - 1)
            index = offset + (cy * grid + cx) * self.vocabulary_size + words
            weight = 1.0 / 2**top if level == 0 else 1.0 / 2 ** (top - level + 1)
            out += weight / len(words) * np.bincount(index, minlength=self.dim)
            offset += grid * grid * self.vocabulary_size
        out *= np.tile(self.idf_, self.n_cells)
        norm = np.linalg.norm(out) if self.norm == "l2" else out.sum()
        return out / norm if norm > 0 else out

    # -------------------------------------------------------------- learning
    def fit(self, images: Iterable[np.ndarray | ImageViews]) -> Self:
        """Learn the codebook and idf weights from training images (arrays or views)."""
        started = time.perf_counter()
        per_image = []
        for i, image in enumerate(images):
            per_image.append(self.local_features(as_views(image, f"images[{i}]"))[1])
        n_images = len(per_image)
        total = sum(len(f) for f in per_image)
        if total < self.vocabulary_size:
            raise InvalidInputError(
                "images",
                f"at least vocabulary_size={self.vocabulary_size} local features",
                f"{total} from {n_images} images",
                "Pass more (or larger) training images, or lower vocabulary_size.",
            )
        rng = np.random.default_rng(self.seed)
        everything = np.concatenate(per_image)
        if total > self.max_fit_descriptors:
            chosen = np.sort(rng.choice(total, size=self.max_fit_descriptors, replace=False))
            sample = everything[chosen]
        else:
            sample = everything
        extracted = time.perf_counter()
        codebook = kmeans(
            sample.astype(np.float32), self.vocabulary_size, self.kmeans_iterations, self.seed
        )
        clustered = time.perf_counter()
        words = nearest_word(everything, codebook)
        image_of = np.repeat(np.arange(n_images), [len(f) for f in per_image])
        pairs = np.unique(image_of * self.vocabulary_size + words)  # (image, word) present
        document_frequency = np.bincount(
            pairs % self.vocabulary_size, minlength=self.vocabulary_size
        )
        idf = np.log((1.0 + n_images) / (1.0 + document_frequency)) + 1.0
        self.codebook_ = codebook
        self.idf_ = idf.astype(np.float32)
        log.info(
            "%s: %d local features from %d images in %.1f s; k-means (%d words, %d "
            "features, %d iterations) in %.1f s; idf in %.1f s",
            self.name,
            total,
            n_images,
            extracted - started,
            self.vocabulary_size,
            len(sample),
            self.kmeans_iterations,
            clustered - extracted,
            time.perf_counter() - clustered,
        )
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        if not self.is_fitted:
            return {}
        return {"codebook": self.codebook_.copy(), "idf": self.idf_.copy()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> Self:
        expected = {
            "codebook": (self.vocabulary_size, self.local_dim),
            "idf": (self.vocabulary_size,),
        }
        if set(state) != set(expected):
            raise InvalidInputError(
                "state", f"arrays {sorted(expected)}", f"arrays {sorted(state)}"
            )
        for key, shape in expected.items():
            value = np.asarray(state[key])
            if value.shape != shape or not np.issubdtype(value.dtype, np.floating):
                raise InvalidInputError(
                    f"state[{key!r}]",
                    f"a float array of shape {shape}",
                    f"{value.dtype} array of shape {value.shape}",
                    "The state was saved from a descriptor with another configuration.",
                )
            if not np.all(np.isfinite(value)):
                raise InvalidInputError(f"state[{key!r}]", "finite values", "NaN or inf")
        self.codebook_ = np.ascontiguousarray(state["codebook"], dtype=np.float32)
        self.idf_ = np.ascontiguousarray(state["idf"], dtype=np.float32)
        return self

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"descriptor {self.name!r} has no codebook yet: call fit(images) or "
                "load_state_dict(state) before computing it"
            )


def nearest_word(features: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Index of the nearest (Euclidean) row of `codebook` for each feature, ``intp [n]``."""
    x = features.astype(np.float32)
    # argmin ||x - c||^2 = argmax (x.c - ||c||^2 / 2); chunked to bound memory.
    half_sq_norms = 0.5 * np.einsum("ij,ij->i", codebook, codebook)
    words = np.empty(len(x), dtype=np.intp)
    chunk = 8192
    for start in range(0, len(x), chunk):
        scores = x[start : start + chunk] @ codebook.T
        scores -= half_sq_norms
        words[start : start + chunk] = np.argmax(scores, axis=1)
    return words


def kmeans(points: np.ndarray, k: int, iterations: int, seed: int) -> np.ndarray:
    """``float32 [k, d]`` k-means centroids of `points` (FAISS if available, else sklearn)."""
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None:
        model = faiss.Kmeans(
            points.shape[1],
            k,
            niter=iterations,
            seed=seed,
            verbose=False,
            max_points_per_centroid=max(256, -(-len(points) // k)),
            min_points_per_centroid=1,
        )
        model.train(np.ascontiguousarray(points, dtype=np.float32))
        return np.asarray(model.centroids, dtype=np.float32).reshape(k, -1)
    try:
        from sklearn.cluster import MiniBatchKMeans
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "fitting a bag-of-visual-words codebook needs faiss-cpu or scikit-learn; "
            "install one of them"
        ) from error
    model = MiniBatchKMeans(
        n_clusters=k,
        max_iter=iterations,
        random_state=seed,
        n_init=1,
        batch_size=max(4096, 3 * k),
    )
    model.fit(points)
    return model.cluster_centers_.astype(np.float32)
