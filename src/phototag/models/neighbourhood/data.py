"""Training batches of the neighbourhood models: an item, a neighbourhood sampled from its
M nearest (a fresh size-m subset per step, in distance order), and their metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.utils.data import Dataset

from phototag.training import Task

#: A matrix of item rows: dense float32, or sparse (densified a batch at a time).
Rows = np.ndarray | sp.csr_matrix


def take(matrix: Rows | None, index: np.ndarray) -> torch.Tensor | None:
    """Rows `index` (any shape) of `matrix` as a float32 tensor ``[*index.shape, cols]``."""
    if matrix is None:
        return None
    flat = index.ravel()
    rows = matrix[flat].toarray() if sp.issparse(matrix) else np.asarray(matrix[flat])
    return torch.from_numpy(rows.astype(np.float32, copy=False)).reshape(*index.shape, -1)


@dataclass
class Items:
    """Items with their ranked neighbours in a database: ``x`` (Φ), ``meta`` (π(o), None
    for visual models) and ``ranked`` (database rows, nearest first, ``[n, M]``);
    ``labels`` for training."""

    x: Rows
    meta: Rows | None
    ranked: np.ndarray
    labels: sp.csr_matrix | None = None


class NeighbourhoodDataset(Dataset):
    """The rows `rows` of `items` (the task's collate gathers their inputs)."""

    def __init__(self, items: Items, rows: np.ndarray) -> None:
        self.items = items
        self.rows = np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[Items, int]:
        return self.items, int(self.rows[index])


class NeighbourhoodTask(Task):
    """Binary cross-entropy of the network's logits for one sampled neighbourhood per
    item and step (Eq. 3 with Eq. 2's average estimated by a sample)."""

    def __init__(self, database: Items, m: int) -> None:
        self.database = database
        self.m = m

    def collate(self, batch: list[tuple[Items, int]]) -> dict[str, Any]:
        items = batch[0][0]
        index = np.asarray([row for _, row in batch], dtype=np.int64)
        ranked = items.ranked[index]
        m = min(self.m, ranked.shape[1])
        picked = torch.rand(ranked.shape).argsort(dim=1)[:, :m].sort(dim=1).values.numpy()
        neighbours = np.take_along_axis(ranked, picked, axis=1)
        assert items.labels is not None
        return {
            "x": take(items.x, index),
            "z": take(self.database.x, neighbours),
            "ox": take(items.meta, index),
            "oz": take(self.database.meta, neighbours),
            "y": torch.from_numpy(items.labels[index].toarray().astype(np.float32)),
        }

    def training_step(self, module: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        logits = module(batch["x"], batch["z"], batch["ox"], batch["oz"])
        return nn.functional.binary_cross_entropy_with_logits(logits, batch["y"])

    def validation_value(self, module: nn.Module, batches: Any) -> float:
        total, count = 0.0, 0
        for batch in batches:
            logits = module(batch["x"], batch["z"], batch["ox"], batch["oz"])
            loss = nn.functional.binary_cross_entropy_with_logits(
                logits, batch["y"], reduction="sum"
            )
            total += float(loss)
            count += batch["y"].numel()
        return total / max(count, 1)
