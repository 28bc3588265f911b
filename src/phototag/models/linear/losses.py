"""The losses of the linear classifier: asymmetric, logistic, softmax and WARP.

Each takes logits ``[n, L]`` and 0/1 targets ``[n, L]`` (torch tensors) and returns the
mean over the items of each item's loss summed over its labels, so that the four are on
the same scale per item whatever the batch size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def asymmetric_loss(
    logits: torch.Tensor, targets: torch.Tensor, gamma_neg: float = 4.0, clip: float = 0.05
) -> torch.Tensor:
    """The asymmetric loss of Ridnik et al. (ICCV 2021).

    Positives: ``-log p``. Negatives: the probability shifted down by `clip`
    (``p_m = max(p - clip, 0)``), then ``-p_m ** gamma_neg * log(1 - p_m)``.
    """
    import torch

    p = torch.sigmoid(logits)
    p_m = (p - clip).clamp(min=0.0)
    positive = targets * torch.log(p.clamp(min=1e-8))
    negative = (1 - targets) * p_m**gamma_neg * torch.log((1 - p_m).clamp(min=1e-8))
    return -(positive + negative).sum(dim=1).mean()


def logistic_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of one sigmoid per label (CNN + logistic)."""
    from torch.nn.functional import binary_cross_entropy_with_logits

    return binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(logits)


def softmax_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the softmax over labels against ``y / |y|_1`` (CNN + softmax, Gong
    et al. 2013): each of an item's `c` labels has target probability ``1 / c``. An item
    without labels costs nothing."""
    from torch.nn.functional import cross_entropy

    shares = targets / targets.sum(dim=1, keepdim=True).clamp(min=1)
    return cross_entropy(logits, shares, reduction="mean")


def warp_rank_weights(n_labels: int) -> torch.Tensor:
    """``L(k) = sum_{j <= k} 1 / j`` for ``k = 0 .. n_labels - 1`` (``L(0) = 0``): the
    weight WARP gives a positive whose estimated rank is `k`."""
    import torch

    steps = 1.0 / torch.arange(1, n_labels, dtype=torch.float64)
    return torch.cat([torch.zeros(1, dtype=torch.float64), steps.cumsum(0)])


def warp_loss(
    logits: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Weighted approximate-rank pairwise loss (Weston et al. 2011; Gong et al. 2013).

    For each positive label `p` of an item, negatives `n` are drawn uniformly (with
    replacement) from the item's negative labels until one violates the margin,
    ``1 - s_p + s_n > 0``, or ``L - 1`` have been drawn (`L` labels). When the `N`-th
    draw violates, the pair costs ``L(floor((L - 1) / N)) * (1 - s_p + s_n)``
    (`warp_rank_weights`): few draws mean many violators, a high rank and a high weight.

    Vectorised: all ``L - 1`` draws of every positive are made at once (uniform numbers
    scaled to the item's count of negatives, indexing its negatives) and the first
    violating one is taken. Given the scores this is the same distribution of `N` and of
    the violator as the original's one-at-a-time sampling, which stops at the same cap;
    the difference is that the whole batch is scored by the same weights (a minibatch
    step) where Weston et al. update after every pair. The draws and weights are
    constants, so the gradient is that of the weighted hinge of the chosen pairs.
    `generator` makes the draws (default: torch's).
    """
    import torch

    n_labels = logits.shape[1]
    positive = targets > 0.5
    n_negative = n_labels - positive.sum(dim=1)
    items, labels = torch.nonzero(positive & (n_negative > 0).unsqueeze(1), as_tuple=True)
    if len(items) == 0:
        return logits.sum() * 0.0
    with torch.no_grad():
        negatives_first = torch.argsort(positive.to(torch.uint8), dim=1, stable=True)
        counts = n_negative[items].unsqueeze(1)
        uniform = torch.rand(len(items), n_labels - 1, generator=generator, device=logits.device)
        picks = (uniform * counts).long().clamp(max=counts - 1)
        draws = negatives_first[items.unsqueeze(1), picks]
        margins = 1.0 - logits[items, labels].unsqueeze(1) + logits[items.unsqueeze(1), draws]
        first = (margins > 0).to(torch.uint8).argmax(dim=1)
        weights = warp_rank_weights(n_labels).to(logits)[(n_labels - 1) // (first + 1)]
        violator = draws.gather(1, first.unsqueeze(1)).squeeze(1)
    hinge = (1.0 - logits[items, labels] + logits[items, violator]).clamp(min=0.0)
    return (weights * hinge).sum() / len(logits)
