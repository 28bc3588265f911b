"""A linear tag classifier on frozen features: one logistic output per label.

The parametric counterpart of the neighbour models: where they vote with the labels of
similar training photos, this learns one direction per word in feature space. Rows are
L2-normalised and standardised, then a linear layer is trained with AdamW on the
asymmetric loss of Ridnik et al. (ICCV 2021), which down-weights the many easy negatives
of a multi-label problem (``gamma_neg``) and ignores negatives already scored below
`clip`. With ``gamma_neg=0, clip=0`` it is plain binary cross-entropy. Training runs
through `phototag.training` on the CPU (seconds for Corel-5k); scoring is NumPy only.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from phototag.data import AnnotationSet
from phototag.errors import check_float, check_int
from phototag.models.base import Annotator, feature_matrix
from phototag.models.registry import register_annotator
from phototag.training import LossTask, OptimizerSettings, Trainer

if TYPE_CHECKING:
    import torch


def asymmetric_loss(
    logits: torch.Tensor, targets: torch.Tensor, gamma_neg: float = 4.0, clip: float = 0.05
) -> torch.Tensor:
    """Mean over items of the summed asymmetric loss (torch tensors, targets in {0, 1}).

    Positives: ``-log p``. Negatives: the probability shifted down by `clip`
    (``p_m = max(p - clip, 0)``), then ``-p_m ** gamma_neg * log(1 - p_m)``.
    """
    import torch

    p = torch.sigmoid(logits)
    p_m = (p - clip).clamp(min=0.0)
    positive = targets * torch.log(p.clamp(min=1e-8))
    negative = (1 - targets) * p_m**gamma_neg * torch.log((1 - p_m).clamp(min=1e-8))
    return -(positive + negative).sum(dim=1).mean()


@register_annotator("linear")
class LinearAnnotator(Annotator):
    """One logistic output per label on L2-normalised, standardised features.

    Args:
        features: key of the feature matrix in ``AnnotationSet.features``.
        epochs: passes over the training items.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        batch_size: items per step.
        gamma_neg: focusing exponent on negatives (0 with ``clip=0``: cross-entropy).
        clip: negatives scored below this probability cost nothing.
        seed: seed of the batch order (weights start at zero, so fits are reproducible).
    """

    def __init__(
        self,
        features: str = "efficientnet_lite2",
        epochs: int = 20,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        seed: int = 0,
    ) -> None:
        self.features = features
        self.epochs = check_int("epochs", epochs, 1)
        self.lr = check_float("lr", lr, 0.0)
        self.weight_decay = check_float("weight_decay", weight_decay, 0.0, strict=False)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.gamma_neg = check_float("gamma_neg", gamma_neg, 0.0, strict=False)
        self.clip = check_float("clip", clip, 0.0, strict=False)
        self.seed = check_int("seed", seed, 0)

    def _inputs(self, data: AnnotationSet, argument: str) -> np.ndarray:
        dim = self.weight_.shape[0] if hasattr(self, "weight_") else None
        x = feature_matrix(data, self.features, argument, dim).astype(np.float32)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)

    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        import torch
        from torch.utils.data import TensorDataset

        x = self._inputs(train, "train")
        self.mean_ = x.mean(axis=0)
        self.scale_ = (1.0 / (x.std(axis=0) + 1e-6)).astype(np.float32)
        inputs = torch.from_numpy((x - self.mean_) * self.scale_)
        targets = torch.from_numpy(train.labels.toarray().astype(np.float32))
        layer = torch.nn.Linear(inputs.shape[1], targets.shape[1])
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
        loss = partial(asymmetric_loss, gamma_neg=self.gamma_neg, clip=self.clip)
        self._trainer().fit(layer, LossTask(loss), TensorDataset(inputs, targets))
        self.weight_ = layer.weight.detach().numpy().T.copy()
        self.bias_ = layer.bias.detach().numpy().copy()

    def _trainer(self) -> Trainer:
        """AdamW at a constant rate, on the CPU, quietly (the seed sets the batch order)."""
        return Trainer(
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=OptimizerSettings("adamw", lr=self.lr, weight_decay=self.weight_decay),
            accelerator="cpu",
            seed=self.seed,
            progress=False,
        )

    def _scores(self, inputs: AnnotationSet) -> np.ndarray:
        x = (self._inputs(inputs, "input") - self.mean_) * self.scale_
        logits = x @ self.weight_ + self.bias_
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))
