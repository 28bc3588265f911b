"""Neighbourhoods for 200,000 items with a 5,000-tag vocabulary (issue 16's target: under
2 minutes on 2 cores).

Synthetic sparse tags shaped like NUS-WIDE's Flickr tags after its 5,000-tag cut: tag
popularity follows a power law whose most common tag is on about 10% of the photos,
photos carry a geometric number of tags with mean 9 (some none). Times the leave-one-out
M = 24 nearest by Jaccard (sparse intersections), the M nearest by cosine of summed
50-d tag vectors (FAISS IVF, what `cosine_neighbours` uses above 50,000 items; random
vectors stand in for GloVe) with its recall against exact search on a sample of
queries, and the sampling of 10 size-12 subsets per item. `--cosine-exact` also times
the exact cosine search of every item. Writes bench/results/neighbourhood_bench.json.

    .venv/bin/python bench/bench_neighbourhoods.py [--items 200000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp


def synthetic_tags(
    n_items: int, n_tags: int, mean_tags: float = 9.0, top_share: float = 0.10, seed: int = 0
) -> sp.csr_matrix:
    """Binary ``[n_items, n_tags]`` tags: power-law popularity, geometric tag counts."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, n_tags + 1, dtype=np.float64)
    counts = np.minimum(rng.geometric(1.0 / (mean_tags + 1.0), n_items) - 1, n_tags // 2)
    # exponent s so the top tag's share of all tag uses gives it about top_share of items
    target = top_share / mean_tags
    low, high = 0.0, 3.0
    for _ in range(60):
        s = (low + high) / 2
        weights = ranks**-s
        low, high = (s, high) if weights[0] / weights.sum() < target else (low, s)
    p = weights / weights.sum()
    rows = np.repeat(np.arange(n_items), counts)
    cols = rng.choice(n_tags, size=len(rows), p=p)
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), (n_items, n_tags))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--tags", type=int, default=5_000)
    parser.add_argument("--max-rank", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-cosine", action="store_true")
    parser.add_argument("--cosine-exact", action="store_true", help="also time exact cosine")
    parser.add_argument("--recall-queries", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/neighbourhood_bench.json"))
    args = parser.parse_args()
    import faiss
    import torch

    torch.set_num_threads(args.workers)
    faiss.omp_set_num_threads(args.workers)
    from phototag.models.neighbourhood.neighbours import (
        EXACT_COSINE_LIMIT,
        cosine_neighbours,
        jaccard_neighbours,
        sample_subsets,
    )

    start = time.perf_counter()
    tags = synthetic_tags(args.items, args.tags)
    per_item = np.diff(tags.indptr)
    frequency = np.asarray(tags.sum(0)).ravel()
    result = {
        "items": args.items, "tags": args.tags, "max_rank": args.max_rank,
        "workers": args.workers, "cpus": os.cpu_count(),
        "tags_per_item_mean": float(per_item.mean()),
        "items_without_tags": float((per_item == 0).mean()),
        "top_tag_share": float(frequency.max() / args.items),
        "generate_s": time.perf_counter() - start,
    }  # fmt: skip
    print(f"generated: {result['generate_s']:.1f} s", flush=True)
    start = time.perf_counter()
    distances, indices = jaccard_neighbours(None, tags, args.max_rank, workers=args.workers)
    result["jaccard_s"] = time.perf_counter() - start
    print(f"jaccard: {result['jaccard_s']:.1f} s", flush=True)
    result["jaccard_mean_distance"] = float(distances.mean())
    assert (indices >= 0).all() and (indices != np.arange(args.items)[:, None]).all()
    if not args.skip_cosine:
        vectors = np.random.default_rng(1).standard_normal((args.tags, 50)).astype(np.float32)
        start = time.perf_counter()
        summed = np.asarray(tags @ vectors, dtype=np.float32)
        distances, indices = cosine_neighbours(None, summed, args.max_rank)
        result["cosine_s"] = time.perf_counter() - start
        result["cosine_method"] = "exact" if args.items <= EXACT_COSINE_LIMIT else "ivf"
        print(f"cosine ({result['cosine_method']}): {result['cosine_s']:.1f} s", flush=True)
        assert (indices >= 0).all() and (indices != np.arange(args.items)[:, None]).all()
        # recall: share of the found neighbours within the exact k-th distance (ties count)
        sample = np.random.default_rng(2).choice(args.items, args.recall_queries, replace=False)
        exact, _ = cosine_neighbours(summed[sample], summed, args.max_rank + 1, method="exact")
        exact_kth = exact[:, args.max_rank]  # the query itself is at distance 0 among them
        result["cosine_recall"] = float((distances[sample] <= exact_kth[:, None] + 1e-5).mean())
        result["cosine_recall_queries"] = args.recall_queries
        print(f"cosine recall@{args.max_rank}: {result['cosine_recall']:.4f}", flush=True)
        if args.cosine_exact:
            start = time.perf_counter()
            cosine_neighbours(None, summed, args.max_rank, method="exact")
            result["cosine_exact_s"] = time.perf_counter() - start
    start = time.perf_counter()
    sample_subsets(args.items, args.max_rank, 12, 10, np.random.default_rng(0))
    result["sample_s"] = time.perf_counter() - start
    result["load_average_1min_at_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
