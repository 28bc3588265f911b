"""`phototag annotate` end to end against the encoder's forward-only throughput, in one run:
the Corel-5k test folder as JSON output and with ``--write xmp``, and a folder of
24-megapixel JPEGs against the CPU-time bound it faces.

Usage (from the repository root)::

    .venv/bin/python bench/bench_annotate.py [--rounds 3] [--large DIR | --large-count 40]
        [--out bench/results/annotate.json]

Every annotate run is the command ``phototag annotate DIR --format json`` with the
default model, a fresh feature store and a fresh journal (every photo is hashed,
decoded, encoded, scored, printed and journaled), timed from the interpreter start to
its exit. ``--write xmp`` runs on a fresh copy of the folder (made and written to disk
before the clock starts) and writes a sidecar per photo. The commands run as on a
user's machine, with Python's compiled modules cached. Forward-only runs the same encoder
(``forward_pixels`` on one pre-made uint8 batch of 32, ONNX Runtime, warmed up) as many
times as there are photos, in a process of its own: while this process held that
session's memory, the next command's first forward passes were up to 0.7 s slower
(faulting in fresh memory), which no user's run would see. The steps alternate over the
rounds (order reversed every other round); medians are reported with the load average,
since the 2 cores are often shared.

Large photos: ``--large DIR`` names a folder of JPEGs; by default `--large-count`
6000 x 4000 JPEGs are generated once into ``$TMPDIR/phototag-bench-24mp`` (Corel photos
upscaled, noise added, quality 90: ``bench_extract.make_large``). Their bound: each photo
costs ``hash + decode`` CPU ms (measured here, one thread, each file read once before) and
the forward pass's CPU ms per photo (measured in forward-only); with ``c`` cores and the
start-up ``s`` (wall seconds of annotating one small photo), ``n`` photos cannot take less
than ``s + n * (hash + decode + forward) / c`` seconds. The report gives annotate's rate
over that bound. Start-up (annotating one small photo) is measured in every round; the
``past_startup`` rates take the round's start-up off each run's wall time, which shows
the pipeline alone. ``in_process`` runs ``annotate_files`` in the benchmark's own process
(model and encoder loaded, keywords formatted as JSON, nothing printed): the pipeline
without start-up or output, for the Corel folder and the large photos.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import load_average, machine_info, make_large, warm_page_cache  # noqa: E402, I001

ROOT = Path(__file__).resolve().parents[1]
TEST_DIR = ROOT.parent / "shared" / "data" / "corel5k" / "test"
BATCH = 32
#: The commands' environment: Python caches compiled modules, as on a user's machine
#: (a shell with PYTHONDONTWRITEBYTECODE compiles phototag's 80 modules at every start).
ENVIRONMENT = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def cpu_seconds() -> float:
    return time.process_time()


def annotate_seconds(folder: Path, work: Path, *extra: str) -> tuple[float, int]:
    """Wall seconds of one `phototag annotate` run, and the number of photos it printed."""
    shutil.rmtree(work / "store", ignore_errors=True)
    command = [
        sys.executable, "-m", "phototag", "annotate", str(folder), "--format", "json",
        "--store", str(work / "store"), "--journal", str(work / "journal.sqlite"), "--restart",
        *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=ENVIRONMENT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds, sum(1 for line in done.stdout.splitlines() if line.startswith("{"))


def fresh_copy(folder: Path, target: Path) -> Path:
    """A copy of `folder` without sidecars, for one ``--write xmp`` run."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("*.xmp"))
    os.sync()  # on disk, as a library is: writing the copy back is not the run's work
    return target


def premade_pixels(encoder: Any, paths: Sequence[str]) -> np.ndarray:
    """The first `BATCH` files as the encoder's uint8 inputs (repeated if fewer)."""
    from phototag.features.extract import load_model_input

    pixels = [load_model_input(p, encoder.preprocess) for p in paths[:BATCH]]
    while len(pixels) < BATCH:
        pixels.append(pixels[len(pixels) % len(paths)])
    return np.stack(pixels)


def forward_only(paths: Sequence[str], n_images: int) -> tuple[float, float]:
    """Wall seconds and CPU seconds of `n_images` images of forward passes of a warm
    encoder on the first `BATCH` of `paths`."""
    from phototag.features.extract import create_source

    encoder = create_source("efficientnet_lite2")
    pixels = premade_pixels(encoder, paths)
    encoder.forward_pixels(pixels, ["pooled"])  # warm-up
    start, cpu = time.perf_counter(), cpu_seconds()
    done = 0
    while done < n_images:
        take = min(len(pixels), n_images - done)
        encoder.forward_pixels(pixels[:take], ["pooled"])
        done += take
    return time.perf_counter() - start, cpu_seconds() - cpu


def forward_only_in_child(n_images: int) -> tuple[float, float]:
    """`forward_only` on the Corel-5k test photos, in a fresh process of its own."""
    command = [sys.executable, __file__, "--forward-only", str(n_images)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    measured = json.loads(done.stdout)
    return measured["wall_s"], measured["cpu_s"]


def per_photo_cpu_ms(paths: Sequence[str], work: Callable[[str], Any]) -> float:
    """Median CPU milliseconds of `work` per file, in this thread."""
    costs = []
    for path in paths:
        cpu = cpu_seconds()
        work(path)
        costs.append(cpu_seconds() - cpu)
    return float(np.median(costs)) * 1e3


def in_process_rate(encoder: Any, paths: list[str], work: Path) -> float:
    """Photos/s of `annotate_files` in this process (the pipeline without start-up: the
    model and encoder already loaded), into a fresh feature store, keywords as JSON."""
    from phototag.library.annotation import annotate_files
    from phototag.pretrained import load_model

    model = load_model("default")
    shutil.rmtree(work / "store", ignore_errors=True)
    start = time.perf_counter()
    results = annotate_files(paths, model, store_root=work / "store", progress=False,
                             sources={"efficientnet_lite2": encoder})  # fmt: skip
    for result in results:
        json.dumps({"path": result.path, "tags": result.tags})
    return len(paths) / (time.perf_counter() - start)


def median(rounds: list[dict[str, float]], key: str, digits: int) -> float | None:
    """The median of `key` over the rounds (None for a skipped step)."""
    if key not in rounds[0]:
        return None
    return round(float(np.median([r[key] for r in rounds])), digits)


def large_paths(args: argparse.Namespace) -> list[str]:
    if args.large is not None:
        found = sorted(
            str(p) for p in args.large.iterdir() if p.suffix.lower() in (".jpg", ".jpeg")
        )
        if not found:
            sys.exit(f"no JPEGs in {args.large}")
        return found
    return make_large(Path(tempfile.gettempdir()) / "phototag-bench-24mp", args.large_count)


def run_round(
    r: int,
    encoder: Any,
    sets: dict[str, list[str]],
    work: Path,
    skip: Sequence[str] = (),
) -> dict[str, float]:
    """One round: start-up, forward-only and each annotate step, in alternating order;
    rates, and rates past start-up (the round's start-up off each run's wall time)."""
    steps = [s for s in ("fwd", "json", "xmp", "large", "inproc") if s not in skip]
    result: dict[str, float] = {"load": load_average()}
    startup = result["startup_s"] = annotate_seconds(Path(sets["corel"][0]), work)[0]
    for step in steps if r % 2 == 0 else steps[::-1]:
        if step == "fwd":
            wall, cpu = forward_only_in_child(len(sets["corel"]))
            result["forward_images_per_s"] = len(sets["corel"]) / wall
            result["forward_cpu_ms"] = cpu / len(sets["corel"]) * 1e3
            continue
        if step == "inproc":
            for name in ("corel", "large") if sets["large"] else ("corel",):
                rate = in_process_rate(encoder, sets[name], work)
                result[f"inproc_{name}_images_per_s"] = rate
            continue
        name = "large" if step == "large" else "corel"
        folder = Path(sets[name][0]).parent
        extra: tuple[str, ...] = ()
        if step == "xmp":
            folder, extra = fresh_copy(folder, work / "xmp-copy"), ("--write", "xmp")
        seconds, printed = annotate_seconds(folder, work, *extra)
        if printed != len(sets[name]):
            sys.exit(f"annotate printed {printed} of {len(sets[name])} photos ({step})")
        if step == "xmp":  # a photo without confident keywords gets no sidecar
            result["xmp_sidecars"] = len(list(folder.glob("*.xmp")))
            if not result["xmp_sidecars"]:
                sys.exit("annotate --write xmp wrote no sidecar")
        result[f"{step}_images_per_s"] = len(sets[name]) / seconds
        result[f"{step}_past_startup_images_per_s"] = len(sets[name]) / (seconds - startup)
    forward = result["forward_images_per_s"]
    if "inproc" in steps:
        result["inproc_ratio"] = result["inproc_corel_images_per_s"] / forward
    for step in (s for s in steps[1:] if s != "inproc"):
        result[f"{step}_ratio"] = result[f"{step}_images_per_s"] / forward
        result[f"{step}_past_startup_ratio"] = result[f"{step}_past_startup_images_per_s"] / forward
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--large", type=Path, metavar="DIR", help="a folder of large JPEGs")
    parser.add_argument("--large-count", type=int, default=40, metavar="N",
                        help="24 MP JPEGs to generate when --large is not given")  # fmt: skip
    parser.add_argument("--skip", action="append", default=[],
                        choices=("json", "xmp", "large", "inproc"),
                        help="leave a step out (repeatable)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "annotate.json")
    parser.add_argument("--forward-only", type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from phototag.features.extract import create_source, load_model_input
    from phototag.imaging import file_digest

    corel = sorted(str(p) for p in TEST_DIR.glob("*.jpeg"))
    if not corel:
        sys.exit(f"no Corel-5k test photos in {TEST_DIR}")
    if args.forward_only:  # the child `forward_only_in_child` starts
        wall, cpu = forward_only(corel, args.forward_only)
        print(json.dumps({"wall_s": wall, "cpu_s": cpu}))
        return 0
    sets = {"corel": corel, "large": [] if "large" in args.skip else large_paths(args)}
    for paths in sets.values():
        warm_page_cache(paths)
    encoder = create_source("efficientnet_lite2")  # the in-process runs' encoder
    work = Path(tempfile.mkdtemp(prefix="phototag-bench-annotate-"))
    load_start = load_average()
    try:
        rounds = []
        for r in range(args.rounds):
            result = run_round(r, encoder, sets, work, args.skip)
            print({k: round(v, 3) for k, v in result.items()}, flush=True)
            rounds.append(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        "benchmark": "phototag annotate (json, --write xmp, 24 MP) vs forward-only",
        "command": "python bench/bench_annotate.py " + " ".join(sys.argv[1:]),
        "model": "default",
        "encoder": f"efficientnet_lite2 ({encoder.runtime}), batch {BATCH}",
        "corel_photos": len(corel),
        "forward_only_images_per_s": median(rounds, "forward_images_per_s", 2),
        "forward_cpu_ms": median(rounds, "forward_cpu_ms", 2),
        "annotate_images_per_s": median(rounds, "json_images_per_s", 2),
        "annotate_over_forward": median(rounds, "json_ratio", 3),
        "annotate_xmp_images_per_s": median(rounds, "xmp_images_per_s", 2),
        "annotate_xmp_over_forward": median(rounds, "xmp_ratio", 3),
        "startup_s": median(rounds, "startup_s", 2),
        "past_startup": {
            "annotate_over_forward": median(rounds, "json_past_startup_ratio", 3),
            "annotate_xmp_over_forward": median(rounds, "xmp_past_startup_ratio", 3),
        },
        "in_process": {
            "annotate_files_images_per_s": median(rounds, "inproc_corel_images_per_s", 2),
            "annotate_files_over_forward": median(rounds, "inproc_ratio", 3),
        },
    }
    if sets["large"]:
        hash_ms = per_photo_cpu_ms(sets["large"], file_digest)
        decode_ms = per_photo_cpu_ms(
            sets["large"], lambda p: load_model_input(p, encoder.preprocess)
        )
        summary["large"] = large_bound(rounds, sets["large"], hash_ms, decode_ms)
    summary.update({
        "rounds": [{k: round(v, 3) for k, v in r.items()} for r in rounds],
        "load_average": [load_start, load_average()],
        "cpu_count": os.cpu_count(),
        "machine": machine_info(),
    })  # fmt: skip
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "machine"}, indent=2))
    return 0


def large_bound(
    rounds: list[dict[str, float]],
    paths: list[str],
    hash_ms: float,
    decode_ms: float,
) -> dict[str, Any]:
    """The large photos' rate against the CPU-time bound (module docstring)."""
    cores = len(os.sched_getaffinity(0))
    forward_ms = median(rounds, "forward_cpu_ms", 2) or 0.0
    per_photo_ms = hash_ms + decode_ms + forward_ms
    bound_s = (median(rounds, "startup_s", 2) or 0.0) + len(paths) * per_photo_ms / 1e3 / cores
    rate = median(rounds, "large_images_per_s", 2) or 0.0
    past_startup = median(rounds, "large_past_startup_images_per_s", 2) or 0.0
    return {
        "photos": len(paths),
        "megapixels": _megapixels(paths[0]),
        "mib_per_file": round(float(np.mean([os.path.getsize(p) for p in paths])) / 2**20, 1),
        "hash_cpu_ms": round(hash_ms, 1),
        "decode_cpu_ms": round(decode_ms, 1),
        "forward_cpu_ms": forward_ms,
        "cores": cores,
        "bound_images_per_s": round(len(paths) / bound_s, 2),
        "bound_past_startup_images_per_s": round(cores * 1e3 / per_photo_ms, 2),
        "annotate_images_per_s": rate,
        "annotate_over_bound": round(rate * bound_s / len(paths), 3),
        "annotate_over_forward": median(rounds, "large_ratio", 3),
        "annotate_past_startup_images_per_s": past_startup,
        "annotate_past_startup_over_bound": round(past_startup * per_photo_ms / 1e3 / cores, 3),
        "in_process_images_per_s": median(rounds, "inproc_large_images_per_s", 2),
        "in_process_over_bound": round(
            (median(rounds, "inproc_large_images_per_s", 2) or 0.0) * per_photo_ms / 1e3 / cores, 3
        ),
    }


def _megapixels(path: str) -> float:
    from PIL import Image

    with Image.open(path) as image:
        return round(image.width * image.height / 1e6, 1)


if __name__ == "__main__":
    sys.exit(main())
