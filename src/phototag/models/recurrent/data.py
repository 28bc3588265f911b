"""Label sequences for training: the order of an image's labels, and the training items
(one stored stage map and the ordered labels) the sequence task reads."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import Dataset

ORDERS = ("frequent_first", "rare_first")


def label_rank(frequencies: np.ndarray, order: str) -> np.ndarray:
    """Each label's position in `order` (``frequent_first``: the most frequent training
    label first; ``rare_first``: the rarest first), ties by vocabulary index."""
    frequencies = np.asarray(frequencies)
    key = -frequencies if order == "frequent_first" else frequencies
    ranked = np.lexsort((np.arange(len(frequencies)), key))
    rank = np.empty(len(frequencies), dtype=np.int64)
    rank[ranked] = np.arange(len(frequencies))
    return rank


def ordered_labels(labels: sp.csr_matrix, rank: np.ndarray) -> list[list[int]]:
    """Each row's labels, sorted by `rank`."""
    labels = sp.csr_matrix(labels)
    rows = np.split(labels.indices, labels.indptr[1:-1])
    return [sorted(row.tolist(), key=rank.__getitem__) for row in rows]


class SequenceDataset(Dataset):
    """Items ``(map [C, H, W] float32, ordered labels)`` of the items `rows`; `maps` is a
    row source (a memory-mapped store array or an array), read one row at a time."""

    def __init__(self, maps: Any, sequences: list[list[int]], rows: np.ndarray) -> None:
        self.maps = maps
        self.sequences = sequences
        self.rows = np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, list[int]]:
        row = int(self.rows[index])
        return torch.from_numpy(np.asarray(self.maps[row], np.float32)), self.sequences[row]
