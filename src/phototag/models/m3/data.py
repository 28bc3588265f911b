"""Training items of M3 read from stored stage maps, one item at a time (memory-mapped)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import Dataset


class M3Dataset(Dataset):
    """Items ``{"maps": (M_1..M_K) float32 [C_k, H_k, W_k], "tags": [T] 0/1 (with tags),
    "labels": [L] 0/1}`` of the items `rows`, as `M3Task` reads them.

    `maps` are row sources per stage (memory-mapped store rows or arrays, one row per
    item); only the rows of a batch are read. With `visual` (f_v per item, ``[n, C_K]``)
    items carry ``"visual"`` instead of ``"maps"``.
    """

    def __init__(
        self,
        maps: Sequence[Any],
        tags: sp.csr_matrix | None,
        labels: sp.csr_matrix,
        rows: np.ndarray,
        visual: np.ndarray | None = None,
    ) -> None:
        self.maps = list(maps)
        self.tags = tags
        self.labels = labels
        self.rows = np.asarray(rows, dtype=np.int64)
        self.visual = None if visual is None else torch.from_numpy(visual)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = int(self.rows[index])
        item: dict[str, Any] = {"labels": _dense(self.labels, row)}
        if self.visual is not None:
            item["visual"] = self.visual[row]
        else:
            item["maps"] = tuple(
                torch.from_numpy(np.asarray(m[row], np.float32)) for m in self.maps
            )
        if self.tags is not None:
            item["tags"] = _dense(self.tags, row)
        return item


def _float(row: Any) -> torch.Tensor:
    return torch.from_numpy(np.asarray(row, np.float32))


def _dense(matrix: sp.csr_matrix, row: int) -> torch.Tensor:
    return torch.from_numpy(matrix[row].toarray().ravel().astype(np.float32))
