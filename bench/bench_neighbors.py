"""Benchmark of phototag.search: FAISS exact vs FAISS IVF vs brute-force NumPy, one run.

Usage::

    .venv/bin/python bench/bench_neighbors.py            # 1M x 1280 float16, writes
                                                         # bench/results/neighbors.json
    .venv/bin/python bench/bench_neighbors.py --quick    # 50k rows, prints only

The database is synthetic, written block by block to a float16 memory-mapped file (a
temporary directory, removed afterwards) and searched through the memmap, as a feature store
would be: a seeded mixture of Gaussian clusters (``--clusters`` centres ~ N(0, 1) per
dimension, points = centre + N(0, sigma^2) noise with ``sigma = --noise``) so that neighbours
are structured and IVF recall is meaningful. Queries are fresh draws from the same mixture.

Methods (all `phototag.search.NeighborIndex`, metric ``l2``, k neighbours per query):

* ``faiss_exact``: ``method="exact"``: blocks of the memmap converted to float32, FAISS
  brute-force kernel per block, top-k merged, the k + 16 candidates re-scored exactly.
* ``numpy_bruteforce``: ``method="numpy"``: the same blocks, NumPy matrix product +
  ``argpartition`` (no FAISS at all).
* ``faiss_ivf``: ``IndexIVFScalarQuantizer(QT_fp16)`` (the float16 values exactly, 2.56 GB
  for 1M x 1280), build (k-means on a 64 x nlist sample + adding all rows) and search at
  several ``nprobe``; recall@k = |IVF top-k ∩ exact top-k| / k, averaged over queries.

The memmap is read once before the timed searches, so no method pays for cold page-cache
reads (it was written just before, but a 2.4 GiB file may have been partly evicted). Peak
memory is the process's ``VmHWM`` after each phase (it never goes down).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from phototag.search import NeighborIndex  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "neighbors.json"
GIB = 1024**3


def peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / GIB
    return float("nan")


def machine() -> dict:
    import faiss
    import scipy

    return {
        "load_average": list(os.getloadavg()),
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "faiss": faiss.__version__,
        "faiss_threads": faiss.omp_get_max_threads(),
        "platform": platform.platform(),
    }


def make_database(
    path: Path, n: int, dim: int, clusters: int, subclusters: int, spread: float, noise: float,
    seed: int,
):  # fmt: skip
    """float16 memmap [n, dim] of hierarchical-mixture draws, and fresh queries.

    `clusters` centres ~ N(0, 1); each has `subclusters` sub-centres ~ centre + N(0, spread^2);
    a point is a random sub-centre + N(0, noise^2). With 1M points and 100 x 100 sub-clusters
    a point's sub-cluster holds ~100 points, so its 200 nearest neighbours spread over
    several sibling sub-clusters, as in real feature collections.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    subs = np.repeat(centres, subclusters, axis=0)
    subs += spread * rng.standard_normal(subs.shape, dtype=np.float32)
    db = np.memmap(path, dtype=np.float16, mode="w+", shape=(n, dim))
    step = 50_000
    for a in range(0, n, step):
        b = min(n, a + step)
        block = subs[rng.integers(0, len(subs), b - a)]
        block += noise * rng.standard_normal((b - a, dim), dtype=np.float32)
        db[a:b] = block
    db.flush()
    del db
    queries = subs[rng.integers(0, len(subs), QUERIES[0])]
    queries += noise * rng.standard_normal(queries.shape, dtype=np.float32)
    return np.memmap(path, dtype=np.float16, mode="r", shape=(n, dim)), queries


QUERIES = [1000]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    hits = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, truth, strict=True)]
    return float(np.mean(hits) / k)


def warm(db: np.ndarray) -> float:
    total = 0.0
    for a in range(0, len(db), 65536):
        total += float(np.asarray(db[a : a + 65536, :8], dtype=np.float32).sum())
        total += float(db[a : a + 65536].view(np.uint16)[:, -1].sum())
    return total


def single_query_latency(index: NeighborIndex, queries: np.ndarray, args) -> float:
    """Median seconds of one-query searches (the interactive `phototag annotate` case)."""
    times = []
    for r in range(args.latency_queries):
        t = time.perf_counter()
        index.search(queries[r : r + 1], args.k)
        times.append(time.perf_counter() - t)
    return round(float(np.median(times)), 4)


def timed(label: str, fn):
    t = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t
    print(f"{label:<34s} {seconds:8.2f} s   peak RSS {peak_rss_gib():5.2f} GiB", flush=True)
    return out, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--subclusters", type=int, default=100)
    parser.add_argument("--spread", type=float, default=0.5)
    parser.add_argument("--noise", type=float, default=0.4)
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--latency-queries", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp", default=None, help="directory for the memmap file")
    parser.add_argument("--quick", action="store_true", help="50k rows, no result file")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    if args.quick:
        args.n, args.nlist, args.clusters, args.subclusters = 50_000, 128, 20, 25
    QUERIES[0] = args.queries

    result: dict = {
        "benchmark": "phototag.search.NeighborIndex, metric l2",
        "command": "python bench/bench_neighbors.py" + (" --quick" if args.quick else ""),
        "machine_at_start": machine(),
        "data": {
            "database": [args.n, args.dim],
            "dtype": "float16 (np.memmap on local disk)",
            "queries": args.queries,
            "k": args.k,
            "synthetic": f"{args.clusters} clusters x {args.subclusters} sub-clusters (centres "
            f"N(0,1), sub-centres +N(0,{args.spread}^2), points +N(0,{args.noise}^2)), seed "
            f"{args.seed}",
        },
        "methods": {},
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench_neighbors_", dir=args.tmp))
    try:
        (db, queries), t_gen = timed(
            "generate float16 memmap",
            lambda: make_database(
                workdir / "db.f16",
                args.n,
                args.dim,
                args.clusters,
                args.subclusters,
                args.spread,
                args.noise,
                args.seed,
            ),
        )
        result["data"]["generate_s"] = round(t_gen, 2)
        result["data"]["size_gib"] = round(args.n * args.dim * 2 / GIB, 3)

        # read the file once so that neither timed method pays for cold page-cache reads
        _, t_warm = timed("warm the page cache", lambda: warm(db))
        result["data"]["warm_read_s"] = round(t_warm, 2)

        exact = NeighborIndex("l2", "exact").fit(db)
        (d_exact, i_exact), t_exact = timed(
            "faiss exact search", lambda: exact.search(queries, args.k)
        )
        result["methods"]["faiss_exact"] = {
            "search_s": round(t_exact, 2),
            "queries_per_s": round(args.queries / t_exact, 1),
            "single_query_s": single_query_latency(exact, queries, args),
            "peak_rss_gib": round(peak_rss_gib(), 2),
        }

        brute = NeighborIndex("l2", "numpy").fit(db)
        (d_np, i_np), t_np = timed(
            "numpy brute-force search", lambda: brute.search(queries, args.k)
        )
        result["methods"]["numpy_bruteforce"] = {
            "search_s": round(t_np, 2),
            "queries_per_s": round(args.queries / t_np, 1),
            "peak_rss_gib": round(peak_rss_gib(), 2),
            "same_neighbours_as_faiss_exact": float((i_np == i_exact).mean()),
            "max_abs_distance_difference": float(np.abs(d_np - d_exact).max()),
        }

        ivf = NeighborIndex("l2", "ivf", nlist=args.nlist, nprobe=args.nprobe[0])
        _, t_build = timed("faiss ivf build (train + add)", lambda: ivf.fit(db))
        runs = []
        for nprobe in args.nprobe:
            ivf.nprobe = nprobe  # same index, several probe counts
            (d_ivf, i_ivf), t_ivf = timed(
                f"faiss ivf search nprobe={nprobe}", lambda: ivf.search(queries, args.k)
            )
            runs.append(
                {
                    "nprobe": nprobe,
                    "search_s": round(t_ivf, 3),
                    "queries_per_s": round(args.queries / t_ivf, 1),
                    f"recall@{args.k}": round(recall(i_ivf, i_exact), 4),
                }
            )
            print(f"    recall@{args.k} = {runs[-1][f'recall@{args.k}']:.4f}", flush=True)
        ivf.nprobe = args.nprobe[len(args.nprobe) // 2]
        latency = {"nprobe": ivf.nprobe, "seconds": single_query_latency(ivf, queries, args)}
        result["methods"]["faiss_ivf"] = {
            "single_query_s": latency,
            "index": "IndexIVFScalarQuantizer QT_fp16, L2",
            "nlist": args.nlist,
            "train_sample": 64 * args.nlist,
            "kmeans_iterations": 10,
            "build_s": round(t_build, 2),
            "peak_rss_gib": round(peak_rss_gib(), 2),
            "runs": runs,
        }
        result["speedup_faiss_exact_vs_numpy"] = round(t_np / t_exact, 2)
        result["machine_at_end"] = {"load_average": list(os.getloadavg())}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
