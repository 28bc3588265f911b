"""A linear tag classifier on frozen features, and the CNN + logistic / softmax / WARP
baselines of the M3 paper as presets of it.

The parametric counterpart of the neighbour models: where they vote with the labels of
similar training photos, this learns one direction per word in feature space. Rows are
L2-normalised and standardised, then a linear layer is trained with AdamW on one of the
losses of `phototag.models.linear.losses`: by default the asymmetric loss of Ridnik et
al. (ICCV 2021), which down-weights the many easy negatives of a multi-label problem
(``gamma_neg``) and ignores negatives already scored below `clip`. Training runs through
`phototag.training` on the CPU (seconds for Corel-5k); scoring is NumPy only.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial, partialmethod
from typing import TYPE_CHECKING

import numpy as np

from phototag.data import AnnotationSet
from phototag.errors import check_choice, check_float, check_int
from phototag.models.base import Annotator, feature_matrix
from phototag.models.linear.losses import asymmetric_loss, logistic_loss, softmax_loss, warp_loss
from phototag.models.registry import register_annotator
from phototag.training import LossTask, OptimizerSettings, Trainer

if TYPE_CHECKING:
    import torch

#: The losses `LinearAnnotator` trains with, and what its scores then are.
LOSSES = {
    "asymmetric": "sigmoid probabilities",
    "logistic": "sigmoid probabilities",
    "softmax": "softmax probabilities over the labels (summing to 1 per item)",
    "warp": "the linear scores themselves (a ranking, not probabilities)",
}


@register_annotator("linear")
class LinearAnnotator(Annotator):
    """One linear output per label on L2-normalised, standardised features.

    Args:
        features: key of the feature matrix in ``AnnotationSet.features``.
        epochs: passes over the training items.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        batch_size: items per step.
        loss: one of `LOSSES`: ``asymmetric`` (below), ``logistic`` (binary
            cross-entropy, one sigmoid per label), ``softmax`` (cross-entropy against
            ``y / |y|_1``) or ``warp`` (weighted approximate-rank pairwise loss).
        gamma_neg: focusing exponent on negatives of the asymmetric loss (0 with
            ``clip=0``: cross-entropy).
        clip: negatives scored below this probability cost nothing (asymmetric loss).
        seed: seed of the batch order and of WARP's draws (weights start at zero, so
            fits are reproducible).
    """

    def __init__(
        self,
        features: str = "efficientnet_lite2",
        epochs: int = 20,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        loss: str = "asymmetric",
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        seed: int = 0,
    ) -> None:
        self.features = features
        self.epochs = check_int("epochs", epochs, 1)
        self.lr = check_float("lr", lr, 0.0)
        self.weight_decay = check_float("weight_decay", weight_decay, 0.0, strict=False)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.loss = check_choice("loss", loss, LOSSES)
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
        self._trainer().fit(layer, LossTask(self._loss()), TensorDataset(inputs, targets))
        self.weight_ = layer.weight.detach().numpy().T.copy()
        self.bias_ = layer.bias.detach().numpy().copy()

    def _loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        if self.loss == "asymmetric":
            return partial(asymmetric_loss, gamma_neg=self.gamma_neg, clip=self.clip)
        return {"logistic": logistic_loss, "softmax": softmax_loss, "warp": warp_loss}[self.loss]

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
        if self.loss == "warp":
            return logits
        if self.loss == "softmax":
            from scipy.special import softmax

            return softmax(logits, axis=1)
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))


# The M3 paper's baselines on pooled CNN features: the linear classifier with another
# default loss. Their constructor is LinearAnnotator's, so any argument can still be given.
@register_annotator("cnn_logistic")
class CNNLogisticAnnotator(LinearAnnotator):
    """CNN + logistic: one sigmoid per label, binary cross-entropy (``loss="logistic"``)."""

    __init__ = partialmethod(LinearAnnotator.__init__, loss="logistic")


@register_annotator("cnn_softmax")
class CNNSoftmaxAnnotator(LinearAnnotator):
    """CNN + softmax: a softmax over the labels, cross-entropy against ``y / |y|_1``
    (``loss="softmax"``)."""

    __init__ = partialmethod(LinearAnnotator.__init__, loss="softmax")


@register_annotator("cnn_warp")
class CNNWarpAnnotator(LinearAnnotator):
    """CNN + WARP: the weighted approximate-rank pairwise loss (``loss="warp"``)."""

    __init__ = partialmethod(LinearAnnotator.__init__, loss="warp")
