"""CCA, kernel CCA and CCA-KNN annotators (Murthy, Maji & Manmatha, ICMR 2015).

All three embed images (view X: a feature matrix) and their label sets (view T: binary
label vectors "BV", or the mean word embedding of the labels "W2V") in one CCA space and
annotate a new image from the training items nearest to it there:

- ``cca``: regularised linear CCA (Eq. 1-2, Eq. 4); labels transferred greedily from the
  nearest training items by correlation distance, the paper's "CCA" rows.
- ``kcca``: the same on a kernel map of the image view (Eq. 3): exponential chi-square
  kernel (RBF for features with negative values), made low-rank with Nystroem landmarks
  so the n x n kernel is never formed.
- ``cca_knn``: Eq. 5: the K nearest training items of every label cluster form the
  neighbourhood; each neighbour votes ``exp(-D)`` for its labels.

The equations, hyperparameters and costs are written out in ``docs/models/cca.md``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qsl

import numpy as np
import scipy.sparse as sp

from phototag.data import AnnotationSet, Vocabulary
from phototag.errors import InvalidInputError, check_choice, check_float, check_int
from phototag.models.base import Annotator, feature_matrix
from phototag.models.cca import linalg as la
from phototag.models.registry import register_annotator
from phototag.search import smallest

__all__ = [
    "CCAAnnotator",
    "CCAKNNAnnotator",
    "KCCAAnnotator",
    "label_embedding_matrix",
]

NORMALIZATIONS = ("l2", "l1", None)
MATCHES = ("text", "image")
METHODS = ("transfer", "label_distance")
DISTANCES = ("correlation", "cosine")
KERNEL_CHOICES = ("auto", *la.KERNELS)
BASES = ("cca", "kcca")
VOTES = ("neighbours", "label")
NPY_PREFIX = "npy:"
# Relative weight of training frequency when breaking ties between labels transferred
# from the same neighbour (plain CCA/KCCA): small enough never to reorder distinct
# neighbours in practice, large enough to survive float32.
TIE_BREAK = 1e-4


# ------------------------------------------------------------------------ validation


# ------------------------------------------------------------------------- text view
def label_embedding_matrix(spec: str, vocabulary: Vocabulary) -> tuple[np.ndarray, str]:
    """Word vectors for every label of `vocabulary` from an embedding spec, and a summary.

    `spec` is any `phototag.features.embeddings.create_embedding` spec (``glove50``,
    ``wordnet``, ``file:PATH``, ...) or ``npy:VECTORS.npy?words=WORDS.txt``: a float
    matrix whose row ``i`` is the vector of line ``i`` of the word list (rows past the
    end of the list are ignored; without ``words=`` the rows must be the vocabulary, in
    order). Labels without a vector get zero rows and a warning.
    """
    names = list(vocabulary.names)
    if spec.startswith(NPY_PREFIX):
        vectors, found = _npy_vectors(spec, names)
        summary = f"W2V {spec} (dim {vectors.shape[1]}, {int(found.sum())}/{len(names)} found)"
        oov = [w for w, ok in zip(names, found, strict=True) if not ok]
    else:
        from phototag.features.embeddings import create_embedding

        vectors, report = create_embedding(spec).embed_vocabulary(names)
        summary = f"W2V {report}"
        oov = list(report.oov)
    if oov:
        shown = ", ".join(repr(w) for w in oov[:10]) + (" ..." if len(oov) > 10 else "")
        warnings.warn(
            f"embedding {spec!r}: {len(oov)} of {len(names)} labels have no vector ({shown}); "
            "images with only such labels get a zero text view",
            UserWarning,
            stacklevel=3,
        )
    if not np.isfinite(vectors).all():
        raise InvalidInputError("embedding", "finite word vectors", f"NaN/inf in {spec!r}")
    return np.asarray(vectors, dtype=np.float64), summary


def _npy_vectors(spec: str, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    path_text, _, query = spec[len(NPY_PREFIX) :].partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - {"words"})
    if unknown or not path_text:
        raise InvalidInputError(
            "embedding", "npy:VECTORS.npy or npy:VECTORS.npy?words=WORDS.txt", repr(spec)
        )
    path = Path(path_text).expanduser()
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidInputError("embedding", "a readable .npy matrix", f"{path}: {exc}") from None
    if matrix.ndim != 2 or matrix.dtype.kind not in "fiu":
        raise InvalidInputError(
            "embedding", "a 2-D numeric .npy matrix", f"{matrix.dtype} {matrix.shape}"
        )
    if "words" in options:
        words_path = Path(options["words"]).expanduser()
        try:
            words = [w.strip() for w in words_path.read_text(encoding="utf-8").splitlines()]
        except OSError as exc:
            raise InvalidInputError("embedding words", "a readable word list", str(exc)) from None
        words = [w for w in words if w]
        if len(words) > matrix.shape[0]:
            raise InvalidInputError(
                "embedding",
                f"at least one row per word of {words_path} ({len(words)})",
                f"{matrix.shape[0]} rows",
            )
    elif matrix.shape[0] == len(names):
        words = names
    else:
        raise InvalidInputError(
            "embedding",
            f"a matrix with one row per label ({len(names)})",
            f"{matrix.shape[0]} rows in {path}",
            "Add ?words=WORDS.txt naming the word of each row.",
        )
    row_of = {w: i for i, w in enumerate(words)}
    found = np.array([name in row_of for name in names], dtype=bool)
    vectors = np.zeros((len(names), matrix.shape[1]), dtype=np.float64)
    rows = [row_of[name] for name in names if name in row_of]
    vectors[found] = matrix[rows]
    return vectors, found


def _as_float32_values(x: np.ndarray) -> np.ndarray:
    """float64 array holding `x` rounded to float32 precision."""
    return x.astype(np.float32).astype(np.float64)


# --------------------------------------------------------------------------- models
class _CCAFamily(Annotator):
    """Shared machinery: the two views, the CCA space, neighbour search and scoring."""

    extra_state: ClassVar[tuple[str, ...]] = ("image_map_", "gamma_", "text_view_")

    # defaults of attributes that only some models have as constructor arguments
    embedding: str | None = None
    kernel: str = "auto"
    gamma: float | None = None
    n_landmarks: int = 1500
    seed: int = 0
    method: str = "transfer"

    def _validate(self) -> None:
        if not isinstance(self.features, str) or not self.features:
            raise InvalidInputError("features", "a feature key string", repr(self.features))
        if self.embedding is not None and not isinstance(self.embedding, str):
            raise InvalidInputError(
                "embedding",
                "None (binary label vectors) or an embedding spec",
                repr(self.embedding),
            )
        self.dim = None if self.dim is None else check_int("dim", self.dim, 1)
        self.reg_x = check_float("reg_x", self.reg_x, 0.0, strict=False)
        self.reg_t = check_float("reg_t", self.reg_t, 0.0, strict=False)
        self.power = check_float("power", self.power, 0.0, strict=False)
        check_choice("normalize", self.normalize, NORMALIZATIONS)
        check_choice("match", self.match, MATCHES)
        check_choice("distance", self.distance, DISTANCES)
        check_choice("kernel", self.kernel, KERNEL_CHOICES)
        self.gamma = None if self.gamma is None else check_float("gamma", self.gamma, 0.0)
        self.n_landmarks = check_int("n_landmarks", self.n_landmarks, 1)
        self.seed = check_int("seed", self.seed, 0)
        check_choice("method", self.method, METHODS)

    def _kernelized(self) -> bool:
        return False

    # ------------------------------------------------------------------ features
    def _features(self, data: AnnotationSet, argument: str) -> np.ndarray:
        dim = int(self.input_dim_[0]) if hasattr(self, "input_dim_") else None
        return feature_matrix(data, self.features, argument, dim).astype(np.float64)

    def _normalized(self, x: np.ndarray) -> np.ndarray:
        if self.normalize is None:
            return x
        order = 2 if self.normalize == "l2" else 1
        norms = np.linalg.norm(x, ord=order, axis=1, keepdims=True)
        return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)

    def _fit_image_map(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The image view the CCA sees, and for kernel models the Nystroem map.

        Linear: the normalised features. Kernel: ``Phi = K(x, landmarks) @ N`` with
        ``N = K_mm^-1/2``, so that ``Phi Phi^T`` is the Nystroem approximation of the
        n x n kernel; regularised linear CCA on ``Phi`` is regularised KCCA (Eq. 3)
        restricted to the span of the landmarks.
        """
        x = self._normalized(x)
        if not self._kernelized():
            self.image_map_, self.gamma_ = "identity", 0.0
            return x, None
        kernel = self.kernel
        if kernel == "auto":
            kernel = "chi2" if x.min() >= 0 else "rbf"
        if kernel == "chi2" and x.min() < 0:
            raise InvalidInputError(
                "kernel",
                "non-negative features for the chi-square kernel",
                f"features[{self.features!r}] with values down to {x.min():.3g}",
                'Use kernel="rbf" (or "auto"), or non-negative features.',
            )
        n = len(x)
        m = min(self.n_landmarks, n)
        chosen = np.sort(np.random.default_rng(self.seed).choice(n, size=m, replace=False))
        x = _as_float32_values(x)  # landmarks are stored as float32: same values at test time
        landmarks = x[chosen]
        gamma = 0.0
        if kernel == "linear":
            k_mm = landmarks @ landmarks.T
        else:
            d_mm = la.kernel_distances(kernel, landmarks, landmarks)
            mean_distance = max(la.mean_offdiagonal(d_mm), 1e-12)
            gamma = self.gamma if self.gamma is not None else 1.0 / mean_distance
            k_mm = np.exp(-gamma * d_mm)
        self.image_map_, self.gamma_ = kernel, float(gamma)
        self.landmarks_ = landmarks.astype(np.float32)
        nystroem = la.nystroem_map(k_mm)
        mapped = np.empty((n, nystroem.shape[1]))
        mapped[chosen] = k_mm @ nystroem
        others = np.setdiff1d(np.arange(n), chosen)
        for r0, r1 in la.row_blocks(len(others), m):
            rows = others[r0:r1]
            mapped[rows] = self._kernel_rows(x[rows]) @ nystroem
        return mapped, nystroem

    def _kernel_rows(self, x: np.ndarray) -> np.ndarray:
        """``k(x, landmarks)`` for normalised rows `x`."""
        landmarks = self.landmarks_.astype(np.float64)
        return la.kernel_matrix(self.image_map_, x, landmarks, self.gamma_)

    # ------------------------------------------------------------------- fitting
    def _text_view(self, labels: sp.csr_matrix) -> np.ndarray:
        """BV: the binary label vector; W2V: the mean of the labels' word vectors."""
        y = sp.csr_matrix(labels, dtype=np.float64)
        if not hasattr(self, "label_embeddings_"):
            return y.toarray()
        counts = np.asarray(y.sum(axis=1)).reshape(-1, 1)
        return np.asarray(y @ self.label_embeddings_.astype(np.float64)) / np.maximum(counts, 1)

    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        self._validate()
        for key in ("label_embeddings_", "landmarks_", "input_dim_"):
            self.__dict__.pop(key, None)
        self._clusters = None
        x = self._features(train, "train")
        labelled = np.flatnonzero(train.label_counts() > 0)
        if len(labelled) < 2:
            raise InvalidInputError(
                "train", "at least two items with labels", f"{len(labelled)} labelled items"
            )
        x, labels = x[labelled], train.labels[labelled]
        if self.embedding is None:
            self.text_view_ = "BV"
        else:
            vectors, self.text_view_ = label_embedding_matrix(self.embedding, train.vocabulary)
            self.label_embeddings_ = vectors.astype(np.float32)
        t = self._text_view(labels)
        xf, nystroem = self._fit_image_map(x)
        mean_x = xf.mean(axis=0)
        self.mean_t_ = t.mean(axis=0)
        solution = la.regularized_cca(
            xf - mean_x, t - self.mean_t_, self.reg_x, self.reg_t, self.dim
        )
        # image projection = features (or kernel values vs landmarks) @ weights_x_ - offset_x_
        self.weights_x_ = solution.weights_x if nystroem is None else nystroem @ solution.weights_x
        self.offset_x_ = mean_x @ solution.weights_x
        self.weights_t_ = solution.weights_t
        self.correlations_ = solution.correlations
        self.scale_ = solution.correlations**self.power
        if self.match == "text":
            reference = (t - self.mean_t_) @ self.weights_t_
        else:
            reference = (xf - mean_x) @ solution.weights_x
        self.reference_ = la.prepare_rows(reference * self.scale_, self.distance)
        self.reference_labels_indptr_ = labels.indptr.astype(np.int64)
        self.reference_labels_indices_ = labels.indices.astype(np.int64)
        counts = np.bincount(labels.indices, minlength=train.n_labels)
        self.label_frequency_ = (counts / len(labelled)).astype(np.float32)
        self.input_dim_ = np.array([x.shape[1]], dtype=np.int64)

    # ---------------------------------------------------------------- projection
    def transform(self, inputs: AnnotationSet) -> np.ndarray:
        """Images of `inputs` in the CCA space (Eq. 4, ``T = (V_t - mu_X) W_x``), scaled."""
        self._check_fitted()
        x = self._normalized(self._features(inputs, "input"))
        if self.image_map_ == "identity":
            out = x @ self.weights_x_
        else:
            x = _as_float32_values(x)
            if self.image_map_ == "chi2" and x.min() < 0:
                raise InvalidInputError(
                    f"features[{self.features!r}]",
                    "non-negative values (the model uses a chi-square kernel)",
                    f"values down to {x.min():.3g}",
                )
            out = np.empty((len(x), self.weights_x_.shape[1]))
            for r0, r1 in la.row_blocks(len(x), len(self.landmarks_)):
                out[r0:r1] = self._kernel_rows(x[r0:r1]) @ self.weights_x_
        return (out - self.offset_x_) * self.scale_

    def transform_labels(self, labels: sp.spmatrix | np.ndarray) -> np.ndarray:
        """Label sets (rows of a multi-hot matrix) in the CCA space, ``(Y - mu_Y) W_y``."""
        self._check_fitted()
        t = self._text_view(sp.csr_matrix(labels, dtype=bool))
        return (t - self.mean_t_) @ self.weights_t_ * self.scale_

    def _reference_labels(self) -> sp.csr_matrix:
        n = len(self.reference_labels_indptr_) - 1
        data = np.ones(len(self.reference_labels_indices_), dtype=bool)
        return sp.csr_matrix(
            (data, self.reference_labels_indices_, self.reference_labels_indptr_),
            shape=(n, len(self.vocabulary_)),
        )

    def _cluster_members(self) -> tuple[np.ndarray, np.ndarray]:
        """Label clusters: training rows of each label, as CSC ``(indptr, indices)``."""
        if getattr(self, "_clusters", None) is None:
            csc = self._reference_labels().tocsc()
            csc.sort_indices()
            self._clusters = (csc.indptr.astype(np.int64), csc.indices.astype(np.int64))
        return self._clusters

    def _distance_blocks(self, inputs: AnnotationSet):
        """``(start, stop, D)``: correlation/cosine distances of query blocks to training."""
        queries = la.prepare_rows(self.transform(inputs), self.distance)
        reference = self.reference_
        # blocks also bound the (block x label-assignments) gathers of the scorers
        width = max(len(reference), len(self.reference_labels_indices_))
        for r0, r1 in la.row_blocks(len(queries), width):
            yield r0, r1, 1.0 - queries[r0:r1] @ reference.T

    def _transfer_scores(self, inputs: AnnotationSet) -> np.ndarray:
        """Greedy label transfer as scores: ``exp(-D)`` of each label's nearest member.

        Decoding the top k reproduces the paper's procedure (tags of the nearest item by
        training frequency, then the next nearest items) up to near-ties of 1e-4.
        """
        indptr, indices = self._cluster_members()
        present = np.flatnonzero(np.diff(indptr) > 0)
        scores = np.zeros((inputs.n_items, len(self.vocabulary_)), dtype=np.float64)
        bonus = 1.0 + TIE_BREAK * self.label_frequency_ / max(self.label_frequency_.max(), 1e-12)
        for r0, r1, dist in self._distance_blocks(inputs):
            gathered = dist[:, indices]
            nearest = np.minimum.reduceat(gathered, indptr[present], axis=1)
            scores[r0:r1, present] = np.exp(-nearest) * bonus[present]
        return scores

    def _label_distance_scores(self, inputs: AnnotationSet) -> np.ndarray:
        """``exp(-D(T, Z_w))`` to every label's own projected text vector ``Z = E W_y``."""
        eye = sp.identity(len(self.vocabulary_), format="csr", dtype=bool)
        labels = la.prepare_rows(self.transform_labels(eye), self.distance)
        queries = la.prepare_rows(self.transform(inputs), self.distance)
        return np.exp(-(1.0 - queries @ labels.T))


@register_annotator("cca")
class CCAAnnotator(_CCAFamily):
    """Regularised linear CCA between image features and label vectors (BV or W2V).

    Args:
        features: key of the feature matrix in ``AnnotationSet.features``.
        embedding: None for binary label vectors (BV), else a word-embedding spec whose
            mean over an image's labels is the text view (W2V): ``glove50``, ``wordnet``,
            ``file:PATH``, ``npy:VECTORS.npy?words=WORDS.txt`` (see `label_embedding_matrix`).
        dim: number of canonical directions kept (None: all, ``min(p, q)``).
        reg_x, reg_t: ridge on each view's covariance, relative to its total variance
            (``C + reg * trace(C) * I``).
        power: projections are scaled by ``correlation ** power`` (Gong et al.; 0 = none).
        normalize: ``"l2"``/``"l1"`` row normalisation of the features before centring,
            or None.
        match: compare a test image with the training items' text projections V
            (``"text"``, the paper) or with their image projections U (``"image"``).
        method: ``"transfer"`` (labels of the nearest training items, the paper) or
            ``"label_distance"`` (distance to each label's own projected vector).
        distance: ``"correlation"`` (the paper) or ``"cosine"``.
    """

    def __init__(
        self,
        features: str = "efficientnet_lite2",
        embedding: str | None = None,
        dim: int | None = None,
        reg_x: float = 1e-4,
        reg_t: float = 1e-3,
        power: float = 1.0,
        normalize: str | None = "l2",
        match: str = "text",
        method: str = "transfer",
        distance: str = "correlation",
    ) -> None:
        self.features = features
        self.embedding = embedding
        self.dim = dim
        self.reg_x = reg_x
        self.reg_t = reg_t
        self.power = power
        self.normalize = normalize
        self.match = match
        self.method = method
        self.distance = distance
        self._validate()

    def _scores(self, inputs: AnnotationSet) -> np.ndarray:
        if self.method == "label_distance":
            return self._label_distance_scores(inputs)
        return self._transfer_scores(inputs)


@register_annotator("kcca")
class KCCAAnnotator(CCAAnnotator):
    """Regularised kernel CCA (Eq. 3) with a Nystroem low-rank kernel on the image view.

    Args (besides those of `CCAAnnotator`):
        kernel: ``"chi2"`` (``exp(-gamma chi2(x, y))``), ``"rbf"``
            (``exp(-gamma |x - y|^2)``), ``"linear"``, or ``"auto"``: chi2 when every
            training feature is >= 0, else rbf.
        gamma: kernel width; None = 1 / mean distance between the landmarks.
        n_landmarks: Nystroem landmarks m (random training items; m = n is exact KCCA).
            Memory O(n m), time O(n m p + m^3).
        seed: seed of the landmark sample.
    """

    def __init__(
        self,
        features: str = "efficientnet_lite2",
        embedding: str | None = None,
        dim: int | None = None,
        reg_x: float = 1e-4,
        reg_t: float = 1e-3,
        power: float = 1.0,
        normalize: str | None = "l2",
        kernel: str = "auto",
        gamma: float | None = None,
        n_landmarks: int = 1500,
        seed: int = 0,
        match: str = "text",
        method: str = "transfer",
        distance: str = "correlation",
    ) -> None:
        self.kernel = kernel
        self.gamma = gamma
        self.n_landmarks = n_landmarks
        self.seed = seed
        super().__init__(
            features, embedding, dim, reg_x, reg_t, power, normalize, match, method, distance
        )

    def _kernelized(self) -> bool:
        return True


@register_annotator("cca_knn")
class CCAKNNAnnotator(_CCAFamily):
    """CCA-KNN (Eq. 5): label-cluster neighbours in the CCA or KCCA space vote exp(-D).

    For a test image with projection T, the `k` training items nearest to T (correlation
    distance to their projections) within each label cluster form the neighbourhood N;
    label w scores ``sum_{i in N} exp(-D(T, V_i) / sigma) [w in labels(i)]``.
    ``vote="label"`` instead sums over the `k` nearest of w's own cluster only.

    Args: those of `CCAAnnotator` / `KCCAAnnotator` (`base` picks the space; the kernel
    arguments apply to ``base="kcca"``), and
        k: neighbours per label cluster (K of the paper).
        vote: ``"neighbours"`` (Eq. 5) or ``"label"``.
        sigma: distance scale of the vote, ``exp(-D / sigma)``; 1 = the paper.
    """

    def __init__(
        self,
        features: str = "efficientnet_lite2",
        embedding: str | None = None,
        base: str = "cca",
        dim: int | None = None,
        reg_x: float = 1e-4,
        reg_t: float = 1e-3,
        power: float = 1.0,
        normalize: str | None = "l2",
        kernel: str = "auto",
        gamma: float | None = None,
        n_landmarks: int = 1500,
        seed: int = 0,
        match: str = "text",
        distance: str = "correlation",
        k: int = 3,
        vote: str = "neighbours",
        sigma: float = 0.1,
    ) -> None:
        self.features = features
        self.embedding = embedding
        self.base = base
        self.dim = dim
        self.reg_x = reg_x
        self.reg_t = reg_t
        self.power = power
        self.normalize = normalize
        self.kernel = kernel
        self.gamma = gamma
        self.n_landmarks = n_landmarks
        self.seed = seed
        self.match = match
        self.distance = distance
        self.k = k
        self.vote = vote
        self.sigma = sigma
        self._validate()

    def _validate(self) -> None:
        super()._validate()
        check_choice("base", self.base, BASES)
        self.k = check_int("k", self.k, 1)
        check_choice("vote", self.vote, VOTES)
        self.sigma = check_float("sigma", self.sigma, 0.0)

    def _kernelized(self) -> bool:
        return self.base == "kcca"

    def _scores(self, inputs: AnnotationSet) -> np.ndarray:
        indptr, indices = self._cluster_members()
        n_labels = len(self.vocabulary_)
        reference_labels = self._reference_labels().astype(np.float64)
        scores = np.zeros((inputs.n_items, n_labels), dtype=np.float64)
        for r0, r1, dist in self._distance_blocks(inputs):
            rows = np.arange(r1 - r0)[:, None]
            weight = np.exp(-dist.astype(np.float64) / self.sigma)
            chosen = np.zeros(dist.shape, dtype=bool)
            for w in range(n_labels):
                members = indices[indptr[w] : indptr[w + 1]]
                if len(members) == 0:
                    continue
                if len(members) > self.k:
                    # ties to the lower position: items with the same label set share a
                    # text projection, and every label cluster must pick the same ones
                    nearest = members[smallest(dist[:, members], self.k)[1]]
                else:
                    nearest = np.broadcast_to(members, (r1 - r0, len(members)))
                if self.vote == "label":
                    scores[r0:r1, w] = weight[rows, nearest].sum(axis=1)
                else:
                    chosen[rows, nearest] = True
            if self.vote == "neighbours":
                votes = reference_labels.T @ (weight * chosen).T  # sparse @ dense
                scores[r0:r1] = np.asarray(votes).T
        return scores
