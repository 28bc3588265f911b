"""Feature extraction (files -> pooled features in a `FeatureStore`): end-to-end
throughput against the encoder's forward-only throughput, and peak memory on 10,000
images.

Usage (from the repository root)::

    .venv/bin/python bench/bench_extract.py all                # everything (~25 min idle)
    .venv/bin/python bench/bench_extract.py throughput         # requirement 1 only
    .venv/bin/python bench/bench_extract.py throughput --sets corel --runtimes onnx
    .venv/bin/python bench/bench_extract.py memory             # requirement 2 only
    .venv/bin/python bench/bench_extract.py tune --set 24mp    # workers / prefetch sweep

Add ``--wait-idle`` to wait (polling every 30 s, at most 20 minutes per measurement)
for the 1-minute load average to drop below 1.5 before each measurement; the load at
the start and end of every measurement is recorded either way.

Throughput protocol, per image set and runtime (``onnx``: the extraction default,
``torch``: eager PyTorch): the encoder ``efficientnet_lite2`` is built once; the
*forward-only* reference runs ``encoder.pooled(x)`` on a pre-made, normalised
32-image tensor, as many batches as the end-to-end run has images; *end-to-end* is the
wall time of ``extract_features(paths, encoder, fresh_store, batch_size=32)``: pool
start, hashing, decoding, batching, forward passes, and the synced store writes. The two
alternate over ``--rounds`` rounds (order flipped every round), so load from other jobs
hits both alike; medians are reported, and the ratio is the median of the per-round
ratios. The *naive* pipeline (hash, ``PIL.Image.open(path).convert("RGB")`` at full
size, ``encoder.transform([image])``, one image per eager-torch forward, store add) is
measured once per image set on a subset of the same files.

Image sets: ``corel`` reads Corel-5k JPEGs (192 x 128) from ../shared/data/corel5k;
``24mp`` generates 6000 x 4000 JPEGs (Corel photos upscaled bicubically, Gaussian noise
sigma 2.5 added, quality 90) into a temporary directory. The memory run generates 10,000
distinct small JPEGs (Corel photos with an index-coloured 16 x 16 corner, so that no two
files have the same content digest), extracts them in a subprocess with
``runtime="onnx"``, and samples the subprocess's VmRSS (and its decode workers') from
/proc every 0.5 s. Results: bench/results/extract.json (sections are updated per
subcommand).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COREL = ROOT.parent / "shared" / "data" / "corel5k"
DEFAULT_OUT = ROOT / "bench" / "results" / "extract.json"
ENCODER = "efficientnet_lite2"
TARGET_RATIO = 0.85
IDLE_LOAD = 1.5


# --------------------------------------------------------------------------- machine


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def wait_for_idle(enabled: bool, threshold: float = IDLE_LOAD, max_wait: float = 1200) -> float:
    """Poll every 30 s until the 1-minute load is below `threshold`; seconds waited."""
    start = time.monotonic()
    while enabled and os.getloadavg()[0] >= threshold:
        waited = time.monotonic() - start
        if waited >= max_wait:
            print(f"  load still {load_average()} after {waited:.0f} s; measuring anyway")
            break
        print(f"  load {load_average()} >= {threshold}; waiting ({waited:.0f} s)", flush=True)
        time.sleep(30)
    return round(time.monotonic() - start, 1)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (pool workers are reaped)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def machine_info() -> dict[str, Any]:
    import onnxruntime
    import PIL
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": onnxruntime.__version__,
        "pillow": PIL.__version__,
    }


# --------------------------------------------------------------------------- data


def corel_paths() -> list[str]:
    paths = sorted(glob.glob(str(COREL / "train" / "*.jpeg")))
    paths += sorted(glob.glob(str(COREL / "test" / "*.jpeg")))
    if not paths:
        sys.exit(f"no Corel-5k JPEGs under {COREL}/{{train,test}}")
    return paths


def _make_large(job: tuple[str, str, int, tuple[int, int]]) -> str:
    from PIL import Image

    source, target, seed, size = job
    with Image.open(source) as image:
        rgb = image.convert("RGB")
    size = size if rgb.width >= rgb.height else size[::-1]
    big = np.asarray(rgb.resize(size, Image.Resampling.BICUBIC), dtype=np.uint8).copy()
    rng = np.random.default_rng(seed)
    for top in range(0, big.shape[0], 500):  # strips keep the float noise small
        strip = big[top : top + 500].astype(np.float32)
        strip += rng.normal(0.0, 2.5, strip.shape).astype(np.float32)
        big[top : top + 500] = np.clip(strip, 0, 255).round().astype(np.uint8)
    Image.fromarray(big).save(target, quality=90)
    return target


def make_large(directory: Path, count: int, size: tuple[int, int] = (6000, 4000)) -> list[str]:
    """`count` photo-like JPEGs of `size` (default 24 MP; landscape Corel photos,
    upscaled + noise), made once: files already in `directory` are reused."""
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    targets = [str(directory / f"big{i:03d}.jpg") for i in range(count)]
    if all(os.path.exists(t) for t in targets):
        return targets
    sources = []
    for path in corel_paths():
        with Image.open(path) as image:
            if image.width > image.height:
                sources.append(path)
        if len(sources) == count:
            break
    megapixels = size[0] * size[1] / 1e6
    print(f"generating {count} {megapixels:.0f}-megapixel JPEGs in {directory} ...", flush=True)
    start = time.perf_counter()
    jobs = [(s, t, i, size) for i, (s, t) in enumerate(zip(sources, targets, strict=True))]
    with _process_pool() as pool:
        pool.map(_make_large, jobs, chunksize=1)
    sizes = [os.path.getsize(t) for t in targets]
    print(
        f"  {time.perf_counter() - start:.0f} s, {np.mean(sizes) / 2**20:.1f} MiB/file on average"
    )
    return targets


def _make_unique(job: tuple[str, str, int]) -> None:
    from PIL import Image

    source, target, index = job
    with Image.open(source) as image:
        pixels = np.array(image.convert("RGB"))
    # A 16 x 16 corner coloured from the index: survives JPEG quantisation, so every
    # file has different bytes and a different content digest.
    pixels[:16, :16] = (index % 256, (index // 256) % 256, 255 - (index * 37) % 256)
    Image.fromarray(pixels).save(target, quality=90)


def make_unique_small(directory: Path, count: int) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    targets = [str(directory / f"u{i:05d}.jpg") for i in range(count)]
    if all(os.path.exists(t) for t in targets):
        return targets
    sources = corel_paths()
    print(f"generating {count} distinct small JPEGs in {directory} ...", flush=True)
    start = time.perf_counter()
    jobs = [(sources[i % len(sources)], t, i) for i, t in enumerate(targets)]
    with _process_pool() as pool:
        pool.map(_make_unique, jobs, chunksize=64)
    print(f"  {time.perf_counter() - start:.0f} s")
    return targets


@contextmanager
def _process_pool():  # type: ignore[no-untyped-def]
    import multiprocessing

    pool = multiprocessing.get_context("fork").Pool(os.cpu_count() or 2)
    try:
        yield pool
    finally:
        pool.close()
        pool.join()


def warm_page_cache(paths: Sequence[str]) -> None:
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass


# --------------------------------------------------------------------------- pipelines


def build_encoder(runtime: str, cache: Path):  # type: ignore[no-untyped-def]
    from phototag.features.encoders import create_encoder

    start = time.perf_counter()
    encoder = create_encoder(ENCODER, runtime=runtime, cache_dir=cache)
    if encoder.runtime != runtime:
        sys.exit(f"asked for runtime={runtime!r}, got {encoder.runtime!r}")
    return encoder, time.perf_counter() - start


def premade_batch(encoder, paths: Sequence[str], batch: int):  # type: ignore[no-untyped-def]
    """The first `batch` files through the extraction's own preprocessing, normalised."""
    from phototag.features.encoders.preprocess import normalize
    from phototag.features.extract import load_model_input

    pixels = [load_model_input(p, encoder.preprocess) for p in paths[:batch]]
    while len(pixels) < batch:
        pixels.append(pixels[len(pixels) % len(paths)])
    return normalize(np.stack(pixels), encoder.preprocess)


def forward_only(encoder, x, n_images: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds for `n_images` images of forward passes on the pre-made batch `x`."""
    batch = len(x)
    start = time.perf_counter()
    done = 0
    while done < n_images:
        take = min(batch, n_images - done)
        encoder.pooled(x if take == batch else x[:take])
        done += take
    return time.perf_counter() - start


def end_to_end(
    encoder, paths: Sequence[str], store_dir: Path, batch: int, workers: int | None
) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """One `extract_features` run into a fresh store: wall and CPU seconds."""
    from phototag.features.extract import extract_features
    from phototag.features.store import FeatureStore

    shutil.rmtree(store_dir, ignore_errors=True)
    with FeatureStore(store_dir, encoder.feature_id, encoder.num_features) as store:
        cpu0, start = cpu_seconds(), time.perf_counter()
        _, report = extract_features(
            paths, encoder, store, batch_size=batch, workers=workers, progress=False
        )
        wall = time.perf_counter() - start
        cpu = cpu_seconds() - cpu0
        rows = len(store)
    if report.failures or rows != len(paths):
        sys.exit(f"extraction stored {rows} of {len(paths)} files: {report.failures[:3]}")
    return {
        "seconds": wall,
        "seconds_after_hashing": report.seconds,
        "cpu_seconds": cpu,
    }


def naive(encoder_torch, paths: Sequence[str], store_dir: Path) -> float:  # type: ignore[no-untyped-def]
    """Seconds for the naive pipeline: full-size decode, one image per eager forward."""
    from PIL import Image

    from phototag.features.store import FeatureStore
    from phototag.imaging import file_digest

    shutil.rmtree(store_dir, ignore_errors=True)
    with FeatureStore(store_dir, encoder_torch.feature_id, encoder_torch.num_features) as store:
        start = time.perf_counter()
        for path in paths:
            digest = file_digest(path)
            with Image.open(path) as image:
                rgb = image.convert("RGB")
            vector = encoder_torch.pooled(encoder_torch.transform([rgb])).numpy()
            store.add([digest], vector)
        return time.perf_counter() - start


# --------------------------------------------------------------------------- throughput


def image_set(name: str, work: Path, args: argparse.Namespace) -> list[str]:
    if name == "corel":
        return corel_paths()[: args.n_corel]
    if name == "24mp":
        return make_large(work / "24mp", args.n_24mp)
    raise ValueError(name)


def run_throughput(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cache = work / "onnx-cache"
    sets: dict[str, Any] = {}
    naive_cache: dict[str, Any] = {}
    for set_name in args.sets:
        paths = image_set(set_name, work, args)
        warm_page_cache(paths)
        sets[set_name] = {"files": len(paths), "runtimes": {}}
        for runtime in args.runtimes:
            n = len(paths)
            if runtime == "torch" and set_name == "corel":
                n = min(n, args.n_corel_torch)
            use = paths[:n]
            waited = wait_for_idle(args.wait_idle)
            load_start = load_average()
            print(f"\n[{set_name} / {runtime}] {n} files, load {load_start}", flush=True)
            encoder, setup = build_encoder(runtime, cache)
            x = premade_batch(encoder, use, args.batch)
            encoder.pooled(x)  # warm-up
            rounds = []
            for r in range(args.rounds):
                order = ("fwd", "e2e") if r % 2 == 0 else ("e2e", "fwd")
                result: dict[str, Any] = {}
                for step in order:
                    if step == "fwd":
                        result["forward_s"] = forward_only(encoder, x, n)
                    else:
                        result.update(
                            end_to_end(encoder, use, work / "store", args.batch, args.workers)
                        )
                result["ratio"] = result["forward_s"] / result["seconds"]
                rounds.append(result)
                print(
                    f"  round {r + 1}: forward-only {n / result['forward_s']:.2f} img/s, "
                    f"end-to-end {n / result['seconds']:.2f} img/s "
                    f"(ratio {result['ratio']:.3f}, cpu {result['cpu_seconds']:.0f} s "
                    f"in {result['seconds']:.0f} s)",
                    flush=True,
                )
            if set_name not in naive_cache and not args.no_naive:
                naive_cache[set_name] = measure_naive(set_name, paths, args, work, cache)
            load_end = load_average()
            fwd = float(np.median([n / r["forward_s"] for r in rounds]))
            e2e = float(np.median([n / r["seconds"] for r in rounds]))
            entry: dict[str, Any] = {
                "files": n,
                "batch_size": args.batch,
                "workers": args.workers,
                "setup_s": round(setup, 1),
                "forward_only_images_per_s": round(fwd, 2),
                "end_to_end_images_per_s": round(e2e, 2),
                "end_to_end_over_forward": round(float(np.median([r["ratio"] for r in rounds])), 3),
                "target": TARGET_RATIO,
                "rounds": [
                    {
                        "forward_only_images_per_s": round(n / r["forward_s"], 2),
                        "end_to_end_images_per_s": round(n / r["seconds"], 2),
                        "end_to_end_excluding_hashing_images_per_s": round(
                            n / r["seconds_after_hashing"], 2
                        ),
                        "end_to_end_cpu_cores_used": round(r["cpu_seconds"] / r["seconds"], 2),
                        "ratio": round(r["ratio"], 3),
                    }
                    for r in rounds
                ],
                "waited_for_idle_s": waited,
                "load_average_start": load_start,
                "load_average_end": load_end,
            }
            entry["pass"] = entry["end_to_end_over_forward"] >= TARGET_RATIO
            if set_name in naive_cache:
                nv = naive_cache[set_name]
                entry["naive_images_per_s"] = nv["images_per_s"]
                entry["speedup_vs_naive"] = round(e2e / nv["images_per_s"], 2)
            sets[set_name]["runtimes"][runtime] = entry
        if set_name in naive_cache:
            sets[set_name]["naive"] = naive_cache[set_name]
    return sets


def measure_naive(
    set_name: str, paths: Sequence[str], args: argparse.Namespace, work: Path, cache: Path
) -> dict[str, Any]:
    n = args.n_naive_corel if set_name == "corel" else args.n_naive_24mp
    use = list(paths[:n])
    load_start = load_average()
    encoder, _ = build_encoder("torch", cache)
    encoder.pooled(encoder.transform([np.zeros((300, 300, 3), np.uint8)]))  # warm-up
    seconds = naive(encoder, use, work / "naive-store")
    print(f"  naive ({set_name}, {n} files): {n / seconds:.2f} img/s", flush=True)
    return {
        "files": n,
        "images_per_s": round(n / seconds, 2),
        "pipeline": "file_digest + PIL.Image.open().convert('RGB') full size + "
        "encoder.transform([image]) + eager torch forward of 1 image + store.add",
        "load_average_start": load_start,
        "load_average_end": load_average(),
    }


# --------------------------------------------------------------------------- tuning


def run_tune(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """End-to-end throughput under several worker counts and prefetch depths, each
    against a forward-only reference measured just before it."""
    import phototag.features.extract as extract

    paths = image_set(args.set, work, args)
    warm_page_cache(paths)
    encoder, _ = build_encoder(args.runtime, work / "onnx-cache")
    x = premade_batch(encoder, paths, args.batch)
    encoder.pooled(x)
    n = len(paths)
    settings: list[dict[str, Any]] = [{"workers": w} for w in args.tune_workers]
    settings += [{"workers": 1, "prefetch_batches": p} for p in args.tune_prefetch]
    rows = []
    for setting in settings:
        saved = extract.PREFETCH_BATCHES
        if "prefetch_batches" in setting:
            extract.PREFETCH_BATCHES = setting["prefetch_batches"]
        load_start = load_average()
        fwd = n / forward_only(encoder, x, n)
        e2e = end_to_end(encoder, paths, work / "store", args.batch, setting["workers"])
        extract.PREFETCH_BATCHES = saved
        row = {
            **setting,
            "forward_only_images_per_s": round(fwd, 2),
            "end_to_end_images_per_s": round(n / e2e["seconds"], 2),
            "ratio": round(n / e2e["seconds"] / fwd, 3),
            "cpu_cores_used": round(e2e["cpu_seconds"] / e2e["seconds"], 2),
            "load_average": [load_start, load_average()],
        }
        print(row, flush=True)
        rows.append(row)
    return {"set": args.set, "runtime": args.runtime, "files": n, "rows": rows}


# --------------------------------------------------------------------------- memory


def memory_child(args: argparse.Namespace) -> int:
    """Runs in the measured subprocess: extract the listed files, printing progress."""
    from phototag.features.encoders import create_encoder
    from phototag.features.extract import extract_features
    from phototag.features.store import FeatureStore

    paths = Path(args.list).read_text().split("\n")
    encoder = create_encoder(ENCODER, runtime="onnx", cache_dir=args.cache)
    with FeatureStore(args.store, encoder.feature_id, encoder.num_features) as store:
        add = store.add

        def add_and_report(digests: Sequence[str], vectors: np.ndarray) -> None:
            add(digests, vectors)
            print(f"rows {len(store)} rss_kb {_status_kb('self', 'VmRSS')}", flush=True)

        store.add = add_and_report  # type: ignore[method-assign]
        print("start", flush=True)
        _, report = extract_features(
            paths, encoder, store, batch_size=args.batch, workers=args.workers, progress=False
        )
        print(f"done {report.n_computed} failures {len(report.failures)}", flush=True)
    return 0


def _status_kb(pid: int | str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def run_memory(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    paths = make_unique_small(work / "unique", args.n_memory)
    warm_page_cache(paths)
    listing = work / "unique.txt"
    listing.write_text("\n".join(paths))
    cache = work / "onnx-cache"
    build_encoder("onnx", cache)  # export once, outside the measured process
    waited = wait_for_idle(args.wait_idle)
    load_start = load_average()
    print(f"\n[memory] {len(paths)} files, load {load_start}", flush=True)
    shutil.rmtree(work / "memory-store", ignore_errors=True)
    command = [
        sys.executable, __file__, "_memory-child", "--list", str(listing),
        "--store", str(work / "memory-store"), "--cache", str(cache),
        "--batch", str(args.batch),
    ]  # fmt: skip
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    progress = {"rows": 0, "started": None, "done": None}
    per_batch: list[tuple[int, int]] = []  # (rows, child-reported VmRSS kB) after each add

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            parts = line.split()
            if parts[:1] == ["start"]:
                progress["started"] = time.monotonic()
            elif parts[:1] == ["rows"]:
                progress["rows"] = int(parts[1])
                per_batch.append((int(parts[1]), int(parts[3])))
            elif parts[:1] == ["done"]:
                progress["done"] = line.strip()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    samples: list[tuple[float, int, int, int]] = []  # (t, rows, main kB, workers kB)
    start = time.monotonic()
    hwm = 0
    while child.poll() is None:
        main_kb = _status_kb(child.pid, "VmRSS")
        workers_kb = sum(_status_kb(c, "VmRSS") for c in _children(child.pid))
        if main_kb:
            samples.append((time.monotonic() - start, progress["rows"], main_kb, workers_kb))
            hwm = max(hwm, _status_kb(child.pid, "VmHWM"))
        time.sleep(0.5)
    reader.join(timeout=10)
    if child.returncode != 0 or progress["done"] is None:
        sys.exit(f"memory child failed (exit {child.returncode})")
    load_end = load_average()
    seconds = time.monotonic() - (progress["started"] or start)

    def mb(kb: float) -> float:
        return round(kb / 1024, 1)

    def sample_at(rows: int) -> tuple[float, int, int, int]:
        return next(s for s in samples if s[1] >= rows)

    def batch_at(rows: int) -> int:
        return next(kb for r, kb in per_batch if r >= rows)

    marks = [m for m in (1000, 2000, 5000, args.n_memory) if m <= args.n_memory]
    last_full = [s for s in samples if s[1] >= args.n_memory]
    at_end = last_full[-1] if last_full else samples[-1]
    main_max = max(s[2] for s in samples)
    total_max = max(s[2] + s[3] for s in samples)
    after_1000 = batch_at(1000)
    after_all = batch_at(args.n_memory)
    curve = [
        {"t_s": round(t, 1), "images": rows, "main_mb": mb(m), "workers_mb": mb(w)}
        for t, rows, m, w in samples[:: max(1, len(samples) // 60)]
    ]
    result = {
        "files": len(paths),
        "runtime": "onnx",
        "batch_size": args.batch,
        "workers": args.workers,
        "report": progress["done"],
        "seconds": round(seconds, 1),
        "images_per_s": round(len(paths) / seconds, 2),
        "sampling": "VmRSS from /proc/<pid>/status every 0.5 s (main process; workers summed)",
        "main_rss_mb_after_images": {str(m): mb(batch_at(m)) for m in marks},
        "main_rss_mb_sampled_after_images": {str(m): mb(sample_at(m)[2]) for m in marks},
        "workers_rss_mb_sampled_after_images": {str(m): mb(sample_at(m)[3]) for m in marks},
        "main_rss_mb_max_sampled": mb(main_max),
        "main_vmhwm_mb": mb(hwm),
        "main_plus_workers_rss_mb_max_sampled": mb(total_max),
        "main_rss_mb_at_end": mb(at_end[2]),
        "growth_1000_to_all_mb": mb(after_all - after_1000),
        "growth_limit_mb": args.growth_limit,
        "pass": (after_all - after_1000) / 1024 <= args.growth_limit,
        "curve": curve,
        "waited_for_idle_s": waited,
        "load_average_start": load_start,
        "load_average_end": load_end,
    }
    print(
        f"  RSS after 1,000: {mb(after_1000)} MB, after {len(paths):,}: {mb(after_all)} MB, "
        f"growth {mb(after_all - after_1000)} MB, max sampled {mb(main_max)} MB "
        f"(+ workers: {mb(total_max)} MB); {result['images_per_s']} img/s",
        flush=True,
    )
    return result


# --------------------------------------------------------------------------- output


def print_tables(result: dict[str, Any]) -> None:
    sets = result.get("throughput", {}).get("sets", {})
    if sets:
        header = (
            f"{'images':8s} {'runtime':7s} {'n':>4s} {'forward img/s':>13s} "
            f"{'end-to-end':>10s} {'e2e/fwd':>7s} {'naive':>6s} {'x naive':>7s} "
            f"{'pass':>5s} {'load':>11s}"
        )
        print("\n" + header + "\n" + "-" * len(header))
        for set_name, s in sets.items():
            for runtime, e in s["runtimes"].items():
                load = f"{e['load_average_start']}-{e['load_average_end']}"
                print(
                    f"{set_name:8s} {runtime:7s} {e['files']:4d} "
                    f"{e['forward_only_images_per_s']:13.2f} {e['end_to_end_images_per_s']:10.2f} "
                    f"{e['end_to_end_over_forward']:7.3f} {e.get('naive_images_per_s', 0):6.2f} "
                    f"{e.get('speedup_vs_naive', 0):7.2f} {str(e['pass']):>5s} {load:>11s}"
                )
    memory = result.get("memory")
    if memory:
        after = memory["main_rss_mb_after_images"]
        print(
            f"\nmemory, {memory['files']:,} images: RSS after 1,000 {after['1000']} MB, "
            f"after {memory['files']:,} {after[str(memory['files'])]} MB, growth "
            f"{memory['growth_1000_to_all_mb']} MB, max {memory['main_rss_mb_max_sampled']} MB "
            f"(with workers {memory['main_plus_workers_rss_mb_max_sampled']} MB); "
            f"pass: {memory['pass']}"
        )


def merge_throughput(out: Path, sets: dict[str, Any], command: str) -> dict[str, Any]:
    """The stored throughput results with this run's (set, runtime) entries replaced.

    Each entry records the command that measured it; an entry measured with
    ``--no-naive`` keeps the stored naive rate (the naive pipeline does not change).
    """
    stored = json.loads(out.read_text()) if out.exists() else {}
    merged: dict[str, Any] = stored.get("throughput", {}).get("sets", {})
    for set_name, new in sets.items():
        old_runtimes = merged.get(set_name, {}).get("runtimes", {})
        for runtime, entry in new["runtimes"].items():
            entry["command"] = command
            naive = old_runtimes.get(runtime, {}).get("naive_images_per_s")
            if "naive_images_per_s" not in entry and naive:
                entry["naive_images_per_s"] = naive
                entry["speedup_vs_naive"] = round(entry["end_to_end_images_per_s"] / naive, 2)
        runtimes = {**old_runtimes, **new["runtimes"]}
        merged[set_name] = {**merged.get(set_name, {}), **new, "runtimes": runtimes}
    return merged


def update_results(out: Path, section: str, value: Any, command: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    result["benchmark"] = "feature extraction: end-to-end throughput and memory"
    result["encoder"] = ENCODER
    result["machine"] = machine_info()
    result[section] = {"command": command, **value}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["all", "throughput", "memory", "tune", "_memory-child"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--work", type=Path, help="data directory to reuse (default: temp)")
    parser.add_argument("--wait-idle", action="store_true", help="wait for load < 1.5 first")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="default: the library's")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sets", type=lambda s: s.split(","), default=["corel", "24mp"])
    parser.add_argument("--runtimes", type=lambda s: s.split(","), default=["onnx", "torch"])
    parser.add_argument("--n-corel", type=int, default=640)
    parser.add_argument("--n-corel-torch", type=int, default=320)
    parser.add_argument("--n-24mp", type=int, default=48)
    parser.add_argument("--n-naive-corel", type=int, default=64)
    parser.add_argument("--n-naive-24mp", type=int, default=16)
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--n-memory", type=int, default=10_000)
    parser.add_argument("--growth-limit", type=float, default=50.0, help="MB, memory pass mark")
    parser.add_argument("--set", default="24mp", help="tune: image set")
    parser.add_argument("--runtime", default="onnx", help="tune: runtime")
    parser.add_argument("--tune-workers", type=lambda s: [int(w) for w in s.split(",")],
                        default=[0, 1, 2])  # fmt: skip
    parser.add_argument("--tune-prefetch", type=lambda s: [int(w) for w in s.split(",")],
                        default=[1, 2, 4])  # fmt: skip
    # _memory-child only
    parser.add_argument("--list")
    parser.add_argument("--store")
    parser.add_argument("--cache")
    args = parser.parse_args(argv)
    if args.command == "_memory-child":
        return memory_child(args)

    command = "python bench/bench_extract.py " + " ".join(argv or sys.argv[1:])
    work_root = args.work or Path(tempfile.mkdtemp(prefix="phototag-bench-extract-"))
    try:
        result: dict[str, Any] = {}
        if args.command == "tune":
            tune = run_tune(args, work_root)
            result = update_results(args.out, f"tune_{args.set}_{args.runtime}", tune, command)
            return 0
        if args.command in ("all", "throughput"):
            sets = merge_throughput(args.out, run_throughput(args, work_root), command)
            result = update_results(args.out, "throughput", {"sets": sets}, command)
        if args.command in ("all", "memory"):
            memory = run_memory(args, work_root)
            result = update_results(args.out, "memory", memory, command)
        print_tables(result)
        print(f"\nwritten to {args.out}")
    finally:
        if args.work is None:
            shutil.rmtree(work_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
