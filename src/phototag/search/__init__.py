"""Nearest-neighbour search (FAISS or NumPy) and the distances it is defined by."""

from phototag.search.neighbors import (
    KL_EPS,
    METHODS,
    METRICS,
    NeighborIndex,
    blocked_search,
    check_metric,
    normalize_rows,
    paired_distances,
    pairwise_distances,
    smallest,
)

__all__ = [
    "KL_EPS",
    "METHODS",
    "METRICS",
    "NeighborIndex",
    "blocked_search",
    "check_metric",
    "normalize_rows",
    "paired_distances",
    "pairwise_distances",
    "smallest",
]
