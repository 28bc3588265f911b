"""2PKNN (Verma & Jawahar, ECCV 2012): semantic neighbourhoods, exp(-D) voting, metric learning.

Pass 1: for a query ``J`` and every label ``l``, the ``K1`` training images nearest to ``J``
among the images labelled ``l`` (the semantic group ``T_l``). Their union ``N_J`` is the
neighbourhood, so every label, rare or frequent, contributes candidates.

Pass 2: ``score_l(J) = sum_{I in N_J} theta_JI [l in Y_I] / sum_{I in N_J} theta_JI`` with
``theta_JI = exp(-D(J, I) / tau)``. The paper ranks labels by ``sum theta [l in Y_I]``; the
per-query normalisation does not change any image's ranking and makes scores comparable
across images (in [0, 1]).

Metric learning (2PKNN+ML). The distance is a non-negative combination of additive distance
components: every feature's dimensions are cut into ``G`` contiguous groups (``G = 1``: one
weight per feature) and
``c_fg(A, B)`` is that feature's distance summed over group ``g`` only (squared differences
for ``l2``/``sqeuclidean``, ``|q - x|^2 / 2`` of unit vectors for ``cosine``, absolute
differences for ``l1``, chi-square and KL terms), divided by the feature's mean training
distance and by ``F``, so ``w = 1`` is the equally weighted base metric and
``D_w = sum_fg w_fg c_fg``. The weights minimise the LMNN-style objective

    E(w) = (1 - mu) / |P| sum_{(p,q) in P} D_w(p, q)
           + mu / |P| sum_{(p,q) in P} sum_{r in I(p)} h(1 + D_w(p, q) - D_w(p, r)),  w >= 0,

with ``sum(w) = C`` fixed (pass 2's temperature sets the scale; this also excludes the
degenerate ``w = 0``). The targets ``P`` are the pass-1 semantic neighbours of training image
``p`` for its own labels (``K1`` per label, leave-one-out), the impostors ``I(p)`` the images
nearest to ``p`` that share no label with it, and ``h`` is the quadratically smoothed hinge.
It is solved with L-BFGS in ``w = C softmax(theta)``; targets and impostors are recomputed
under the learned metric for a few rounds (as LMNN does). Simplifications against the paper:
one margin of 1 for every triplet (the paper scales constraints by label overlap), impostors
taken as the nearest label-disjoint images rather than all members of the semantic
neighbourhood, and weights shared by groups of dimensions rather than one per dimension
(``ml_groups=dim`` gives that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from phototag.evaluation.decoding import top_m
from phototag.evaluation.metrics import class_f1_score, overall_f1_score
from phototag.search import KL_EPS, normalize_rows, pairwise_distances, smallest

TEMPERATURES = np.geomspace(0.003, 3.0, 25)


# ------------------------------------------------------------------------ pass 1 and 2
def semantic_groups(labels: sp.csr_matrix) -> list[np.ndarray]:
    """Training items of every label (sorted indices)."""
    csc = labels.tocsc()
    csc.sort_indices()
    return [
        csc.indices[csc.indptr[j] : csc.indptr[j + 1]].astype(np.int64) for j in range(csc.shape[1])
    ]


def semantic_neighbourhoods(dist: np.ndarray, groups: list[np.ndarray], k1: int) -> np.ndarray:
    """``[n_queries, n_labels, k1]`` training indices: per label, the `k1` group members
    nearest to each query (ties: lower index), -1 where the group has fewer (or only inf)."""
    out = np.full((len(dist), len(groups), k1), -1, dtype=np.int64)
    for label, members in enumerate(groups):
        if len(members) == 0:
            continue
        m = min(k1, len(members))
        d, i = smallest(dist[:, members], m)
        out[:, label, :m] = np.where(np.isfinite(d), members[i], -1)
    return out


@dataclass
class Neighbourhood:
    """The union ``N_J`` of each query as CSR-like arrays with the distances ``D(J, I)``."""

    rows: np.ndarray
    cols: np.ndarray
    dist: np.ndarray
    n_queries: int

    @classmethod
    def from_selection(cls, selected: np.ndarray, dist: np.ndarray) -> Neighbourhood:
        flat = np.sort(selected.reshape(len(selected), -1), axis=1)
        keep = flat >= 0
        keep[:, 1:] &= flat[:, 1:] != flat[:, :-1]
        rows = np.repeat(np.arange(len(flat)), keep.sum(axis=1))
        cols = flat[keep]
        return cls(rows, cols, dist[rows, cols].astype(np.float64), len(flat))

    @classmethod
    def concatenate(cls, parts: list[Neighbourhood]) -> Neighbourhood:
        offsets = np.cumsum([0] + [p.n_queries for p in parts])
        return cls(
            np.concatenate([p.rows + o for p, o in zip(parts, offsets, strict=False)]),
            np.concatenate([p.cols for p in parts]),
            np.concatenate([p.dist for p in parts]),
            int(offsets[-1]),
        )

    def scores(self, labels: sp.csr_matrix, temperature: float) -> np.ndarray:
        """Pass 2: normalised ``exp(-D / tau)`` votes of the neighbourhood, ``[n, L]``."""
        n_train = labels.shape[0]
        if len(self.rows) == 0:
            return np.zeros((self.n_queries, labels.shape[1]))
        row_min = np.full(self.n_queries, np.inf)
        np.minimum.at(row_min, self.rows, self.dist)
        theta = np.exp(-(self.dist - row_min[self.rows]) / temperature)
        weights = sp.csr_matrix((theta, (self.rows, self.cols)), shape=(self.n_queries, n_train))
        votes = np.asarray((weights @ labels).todense())
        total = np.asarray(weights.sum(axis=1)).ravel()
        total[total == 0] = 1.0
        return votes / total[:, None]


def select_temperature(
    hood: Neighbourhood, train_labels: sp.csr_matrix, query_labels: sp.csr_matrix
) -> tuple[float, list[float]]:
    """The grid temperature whose leave-one-out scores annotate the training queries best:
    mean of C-F1 and O-F1 at top-k, k = the mean number of labels per image (rounded)."""
    k = max(1, int(round(query_labels.sum() / max(query_labels.shape[0], 1))))
    criteria = []
    for tau in TEMPERATURES:
        predicted = top_m(hood.scores(train_labels, float(tau)), k)
        criteria.append(
            0.5
            * (class_f1_score(query_labels, predicted) + overall_f1_score(query_labels, predicted))
        )
    best = int(np.argmax(criteria))
    return float(TEMPERATURES[best]), [float(c) for c in criteria]


# -------------------------------------------------------------- additive distance components
def group_bounds(dim: int, groups: int) -> np.ndarray:
    """Start column of each of ``min(groups, dim)`` contiguous, near-equal groups."""
    g = max(1, min(int(groups), dim))
    return np.linspace(0, dim, g + 1).astype(np.int64)[:-1]


def elementwise_terms(q: np.ndarray, x: np.ndarray, metric: str) -> np.ndarray:
    """Per-dimension additive distance terms of paired rows (float32 ``[n, dim]``)."""
    if metric == "cosine":
        q, x = normalize_rows(q), normalize_rows(x)
        d = q - x
        return 0.5 * d * d
    if metric in ("l2", "sqeuclidean"):
        d = q - x
        return d * d
    if metric == "l1":
        return np.abs(q - x)
    if metric == "chi2":
        s = q + x
        d = q - x
        d *= d
        np.divide(d, s, out=d, where=s > 0)
        d[s <= 0] = 0.0
        return d
    eps = np.float32(KL_EPS)
    return q * (np.log(q + eps) - np.log(x + eps))


def weighted_pairwise(q: np.ndarray, x: np.ndarray, metric: str, w: np.ndarray) -> np.ndarray:
    """``sum_d w_d term_d(q, x)`` for all pairs (float32 inputs, ``w`` per dimension)."""
    w = w.astype(np.float32)
    if metric in ("l2", "sqeuclidean", "cosine"):
        if metric == "cosine":
            q, x, w = normalize_rows(q), normalize_rows(x), w * np.float32(0.5)
        r = np.sqrt(w)
        return pairwise_distances(q * r, x * r, "sqeuclidean", check=False)
    if metric in ("l1", "chi2"):  # both are 1-homogeneous per dimension
        return pairwise_distances(q * w, x * w, metric, check=False)
    eps = np.float32(KL_EPS)
    h = np.einsum("ij,ij->i", q * w, np.log(q + eps))
    return h[:, None] - (q * w) @ np.log(x + eps).T


def smooth_hinge(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``h(m)`` = 0 (m <= 0), m^2/2 (0 < m < 1), m - 1/2 (m >= 1), and ``h'(m)``."""
    value = np.where(m <= 0, 0.0, np.where(m < 1, 0.5 * m * m, m - 0.5))
    grad = np.clip(m, 0.0, 1.0)
    return value, grad


@dataclass
class TripletProblem:
    """Components of target pairs ``[n, T, C]`` and impostor pairs ``[n, I, C]`` (masked)."""

    targets: np.ndarray
    target_mask: np.ndarray
    impostors: np.ndarray
    impostor_mask: np.ndarray
    mu: float

    def value_and_grad(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        n_pairs = max(int(self.target_mask.sum()), 1)
        dt = self.targets @ w
        di = self.impostors @ w
        margin = 1.0 + dt[:, :, None] - di[:, None, :]
        valid = self.target_mask[:, :, None] & self.impostor_mask[:, None, :]
        h, dh = smooth_hinge(margin)
        h = np.where(valid, h, 0.0)
        dh = np.where(valid, dh, 0.0)
        pull = float(np.where(self.target_mask, dt, 0.0).sum())
        value = ((1 - self.mu) * pull + self.mu * float(h.sum())) / n_pairs
        g_t = dh.sum(axis=2) * self.mu + (1 - self.mu) * self.target_mask
        g_i = dh.sum(axis=1) * self.mu
        grad = np.einsum("pt,ptc->c", g_t, self.targets) - np.einsum(
            "pi,pic->c", g_i, self.impostors
        )
        return value, grad / n_pairs

    def solve(self, w0: np.ndarray, max_iter: int = 200) -> np.ndarray:
        """Minimise E over ``w >= 0`` with ``sum(w) = C`` (the number of components).

        Pass 2's temperature sets the scale of the distance, so only the direction of ``w``
        matters; fixing the sum also rules out the degenerate ``w = 0`` that the pull term
        prefers when no component separates targets from impostors. Parameterised as
        ``w = C softmax(theta)`` and solved with L-BFGS.
        """
        c = len(w0)
        if c == 1:
            return np.ones(1)

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w = c * softmax(theta)
            value, grad = self.value_and_grad(w)
            return value, w * (grad - (grad @ w) / c)

        start = np.log(np.maximum(w0 / max(w0.sum(), 1e-300), 1e-12))
        res = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
        return c * softmax(res.x)


def softmax(theta: np.ndarray) -> np.ndarray:
    e = np.exp(theta - theta.max())
    return e / e.sum()
