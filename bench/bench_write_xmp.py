"""Throughput of ``phototag annotate`` with ``--write xmp`` (sidecar, and ``--embed``)
against the same command without writing, on the same photos.

Usage::

    .venv/bin/python bench/bench_write_xmp.py                  # 120 photos, 3 rounds
    .venv/bin/python bench/bench_write_xmp.py --photos 300 --rounds 5 --size 4000

Protocol: ``--photos`` distinct JPEGs of ``--size`` px on the long side are made from
the public-domain photos in examples/ (seeded random crops, flips and colour changes,
quality 90), so no two share features. Each round runs the three variants (no
writing, ``--write xmp``, ``--write xmp --embed``) in a rotating order, so load from
other jobs on a shared machine hits all of them alike, each as a fresh
``phototag annotate`` process on a fresh copy of the photos (first-time writes), in
two settings:

* cold: an empty feature store, the real first run over a library (decode + encode
  + score + write);
* warm: features already in the store (annotating again, e.g. with another model):
  the smallest amount of work writing is compared with.

Reported: median photos/s over the rounds per variant and setting, and the overhead
of each writing variant against no writing (``1 - rate / rate_without``). On a loaded
machine whole-process rates vary by more than the effect measured, so each round also
times the writing alone, in-process (`KeywordWriter.write` of the keywords the default
model gave each photo, on a fresh copy, sidecar and embedded), and reports the implied
overhead ``write_ms / (write_ms + annotate_ms_per_photo)`` against the median
no-writing rate of each setting. The load
average before and after is recorded (the machine may be shared). Results:
bench/results/write_xmp.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
VARIANTS = {"none": [], "sidecar": ["--write", "xmp"], "embed": ["--write", "xmp", "--embed"]}


def make_photos(folder: Path, count: int, size: int, seed: int = 0) -> None:
    """`count` distinct JPEGs made from the example photos."""
    rng = np.random.default_rng(seed)
    sources = [Image.open(p).convert("RGB") for p in sorted(EXAMPLES.glob("*.jpg"))]
    folder.mkdir(parents=True)
    for i in range(count):
        image = sources[i % len(sources)]
        w, h = image.size
        left, top = int(rng.integers(0, w // 5)), int(rng.integers(0, h // 5))
        crop = image.crop((left, top, left + int(w * 0.8), top + int(h * 0.8)))
        if rng.random() < 0.5:
            crop = ImageOps.mirror(crop)
        crop = ImageEnhance.Color(crop).enhance(float(rng.uniform(0.6, 1.4)))
        scale = size / max(crop.size)
        crop = crop.resize((round(crop.width * scale), round(crop.height * scale)),
                           Image.Resampling.BICUBIC)  # fmt: skip
        crop.save(folder / f"photo_{i:05d}.jpg", quality=90)


def run_annotate(photos: Path, store: Path, cache: Path, extra: list[str], workers: int) -> float:
    """Seconds of one ``phototag annotate`` process over `photos` (`cache`: phototag's
    cache folder, shared by the runs so the exported encoder is reused; each run's
    photos are in a folder of their own, so each run starts a journal of its own)."""
    command = [str(ROOT / ".venv" / "bin" / "phototag"), "annotate", str(photos),
               "--format", "json", "--store", str(store), "--workers", str(workers), *extra]
    environment = dict(os.environ, PHOTOTAG_CACHE=str(cache))
    start = time.perf_counter()
    done = subprocess.run(command, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"annotate failed ({done.returncode}):\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if len(lines) != sum(1 for _ in photos.glob("*.jpg")):
        sys.exit(f"expected one line per photo, got {len(lines)}")
    return seconds


def time_writes(originals: Path, work: Path, tags: dict[str, list], embed: bool) -> float:
    """Milliseconds per photo of `KeywordWriter.write` on a fresh copy of the photos."""
    from phototag.metadata import KeywordWriter, Provenance

    shutil.copytree(originals, work)
    with open(os.devnull, "w") as quiet:
        writer = KeywordWriter(Provenance("default:bench"), embed=embed, stream=quiet)
        start = time.perf_counter()
        for name, labels in tags.items():
            writer.write(str(work / name), labels)
        seconds = time.perf_counter() - start
    if writer.failed or writer.written != len(tags):
        sys.exit(f"writes failed: {writer.summary()}")
    shutil.rmtree(work)
    return 1000 * seconds / len(tags)


def default_tags(originals: Path, store: Path, cache: Path) -> dict[str, list]:
    """The keywords the default model gives each photo (from the warm store)."""
    command = [str(ROOT / ".venv" / "bin" / "phototag"), "annotate", str(originals),
               "--format", "json", "--store", str(store), "--workers", "0"]
    done = subprocess.run(command, env=dict(os.environ, PHOTOTAG_CACHE=str(cache)),
                          capture_output=True, text=True, check=True)  # fmt: skip
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {Path(r["path"]).name: [(t["label"], t["score"]) for t in r["tags"]] for r in records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--size", type=int, default=2000, help="long side in px")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="decoding processes")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "write_xmp.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rates: dict[str, dict[str, list[float]]] = {s: {v: [] for v in VARIANTS}
                                                for s in ("cold", "warm")}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench_write_xmp_") as tmp:
        tmp_path = Path(tmp)
        originals = tmp_path / "originals"
        make_photos(originals, args.photos, args.size)
        megabytes = sum(p.stat().st_size for p in originals.iterdir()) / 2**20
        warm_store = tmp_path / "warm-store"
        cache = tmp_path / "cache"
        run_annotate(originals, warm_store, cache, [], args.workers)
        tags = default_tags(originals, warm_store, cache)
        write_ms: dict[str, list[float]] = {"sidecar": [], "embed": []}
        names = list(VARIANTS)
        for round_ in range(args.rounds):
            order = names[round_ % len(names):] + names[: round_ % len(names)]
            for setting in ("cold", "warm"):
                for name in order:
                    run_dir = tmp_path / f"{setting}-{name}-{round_}"
                    photos = run_dir / "photos"
                    shutil.copytree(originals, photos)
                    store = warm_store if setting == "warm" else run_dir / "store"
                    seconds = run_annotate(photos, store, cache, VARIANTS[name], args.workers)
                    rates[setting][name].append(args.photos / seconds)
                    print(f"round {round_ + 1} {setting:>4} {name:>7}: "
                          f"{args.photos / seconds:6.2f} photos/s", flush=True)  # fmt: skip
                    shutil.rmtree(run_dir)
            for name in ("sidecar", "embed"):
                write_ms[name].append(time_writes(originals, tmp_path / f"writes-{round_}",
                                                  tags, embed=name == "embed"))  # fmt: skip
                print(f"round {round_ + 1} writes {name:>7}: {write_ms[name][-1]:6.2f} ms/photo",
                      flush=True)  # fmt: skip
    load_after = os.getloadavg()
    summary = {}
    for setting, by_variant in rates.items():
        median = {name: statistics.median(values) for name, values in by_variant.items()}
        summary[setting] = {
            "photos_per_s": {k: round(v, 3) for k, v in median.items()},
            "overhead": {k: round(1 - median[k] / median["none"], 4)
                         for k in ("sidecar", "embed")},  # fmt: skip
            "rounds": {k: [round(x, 3) for x in v] for k, v in by_variant.items()},
        }
    writes = {name: statistics.median(v) for name, v in write_ms.items()}
    implied = {
        setting: {name: round(ms / (ms + 1000 / values["photos_per_s"]["none"]), 4)
                  for name, ms in writes.items()}
        for setting, values in summary.items()
    }  # fmt: skip
    result = {
        "command": " ".join(["bench/bench_write_xmp.py", *sys.argv[1:]]),
        "photos": args.photos, "long_side_px": args.size, "megabytes": round(megabytes, 1),
        "rounds": args.rounds, "workers": args.workers, "model": "default",
        "cpus": os.cpu_count(), "platform": platform.platform(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "results": summary,
        "write_ms_per_photo": {k: round(v, 3) for k, v in writes.items()},
        "write_ms_rounds": {k: [round(x, 3) for x in v] for k, v in write_ms.items()},
        "implied_overhead": implied,
        "keywords_per_photo": round(statistics.mean(len(v) for v in tags.values()), 2),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for setting, values in summary.items():
        rates_text = ", ".join(f"{k} {v:.2f}" for k, v in values["photos_per_s"].items())
        overhead = ", ".join(f"{k} {v:+.1%}" for k, v in values["overhead"].items())
        print(f"{setting}: photos/s {rates_text}; overhead {overhead}")
    print(f"writing alone: {', '.join(f'{k} {v:.2f} ms/photo' for k, v in writes.items())}; "
          f"implied overhead {implied}")
    print(f"load average before {load_before}, after {load_after}; wrote {args.out}")


if __name__ == "__main__":
    main()
