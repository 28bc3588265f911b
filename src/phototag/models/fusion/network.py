"""The per-modality networks of the modality-fusion paper in torch.

A modality pairs one feature type with one similarity function (Eq. 4). Its head maps
the standardised feature vector through two layers to h(x), then scores annotation l by
the similarity of h(x) to that annotation's learned weights W_l, divided by the
temperature mu:

- ``linear``: ``h . W_l / mu``
- ``cosine``: ``cos(h, W_l) / mu``
- ``rbf``: ``exp(-|W_l - h|^2 / (2 sigma^2)) / mu``

A softmax over the annotations gives the posterior of Eq. 5; the loss is Eq. 6-7, the
cross-entropy of those posteriors against ``q = y / |y|_1`` summed over annotations
(both the ``q log p`` and the ``(1 - q) log(1 - p)`` terms), and over the modalities:
every head has its own parameters, so training them together in one module is the same
as training each alone (same optimizer per parameter, same batches), only faster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

SIMILARITIES = ("linear", "cosine", "rbf")


@dataclass(frozen=True)
class Modality:
    """One modality: the index of its feature source, its similarity, and its mu / sigma."""

    source: int
    similarity: str
    mu: float
    sigma: float = 2.0


class ModalityHead(nn.Module):
    """h(x) by two layers, then the similarities to the annotation weights W over mu."""

    def __init__(
        self, in_features: int, hidden: int, embed: int, n_labels: int, modality: Modality,
        dropout: float,
    ) -> None:  # fmt: skip
        super().__init__()
        self.similarity = modality.similarity
        self.mu = modality.mu
        self.sigma = modality.sigma
        self.body = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, embed)
        )
        self.weights = nn.Parameter(0.01 * torch.randn(n_labels, embed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``S(W_l, x) / mu`` for every annotation l: ``[batch, n_labels]``."""
        h = self.body(x)
        if self.similarity == "linear":
            s = h @ self.weights.T
        elif self.similarity == "cosine":
            s = nn.functional.normalize(h, dim=1) @ nn.functional.normalize(self.weights, dim=1).T
        else:
            distance = torch.cdist(h, self.weights).square()
            s = torch.exp(-distance / (2 * self.sigma**2))
        return s / self.mu


class FusionNetwork(nn.Module):
    """Every modality's head over the concatenated feature sources.

    Args:
        dims: the width of each feature source, in the column order of the input.
        modalities: the modalities, each naming its source by index into `dims`.
        n_labels: annotations L.
        hidden, embed: widths of the head's hidden layer and of h(x).
        dropout: dropout after the hidden layer.
    """

    def __init__(
        self, dims: Sequence[int], modalities: Sequence[Modality], n_labels: int, *,
        hidden: int, embed: int, dropout: float,
    ) -> None:  # fmt: skip
        super().__init__()
        self.dims = list(dims)
        self.sources = [m.source for m in modalities]
        total = sum(self.dims)
        self.register_buffer("mean", torch.zeros(total))
        self.register_buffer("scale", torch.ones(total))
        self.heads = nn.ModuleList(
            ModalityHead(self.dims[m.source], hidden, embed, n_labels, m, dropout)
            for m in modalities
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``S_j(x, T_l) / mu_j`` of every modality: ``[batch, N, n_labels]``."""
        parts = torch.split((x - self.mean) * self.scale, self.dims, dim=1)
        return torch.stack(
            [head(parts[s]) for head, s in zip(self.heads, self.sources, strict=True)], dim=1
        )


def posterior_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 6-7 per item, summed over modalities, averaged over the batch.

    `logits` ``[batch, N, L]``; `targets` multi-hot ``[batch, L]``. The posterior is the
    softmax over annotations (Eq. 5); ``q = y / |y|_1`` (an item without labels has q = 0).
    """
    q = targets / targets.sum(dim=1, keepdim=True).clamp(min=1.0)
    q = q.unsqueeze(1)
    log_p = torch.log_softmax(logits.float(), dim=-1)
    log_not_p = torch.log1p(-log_p.exp().clamp(max=1.0 - 1e-6))
    per_item = -(q * log_p + (1.0 - q) * log_not_p).sum(dim=-1)
    return per_item.sum(dim=1).mean()


def posteriors(network: FusionNetwork, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Eq. 5 for every modality: ``[n, N, L]`` softmax posteriors, in eval mode."""
    network.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            out.append(torch.softmax(network(x[start : start + batch_size]), dim=-1))
    if not out:
        return torch.zeros((0, len(network.heads), network.heads[0].weights.shape[0]))
    return torch.cat(out)
