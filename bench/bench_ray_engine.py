"""`phototag annotate` throughput: the Ray engine against the local engine.

Usage (from the repository root)::

    .venv/bin/python bench/bench_ray_engine.py [--images ../shared/data/corel5k/test]
        [--cpus 2] [--rounds 1] [--model default] [--wait-idle LOAD]

Per round (the order of the two engines flips every round), on the same photos
(Corel-5k test folder: 499 JPEGs, 192 x 128) with the default model (TagProp on
EfficientNet-Lite2 features, ONNX Runtime):

- *local*: `annotate_files` with a fresh, empty feature store (so every photo is decoded
  and encoded, as on a first run), default decoding workers;
- *ray*: `annotate_files_ray` on a local Ray instance with ``--cpus`` CPUs, started
  once beforehand (``ray.init`` is timed separately; actor start and model loading are
  included, as they are in every run).

Both produce every record; the script checks that they agree (paths, errors, labels,
scores within 1e-5) and writes bench/results/ray_engine.json with the load average at
the start and end of each measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=ROOT.parent / "shared/data/corel5k/test")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--model", default="default")
    parser.add_argument(
        "--wait-idle", type=float, default=0.0, metavar="LOAD",
        help="before each run, wait (at most 10 min) for the 1-min load average to drop below LOAD",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/ray_engine.json")
    args = parser.parse_args()

    from phototag.imaging import iter_image_files
    from phototag.library.annotation import annotate_files
    from phototag.pretrained import load_model

    paths = [str(p) for p in iter_image_files([args.images])]
    model = load_model(args.model)

    import ray

    from phototag.engines.ray import ModelSource, annotate_files_ray

    start = time.perf_counter()
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    init_seconds = time.perf_counter() - start
    source = ModelSource.of(args.model)

    def local() -> list:
        with tempfile.TemporaryDirectory() as store:
            return list(annotate_files(paths, model, store_root=store, progress=False))

    def remote() -> list:
        encoders = model.required_inputs().sources
        return list(annotate_files_ray(paths, source, encoders=encoders, progress=False))

    runs: list[dict] = []
    results: dict[str, list] = {}
    for round_ in range(args.rounds):  # alternate the order, so load changes hit both
        for engine in ("local", "ray") if round_ % 2 == 0 else ("ray", "local"):
            _wait_idle(args.wait_idle)
            run, results[engine] = _timed(engine, local if engine == "local" else remote)
            runs.append(run)
    ray.shutdown()
    mismatches = _mismatches(results["local"], results["ray"])
    report = {
        "command": f"bench/bench_ray_engine.py --cpus {args.cpus} --rounds {args.rounds} "
        f"--model {args.model} --wait-idle {args.wait_idle}",
        "images": str(args.images),
        "n_photos": len(paths),
        "cpus": os.cpu_count(),
        "ray_cpus": args.cpus,
        "ray_init_seconds": round(init_seconds, 2),
        "machine": platform.platform(),
        "runs": runs,
        "records_differing": mismatches,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def _wait_idle(load: float) -> None:
    deadline = time.monotonic() + 600
    while load > 0 and os.getloadavg()[0] >= load and time.monotonic() < deadline:
        time.sleep(15)


def _timed(engine: str, make) -> tuple[dict, list]:  # type: ignore[no-untyped-def]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    results = make()
    seconds = time.perf_counter() - start
    run = {
        "engine": engine,
        "seconds": round(seconds, 2),
        "photos_per_second": round(len(results) / seconds, 2),
        "failed": sum(r.error is not None for r in results),
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    print(run, flush=True)
    return run, results


def _mismatches(local: list, remote: list) -> int:
    differing = 0
    for a, b in zip(local, remote, strict=True):
        same = a.path == b.path and a.error == b.error and len(a.tags) == len(b.tags)
        same = same and all(
            la == lb and abs(sa - sb) <= 1e-5
            for (la, sa), (lb, sb) in zip(a.tags, b.tags, strict=True)
        )
        differing += not same
    return differing


if __name__ == "__main__":
    main()
