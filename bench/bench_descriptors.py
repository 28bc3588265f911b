"""Time the classic descriptors on real Corel-5k images (192 x 128 JPEGs).

    .venv/bin/python bench/bench_descriptors.py            # 200 images, codebook on 1000
    .venv/bin/python bench/bench_descriptors.py --paper    # the paper's 12 features

Per-image times are single-threaded (BLAS/OpenMP/OpenCV limited to one thread, one
image at a time): feature extraction scales out over processes, not threads. The
codebook fit uses `--fit-threads` threads. Writes ``bench/results/descriptors.json``.
"""

from __future__ import annotations

import argparse
import os
import sys

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="Corel-5k train folder of JPEGs")
    parser.add_argument("--images", type=int, default=200, help="images to time")
    parser.add_argument("--fit-images", type=int, default=1000, help="codebook images")
    parser.add_argument("--vocabulary-size", type=int, default=1000)
    parser.add_argument("--fit-threads", type=int, default=2)
    parser.add_argument("--paper", action="store_true", help="all 12 paper features")
    parser.add_argument("--output", default=None, help="JSON result file")
    return parser.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None:  # before numpy / OpenCV / faiss start their thread pools
    for _name in _THREAD_VARIABLES:
        os.environ[_name] = str(ARGS.fit_threads)

import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "corel5k" / "train"
BRIEF = ["hsv_hist", "lab_moments", "edge_direction", "wavelet", "lbp", "gist", "bovw_sift"]


def load_images(files: list[Path]) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def set_threads(n: int) -> None:
    import cv2

    cv2.setNumThreads(n)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        pass


def main(args: argparse.Namespace) -> int:
    import logging

    import cv2

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)

    from phototag.features.descriptors import PAPER_FEATURES, ImageViews, create_descriptor

    data = Path(args.data) if args.data else DEFAULT_DATA
    files = sorted(data.glob("*.jpeg"))
    if len(files) < args.images:
        print(f"need {args.images} JPEGs in {data}, found {len(files)}", file=sys.stderr)
        return 2
    names = list(PAPER_FEATURES) if args.paper else BRIEF
    # Time on the first images; fit codebooks on the last ones (disjoint when possible).
    timed_files = files[: args.images]
    fit_files = files[-args.fit_images :]
    started = time.perf_counter()
    timed = load_images(timed_files)
    fit_images = load_images(fit_files)
    load_s = time.perf_counter() - started

    descriptors = [
        create_descriptor(n, vocabulary_size=args.vocabulary_size)
        if n.startswith("bovw")
        else create_descriptor(n)
        for n in names
    ]
    fits = {}
    set_threads(args.fit_threads)
    for descriptor in descriptors:
        if not descriptor.requires_fit:
            continue
        started = time.perf_counter()
        descriptor.fit(fit_images)
        fits[descriptor.name] = {
            "seconds": time.perf_counter() - started,
            "images": len(fit_images),
            "vocabulary_size": descriptor.vocabulary_size,
            "threads": args.fit_threads,
        }
        print(f"fit {descriptor.name}: {fits[descriptor.name]['seconds']:.1f} s", flush=True)

    set_threads(1)
    for image in timed[:3]:  # warm up: imports, filter banks, caches
        views = ImageViews(image)
        for descriptor in descriptors:
            descriptor.compute(views)
    # Wall time, and CPU time of this process (less sensitive to other load on the box).
    times: dict[str, list[tuple[float, float]]] = {"conversions": []}
    times |= {d.name: [] for d in descriptors}
    totals = []
    clock = time.perf_counter
    cpu = time.process_time
    for image in timed:
        begin, begin_cpu = clock(), cpu()
        views = ImageViews(image)
        views.gray, views.hsv, views.lab  # noqa: B018 - the shared conversions
        times["conversions"].append((clock() - begin, cpu() - begin_cpu))
        for descriptor in descriptors:
            start, start_cpu = clock(), cpu()
            descriptor.compute(views)
            times[descriptor.name].append((clock() - start, cpu() - start_cpu))
        totals.append((clock() - begin, cpu() - begin_cpu))
    times["total"] = totals

    rows = {}
    for name, pairs in times.items():
        wall, cpu_s = np.array(pairs).T * 1000
        rows[name] = {
            "mean_ms": float(wall.mean()),
            "median_ms": float(np.median(wall)),
            "p95_ms": float(np.percentile(wall, 95)),
            "cpu_mean_ms": float(cpu_s.mean()),
        }
    dims = {d.name: d.dim for d in descriptors}
    result = {
        "command": "python bench/bench_descriptors.py" + (" --paper" if args.paper else ""),
        "images": len(timed),
        "image_size": list(timed[0].shape),
        "per_image": rows,
        "dims": dims,
        "codebook_fit": fits,
        "image_loading_s": load_s,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m_at_end": os.getloadavg()[0],
            "python": platform.python_version(),
            "opencv": cv2.__version__,
            "numpy": np.__version__,
        },
        "threads_per_image": 1,
    }
    output = Path(args.output) if args.output else REPO / "bench" / "results" / "descriptors.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n{len(timed)} Corel images {timed[0].shape[1]}x{timed[0].shape[0]}, 1 thread")
    print(f"{'descriptor':<22}{'dim':>6}{'mean ms':>10}{'median':>9}{'p95':>9}{'cpu ms':>9}")
    for name, row in rows.items():
        dim = dims.get(name, "")
        print(
            f"{name:<22}{dim!s:>6}{row['mean_ms']:>10.2f}{row['median_ms']:>9.2f}"
            f"{row['p95_ms']:>9.2f}{row['cpu_mean_ms']:>9.2f}"
        )
    for name, fit in fits.items():
        print(f"codebook {name}: {fit['seconds']:.1f} s on {fit['images']} images")
    print(f"load average (1 min) at end: {result['machine']['load_average_1m_at_end']:.2f}")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
