"""The combination step of the modality-fusion paper: exponentiated gradient (EG) on the
simplex with the hinge loss on ranked annotation pairs (Eq. 8-11, Algorithm 1), and the
per-label thresholds that decode the combined scores for the Hamming loss.

Everything here is NumPy on arrays of modality scores ``P [n_items, n_labels,
n_modalities]``; a pair ``(i, r, s)`` says label ``r`` is relevant to item ``i`` and ``s``
is not, so the combined score must rank ``r`` above ``s`` by the margin gamma:

- ``dS = P[i, r] - P[i, s]`` (Eq. 10, one value per modality);
- ``h(alpha) = max(0, gamma - alpha . dS)`` (Eq. 9);
- Eq. 11 linearises h at alpha_t and keeps alpha close to alpha_t in KL divergence, which
  gives the multiplicative update ``alpha_{t+1} ~ alpha_t * exp(-eta * grad h)`` with
  ``grad h = -dS`` on a violated pair and 0 otherwise, renormalised onto the simplex.

`eg_step` takes a batch of pairs at once: the gradient is the mean over the batch of
the violated pairs' ``-dS``, so a batch of one pair is exactly the update of Algorithm 1
and larger batches are its vectorised (mini-batch) form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from phototag.errors import InvalidInputError, check_float, check_int


def ranked_pairs(
    labels: sp.spmatrix | np.ndarray, max_pairs: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(item, relevant, irrelevant)`` index arrays of every ranked pair of `labels`
    (``[n_items, n_labels]`` multi-hot); at most `max_pairs`, drawn uniformly without
    replacement when there are more. Items with no label or every label give no pair."""
    check_int("max_pairs", max_pairs, 1)
    y = labels.toarray() if sp.issparse(labels) else np.asarray(labels)
    y = y.astype(bool)
    n_items, n_labels = y.shape
    positives = y.sum(axis=1)
    per_item = positives * (n_labels - positives)
    total = int(per_item.sum())
    rng = np.random.default_rng(seed)
    chosen = (
        np.arange(total)
        if total <= max_pairs
        else np.sort(rng.choice(total, max_pairs, replace=False))
    )
    item = np.searchsorted(np.cumsum(per_item), chosen, side="right")
    offset = chosen - (np.cumsum(per_item) - per_item)[item]
    n_neg = (n_labels - positives)[item]
    # the k-th positive and the m-th negative of each item, by label order
    pos_order = np.argsort(~y, axis=1, kind="stable")  # positives first
    neg_order = np.argsort(y, axis=1, kind="stable")  # negatives first
    relevant = pos_order[item, offset // np.maximum(n_neg, 1)]
    irrelevant = neg_order[item, offset % np.maximum(n_neg, 1)]
    return item.astype(np.int64), relevant.astype(np.int64), irrelevant.astype(np.int64)


def pair_differences(
    scores: np.ndarray, pairs: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> np.ndarray:
    """Eq. 10 for every pair: ``S_j(x_i, T_r) - S_j(x_i, T_s)`` as ``[n_pairs, n_modalities]``."""
    item, relevant, irrelevant = pairs
    return scores[item, relevant] - scores[item, irrelevant]


def hinge_losses(alpha: np.ndarray, differences: np.ndarray, margin: float) -> np.ndarray:
    """Eq. 9 for every pair: ``max(0, gamma - alpha . dS)``."""
    return np.maximum(0.0, margin - differences @ alpha)


def eg_step(alpha: np.ndarray, differences: np.ndarray, margin: float, lr: float) -> np.ndarray:
    """One EG update (Eq. 11) on a batch of pairs: alpha times ``exp(-lr * g)``, with g the
    batch mean of the hinge gradient (``-dS`` where the pair is violated), renormalised
    to sum to 1. A batch without a violated pair leaves alpha as it is."""
    violated = differences @ alpha < margin
    if not violated.any():
        return alpha
    gradient = -differences[violated].sum(axis=0) / len(differences)
    with np.errstate(divide="ignore"):  # a weight that underflowed to 0 stays 0
        logits = np.log(alpha) - lr * gradient
    logits -= logits.max()  # exp without overflow; the normalisation removes the shift
    updated = np.exp(logits)
    return updated / updated.sum()


@dataclass(frozen=True)
class EGResult:
    """What `learn_weights` found: the final ``alpha``, its ``history`` (one row per
    recorded step, the first row the uniform start) and the ``steps`` at those rows."""

    alpha: np.ndarray
    history: np.ndarray
    steps: np.ndarray


def learn_weights(
    differences: np.ndarray,
    *,
    margin: float,
    lr: float,
    epochs: int = 3,
    batch_size: int = 64,
    seed: int = 0,
    records: int = 200,
) -> EGResult:
    """Algorithm 1's combination weights from pair differences ``[n_pairs, N]``: alpha
    starts at 1/N and takes one `eg_step` per batch of `batch_size` shuffled pairs, for
    `epochs` passes; about `records` snapshots of alpha are kept for plotting."""
    check_float("margin", margin, 0.0, strict=False)
    check_float("lr", lr, 0.0)
    check_int("epochs", epochs, 1)
    check_int("batch_size", batch_size, 1)
    differences = np.asarray(differences, dtype=np.float64)
    if differences.ndim != 2 or differences.shape[1] == 0:
        raise InvalidInputError(
            "differences", "a 2-D array [n_pairs, n_modalities]", f"shape {differences.shape}"
        )
    n_pairs, n_modalities = differences.shape
    alpha = np.full(n_modalities, 1.0 / n_modalities)
    rng = np.random.default_rng(seed)
    n_steps = epochs * -(-n_pairs // batch_size)
    every = max(1, n_steps // max(records, 1))
    history, steps, step = [alpha.copy()], [0], 0
    for _ in range(epochs):
        order = rng.permutation(n_pairs)
        for start in range(0, n_pairs, batch_size):
            alpha = eg_step(alpha, differences[order[start : start + batch_size]], margin, lr)
            step += 1
            if step % every == 0 or step == n_steps:
                history.append(alpha.copy())
                steps.append(step)
    return EGResult(alpha, np.array(history), np.array(steps, dtype=np.int64))


def misranked_fraction(alpha: np.ndarray, differences: np.ndarray) -> float:
    """The fraction of pairs the combination ``alpha`` does not rank right (ties count half)."""
    margins = differences @ alpha
    return float(np.mean((margins < 0) + 0.5 * (margins == 0))) if len(margins) else 0.0


def hamming_thresholds(y_true: sp.spmatrix | np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per label, the score cut that minimises its Hamming errors (false positives plus
    false negatives) on `scores`: a label is predicted where ``score >= threshold``.

    The cut lies halfway between the last accepted score and the next lower one; only
    cuts between distinct scores count; predicting nothing (``inf``) wins ties, then the
    highest cut. Used with `LabelThresholds`, this is the decoding the Hamming loss needs.
    """
    y = y_true.toarray() if sp.issparse(y_true) else np.asarray(y_true)
    y = y.astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if y.shape != scores.shape:
        raise InvalidInputError("y_true", f"shape {scores.shape}", f"{y.shape}")
    thresholds = np.full(scores.shape[1], np.inf)
    for j in range(scores.shape[1]):
        order = np.argsort(-scores[:, j], kind="stable")
        ranked = scores[order, j]
        tp = np.cumsum(y[order, j])
        last_of_run = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
        # errors change by (predicted - tp) - tp relative to predicting nothing
        gain = 2 * tp[last_of_run] - (last_of_run + 1)
        if not len(gain) or gain.max() <= 0:
            continue
        cut = last_of_run[int(np.argmax(gain))]
        if cut + 1 < len(ranked):
            thresholds[j] = (ranked[cut] + ranked[cut + 1]) / 2
        else:
            thresholds[j] = np.nextafter(ranked[cut], -np.inf)
    return thresholds
