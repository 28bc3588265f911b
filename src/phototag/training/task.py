"""What a model family gives the trainer: how a batch makes a loss, and how to validate.

The trainer owns the network (a `torch.nn.Module`), the data order, devices, precision
and the optimizer; a `Task` only turns batches into numbers. It receives the module to
use: during training the module as set up for the device and DDP (call it, do not keep
it), during validation the plain module or its moving average in eval mode, without
gradients.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from phototag.errors import InvalidInputError

if TYPE_CHECKING:
    import torch
    from torch import nn


class Task(ABC):
    """A training objective over batches made by `collate` from a dataset's items."""

    @abstractmethod
    def training_step(self, module: nn.Module, batch: Any) -> torch.Tensor:
        """The scalar loss of `batch` (the trainer back-propagates it)."""

    def validation_value(self, module: nn.Module, batches: Iterable[Any]) -> float:
        """One number for the whole validation set (early stopping watches it)."""
        raise InvalidInputError(
            "valid_data",
            f"no validation data: {type(self).__name__} defines no validation_value",
            "a validation set",
        )

    def collate(self, items: list[Any]) -> Any:
        """A batch from dataset items (default: torch's `default_collate`)."""
        from torch.utils.data import default_collate

        return default_collate(items)


class LossTask(Task):
    """A module trained on ``(inputs, targets)`` items by ``loss(module(inputs), targets)``.

    `loss` averages over the batch; the validation value is the same loss averaged over
    every validation item (lower is better).
    """

    def __init__(self, loss: Callable[[Any, Any], torch.Tensor]) -> None:
        self.loss = loss

    def training_step(self, module: nn.Module, batch: Any) -> torch.Tensor:
        inputs, targets = batch
        return self.loss(module(inputs), targets)

    def validation_value(self, module: nn.Module, batches: Iterable[Any]) -> float:
        total, count = 0.0, 0
        for inputs, targets in batches:
            total += float(self.loss(module(inputs), targets)) * len(targets)
            count += len(targets)
        return total / max(count, 1)
