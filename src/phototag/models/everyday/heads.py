"""Logistic heads on pooled features, all keywords at once, each on its own rows.

A keyword's head learns only from the photos whose dataset labels that keyword (a
boolean `known` mask), so Corel-5k, which has no "indoor" label, neither teaches nor
contradicts the indoor head. One L-BFGS solve fits every head together (the loss is a
sum over keywords), which is fast because all heads read the same features.
"""

from __future__ import annotations

import numpy as np


def fit_heads(
    x: np.ndarray,
    y: np.ndarray,
    known: np.ndarray,
    weight: np.ndarray,
    l2: float,
    start: tuple[np.ndarray, np.ndarray] | None = None,
    max_iter: int = 500,
) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``[d, k]`` and biases ``[k]`` minimising the `weight`-ed logistic loss over
    the `known` entries of `y` (``[n, k]``) plus ``l2/2 * ||W||^2`` per keyword, from
    `start` (weights, biases) when given. Products run in float32, sums in float64."""
    from scipy.optimize import minimize  # training only: annotating never loads it
    from scipy.special import expit, log_expit

    x = np.asarray(x, dtype=np.float32)
    d = x.shape[1]
    k = y.shape[1]
    w = (known * weight[:, None]).astype(np.float64)
    w /= np.maximum(w.sum(axis=0, keepdims=True), 1e-12)  # each keyword's loss is a mean
    target = y.astype(np.float64)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a = theta[: d * k].reshape(d, k)
        b = theta[d * k :]
        z = (x @ a.astype(np.float32)).astype(np.float64) + b
        value = -(w * (target * log_expit(z) + (1 - target) * log_expit(-z))).sum()
        residual = w * (expit(z) - target)
        grad_a = (x.T @ residual.astype(np.float32)).astype(np.float64) + l2 * a
        value += 0.5 * l2 * float((a * a).sum())
        return float(value), np.concatenate([grad_a.ravel(), residual.sum(axis=0)])

    theta = np.zeros(d * k + k) if start is None else np.concatenate([start[0].ravel(), start[1]])
    result = minimize(loss, theta, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return result.x[: d * k].reshape(d, k), result.x[d * k :]


def fit_platt(z: np.ndarray, y: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Coefficients ``[m + 1]`` of ``sigmoid(z @ a + b)`` fitted to `y` (weighted
    logistic regression on a few evidence columns `z` ``[n, m]``, lightly regularised)."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    x = np.column_stack([z, np.ones(len(z))])
    w = weight / max(weight.sum(), 1e-12)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        s = x @ theta
        value = -(w * (y * log_expit(s) + (1 - y) * log_expit(-s))).sum() + 1e-4 * theta @ theta
        return float(value), x.T @ (w * (expit(s) - y)) + 2e-4 * theta

    return minimize(loss, np.r_[np.ones(z.shape[1]), 0.0], jac=True, method="L-BFGS-B").x
