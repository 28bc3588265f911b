"""TagProp's weighted label propagation and its log-likelihood, with analytic gradients.

Notation (Guillaumin et al., ICCV 2009): image ``i`` has neighbours ``j = N(i, k)``,
``k = 1..K``, with weights ``pi_ik >= 0``, ``sum_k pi_ik = 1``. The propagated vote for word
``w`` is ``x_iw = sum_k pi_ik y_jw``. The word probability is either

* ``p_iw = eps + (1 - 2 eps) x_iw`` (the plain model, ``eps = 1e-5``), or
* ``p_iw = sigmoid(alpha_w x_iw + beta_w)`` (sigma-ML: word-specific logistic),

and training maximises ``L = sum_iw c_iw log p(y_iw)`` with ``c_iw = 1/n+`` for positive and
``1/n-`` for negative labels (``balance=True``; else ``1/(n L)``). The weights are

* rank-based: ``pi_ik = gamma_k``, ``gamma = softmax(theta)`` (the simplex constraint of the
  paper as an unconstrained parameterisation), or
* distance-based: ``pi_ik = exp(-w . d_ik) / sum_k' exp(-w . d_ik')`` over the base distances
  ``d_ik`` (one per feature type), ``w >= 0``.

Gradients, with ``G = dL/dx`` ``[n, L]`` and ``H_ik = sum_w G_iw y_{N(i,k) w}``:

* rank: ``dL/dgamma_k = sum_i H_ik``; ``dL/dtheta = gamma * (g - gamma . g)``;
* distance: ``dL/dw = sum_ik H_ik pi_ik (dbar_i - d_ik)``, ``dbar_i = sum_k pi_ik d_ik``
  (the paper's ``sum_ij (W_i pi_ij - rho_ij) d_ij`` written through ``H``);
* sigma-ML: ``dL/dx_iw = c_iw (y_iw - p_iw) alpha_w``, ``dL/dalpha_w = sum_i c_iw (y_iw -
  p_iw) x_iw``, ``dL/dbeta_w = sum_i c_iw (y_iw - p_iw)``.

Propagation and ``H`` run over the non-zero (neighbour pair, label) entries with
``np.bincount``: O(n K l) per evaluation for l labels per image, no ``[n, K, L]`` tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from phototag.models.knn.base import ragged_arange

EPS = 1e-5
SIGMOID_RIDGE = (
    1e-4  # ridge on (alpha, beta), per positive-label cost: keeps separable words finite
)


class Propagation:
    """The (query, neighbour, label) entries of a fixed neighbourhood structure."""

    def __init__(self, neighbours: np.ndarray, labels: sp.csr_matrix) -> None:
        n, k = neighbours.shape
        self.n, self.k, self.n_labels = n, k, labels.shape[1]
        flat = neighbours.ravel()
        valid = flat >= 0
        safe = np.where(valid, flat, 0)
        indptr = labels.indptr.astype(np.int64)
        counts = np.where(valid, np.diff(indptr)[safe], 0)
        self.entry_pair = np.repeat(np.arange(n * k, dtype=np.int64), counts)
        self.entry_label = labels.indices.astype(np.int64)[
            np.repeat(indptr[safe], counts) + ragged_arange(counts)
        ]
        self.entry_query = self.entry_pair // k
        self.entry_cell = self.entry_query * self.n_labels + self.entry_label
        self.valid = valid.reshape(n, k)

    def propagate(self, pi: np.ndarray) -> np.ndarray:
        """``x_iw = sum_k pi_ik y_{N(i,k) w}``: float64 ``[n, L]``."""
        x = np.bincount(
            self.entry_cell, weights=pi.ravel()[self.entry_pair], minlength=self.n * self.n_labels
        )
        return x.reshape(self.n, self.n_labels)

    def backprop(self, grad_x: np.ndarray) -> np.ndarray:
        """``H_ik = sum_w grad_x[i, w] y_{N(i,k) w}``: float64 ``[n, K]``."""
        h = np.bincount(
            self.entry_pair, weights=grad_x.ravel()[self.entry_cell], minlength=self.n * self.k
        )
        return h.reshape(self.n, self.k)


# ------------------------------------------------------------------------------ weights
def softmax(theta: np.ndarray) -> np.ndarray:
    e = np.exp(theta - theta.max())
    return e / e.sum()


def rank_weights(theta: np.ndarray, n: int) -> np.ndarray:
    return np.broadcast_to(softmax(theta), (n, len(theta)))


def distance_weights(w: np.ndarray, dist: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``-w . d_ik`` over the valid neighbours."""
    n, k, f = dist.shape
    z = -(dist.reshape(n * k, f) @ w).reshape(n, k)
    z[~valid] = -np.inf
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- likelihood
@dataclass
class Targets:
    """Training labels with their costs: ``c_iw = cost_pos`` if ``y_iw = 1`` else ``cost_neg``."""

    y: np.ndarray  # float64 [n, L] 0/1
    positive: np.ndarray  # flat indices of the positive cells of y
    cost_pos: float
    cost_neg: float

    @classmethod
    def from_labels(cls, labels: sp.csr_matrix, balance: bool) -> Targets:
        y = labels.toarray().astype(np.float64)
        positive = np.flatnonzero(y)
        n_pos = len(positive)
        n_neg = y.size - n_pos
        if balance and n_pos > 0 and n_neg > 0:
            return cls(y, positive, 1.0 / n_pos, 1.0 / n_neg)
        uniform = 1.0 / max(y.size, 1)
        return cls(y, positive, uniform, uniform)

    @property
    def cost(self) -> np.ndarray:
        return np.where(self.y > 0, self.cost_pos, self.cost_neg)


def probabilities(x: np.ndarray, alpha: np.ndarray | None, beta: np.ndarray | None) -> np.ndarray:
    if alpha is None or beta is None:
        return EPS + (1.0 - 2.0 * EPS) * x
    return 1.0 / (1.0 + np.exp(-(alpha * x + beta)))


def log_likelihood(
    x: np.ndarray, t: Targets, alpha: np.ndarray | None = None, beta: np.ndarray | None = None
) -> tuple[float, np.ndarray, np.ndarray | None]:
    """``(L, dL/dx, dL/dz)``; ``dL/dz`` (z = alpha x + beta) only for sigma-ML.

    Written as a sum over all cells with the negative cost plus a correction on the (few)
    positive cells, so each evaluation makes one pass of transcendental functions.
    """
    pos = t.positive
    if alpha is None or beta is None:
        p = EPS + (1.0 - 2.0 * EPS) * x
        q = 1.0 - p
        log_q = np.log(q)
        p_pos = p.ravel()[pos]
        value = t.cost_neg * (log_q.sum() - log_q.ravel()[pos].sum())
        value += t.cost_pos * np.log(p_pos).sum()
        grad = np.divide(-t.cost_neg * (1.0 - 2.0 * EPS), q)
        grad.ravel()[pos] = t.cost_pos * (1.0 - 2.0 * EPS) / p_pos
        return float(value), grad, None
    z = alpha * x + beta
    # softplus(z) = max(z, 0) + log1p(exp(-|z|)); -log sigmoid(z) = softplus(z) - z;
    # -log(1 - sigmoid(z)) = softplus(z)
    e = np.exp(-np.abs(z))
    softplus = np.maximum(z, 0.0) + np.log1p(e)
    sig = np.where(z >= 0, 1.0, e) / (1.0 + e)
    z_pos = z.ravel()[pos]
    sp_pos = softplus.ravel()[pos]
    loss = t.cost_neg * (softplus.sum() - sp_pos.sum()) + t.cost_pos * (sp_pos - z_pos).sum()
    sig_pos = sig.ravel()[pos]  # a copy (fancy indexing)
    dz = sig
    dz *= -t.cost_neg
    dz.ravel()[pos] = t.cost_pos * (1.0 - sig_pos)
    return -float(loss), dz * alpha, dz


# ------------------------------------------------------------------------- the problem
class TagPropProblem:
    """Objective and gradient of one TagProp variant on a fixed neighbourhood structure.

    Parameter vector layout: ``[weights (K for rank, F for distance), alpha (L), beta (L)]``,
    the last two only with `sigmoid`.
    """

    def __init__(
        self,
        propagation: Propagation,
        targets: Targets,
        weighting: str,
        dist: np.ndarray | None = None,
    ) -> None:
        self.prop = propagation
        self.t = targets
        self.weighting = weighting
        self.dist = None if dist is None else np.where(propagation.valid[..., None], dist, 0.0)
        self.n_weights = propagation.k if weighting == "rank" else dist.shape[2]  # type: ignore[union-attr]

    def weights(self, params: np.ndarray) -> np.ndarray:
        if self.weighting == "rank":
            pi = np.array(rank_weights(params, self.prop.n))
            return np.where(self.prop.valid, pi, 0.0)
        assert self.dist is not None
        return distance_weights(params, self.dist, self.prop.valid)

    def split(self, params: np.ndarray, sigmoid: bool):
        w = params[: self.n_weights]
        if not sigmoid:
            return w, None, None
        n_labels = self.prop.n_labels
        rest = params[self.n_weights :]
        return w, rest[:n_labels], rest[n_labels:]

    def value_and_grad(
        self, params: np.ndarray, sigmoid: bool, train: str = "all"
    ) -> tuple[float, np.ndarray]:
        """``(-L, -dL/dparams)``; `train` = ``"all"``, ``"weights"`` or ``"sigmoid"``."""
        w, alpha, beta = self.split(params, sigmoid)
        pi = self.weights(w)
        x = self.prop.propagate(pi)
        value, grad_x, grad_z = log_likelihood(x, self.t, alpha, beta)
        grads = []
        if train in ("all", "weights"):
            grads.append(self._weight_grad(w, pi, self.prop.backprop(grad_x)))
        else:
            grads.append(np.zeros_like(w))
        if sigmoid:
            assert grad_z is not None and alpha is not None and beta is not None
            if train in ("all", "sigmoid"):
                reg = self.ridge
                value -= 0.5 * reg * float(alpha @ alpha + beta @ beta)
                grads.append((grad_z * x).sum(axis=0) - reg * alpha)
                grads.append(grad_z.sum(axis=0) - reg * beta)
            else:
                grads.extend([np.zeros_like(alpha), np.zeros_like(beta)])
        return -value, -np.concatenate(grads)

    def log_likelihood(self, params: np.ndarray, sigmoid: bool) -> float:
        """The training log-likelihood ``L`` at `params` (without the sigmoid ridge)."""
        return -float(self.value_and_grad(params, sigmoid, "weights")[0])

    def _weight_grad(self, w: np.ndarray, pi: np.ndarray, h: np.ndarray) -> np.ndarray:
        if self.weighting == "rank":
            g = h.sum(axis=0)
            gamma = softmax(w)
            return gamma * (g - gamma @ g)
        assert self.dist is not None
        a = h * pi
        dbar = np.einsum("ik,ikf->if", pi, self.dist)
        return (a.sum(axis=1) @ dbar) - np.einsum("ik,ikf->f", a, self.dist)

    # ---------------------------------------------------------------------- fitting
    def fit(
        self, sigmoid: bool, max_iter: int = 200, rounds: int = 3
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, dict]:
        """Maximise L: the weights of the plain model, then (sigma-ML) alternately the word
        sigmoids (per-word Newton) and the weights (L-BFGS-B), `rounds` times."""
        n_labels = self.prop.n_labels
        w0 = self._initial_weights()
        bounds = [(None, None)] * self.n_weights
        if self.weighting == "distance":
            bounds = [(0.0, None)] * self.n_weights
        res = minimize(
            self.value_and_grad, w0, args=(False,), jac=True, method="L-BFGS-B",
            bounds=bounds, options={"maxiter": max_iter},
        )  # fmt: skip
        info = {"loglik_initial": self.log_likelihood(w0, False)}
        w = res.x
        info.update(loglik_plain=-float(res.fun), iterations=int(res.nit))
        if not sigmoid:
            return w, None, None, info
        x = self.prop.propagate(self.weights(w))
        alpha, beta = np.ones(n_labels), self._initial_bias()
        info["loglik_sigmoid_initial"] = self.log_likelihood(np.r_[w, alpha, beta], True)
        history = []
        for _ in range(rounds):
            alpha, beta = fit_word_sigmoids(x, self.t, alpha, beta, self.ridge)
            res = minimize(
                self.value_and_grad, np.r_[w, alpha, beta], args=(True, "weights"), jac=True,
                method="L-BFGS-B", options={"maxiter": max_iter},
                bounds=bounds + [(a, a) for a in alpha] + [(b, b) for b in beta],
            )  # fmt: skip
            w = res.x[: self.n_weights]
            x = self.prop.propagate(self.weights(w))
            history.append(self.log_likelihood(np.r_[w, alpha, beta], True))
        alpha, beta = fit_word_sigmoids(x, self.t, alpha, beta, self.ridge)
        info.update(
            loglik_sigmoid=self.log_likelihood(np.r_[w, alpha, beta], True),
            loglik_sigmoid_rounds=history,
        )
        return w, alpha, beta, info

    @property
    def ridge(self) -> float:
        """The (alpha, beta) ridge, in units of the cost of one positive label."""
        return SIGMOID_RIDGE * self.t.cost_pos

    def _initial_weights(self) -> np.ndarray:
        if self.weighting == "rank":
            return np.zeros(self.n_weights)
        # a coarse search over a common scale t (w = t * 1) before L-BFGS-B
        best, best_value = None, np.inf
        for t in np.geomspace(0.1, 1000.0, 13):
            w = np.full(self.n_weights, t / self.n_weights)
            value = self.value_and_grad(w, False)[0]
            if value < best_value:
                best, best_value = w, value
        assert best is not None
        return best

    def _initial_bias(self) -> np.ndarray:
        """Per-word log-odds of the cost-weighted positive rate, a neutral start for beta."""
        positives = self.t.y.sum(axis=0)
        pos = self.t.cost_pos * positives
        neg = self.t.cost_neg * (len(self.t.y) - positives)
        return np.log((pos + 1e-12) / (neg + 1e-12))


def fit_word_sigmoids(
    x: np.ndarray,
    t: Targets,
    alpha: np.ndarray,
    beta: np.ndarray,
    ridge: float,
    max_iter: int = 50,
    tol: float = 1e-8,
) -> tuple[np.ndarray, np.ndarray]:
    """Per word ``w``, maximise ``sum_i c_iw log p(y_iw) - ridge (alpha_w^2 + beta_w^2) / 2``
    with ``p = sigmoid(alpha_w x_iw + beta_w)``, ``alpha_w >= 0``.

    One 2 x 2 Newton system per word, all words at once; a word whose objective would drop
    halves its step; a word stops when its Newton decrement (twice the predicted gain) is
    below `tol` times the cost of one positive label.
    """
    alpha, beta = alpha.astype(np.float64).copy(), beta.astype(np.float64).copy()
    y = t.y

    def objective(cols: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        z = a * x[:, cols] + b
        softplus = np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))
        yc = y[:, cols]
        loss = t.cost_neg * softplus.sum(axis=0)
        loss += ((t.cost_pos * (softplus - z) - t.cost_neg * softplus) * yc).sum(axis=0)
        return -loss - 0.5 * ridge * (a * a + b * b)

    active = np.arange(len(alpha))
    current = objective(active, alpha, beta)
    for _ in range(max_iter):
        if len(active) == 0:
            break
        xa, ya = x[:, active], y[:, active]
        a, b = alpha[active], beta[active]
        p = 1.0 / (1.0 + np.exp(-(a * xa + b)))
        cost = np.where(ya > 0, t.cost_pos, t.cost_neg)
        r = cost * (ya - p)
        g_a = (r * xa).sum(axis=0) - ridge * a
        g_b = r.sum(axis=0) - ridge * b
        h = cost * p * (1.0 - p)
        h_aa = (h * xa * xa).sum(axis=0) + ridge
        h_ab = (h * xa).sum(axis=0)
        h_bb = h.sum(axis=0) + ridge
        det = h_aa * h_bb - h_ab * h_ab
        d_a = (h_bb * g_a - h_ab * g_b) / det
        d_b = (h_aa * g_b - h_ab * g_a) / det
        decrement = g_a * d_a + g_b * d_b
        moving = decrement > tol * t.cost_pos
        words, d_a, d_b = active[moving], d_a[moving], d_b[moving]
        step = 1.0
        pending = np.ones(len(words), dtype=bool)
        for _ in range(12):
            cols = words[pending]
            a_new = np.maximum(alpha[cols] + step * d_a[pending], 0.0)
            b_new = beta[cols] + step * d_b[pending]
            value = objective(cols, a_new, b_new)
            better = value >= current[cols]
            ok = cols[better]
            alpha[ok], beta[ok], current[ok] = a_new[better], b_new[better], value[better]
            pending[np.flatnonzero(pending)[better]] = False
            if not pending.any():
                break
            step *= 0.5
        active = words[~pending]  # a word no step improves has converged (to rounding)
    return alpha, beta
