"""`phototag annotate` end to end on the Corel-5k test folder against the encoder's
forward-only throughput (ONNX Runtime, EfficientNet-Lite2, batch 32), in one run.

Usage (from the repository root)::

    .venv/bin/python bench/bench_annotate.py [--rounds 2] [--out bench/results/annotate.json]

End to end is the wall time of the command ``phototag annotate DIR --format json`` with
the default model, a fresh feature store and a fresh journal (so every photo is hashed,
decoded, encoded, scored and printed), including the interpreter start and model load.
Forward-only runs ``encoder.pooled`` on one pre-made normalised batch as many times as
there are photos. The two alternate over the rounds; medians are reported with the load
average, since the 2 cores are often shared.
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
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import build_encoder, forward_only, load_average, machine_info, premade_batch  # noqa: E402, I001

ROOT = Path(__file__).resolve().parents[1]
TEST_DIR = ROOT.parent / "shared" / "data" / "corel5k" / "test"


def annotate_seconds(folder: Path, work: Path) -> tuple[float, int]:
    """Wall seconds of one `phototag annotate` run, and the number of photos it printed."""
    shutil.rmtree(work / "store", ignore_errors=True)
    command = [
        str(ROOT / ".venv" / "bin" / "phototag"), "annotate", str(folder), "--format", "json",
        "--store", str(work / "store"), "--journal", str(work / "journal.sqlite"), "--restart",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    return seconds, sum(1 for line in done.stdout.splitlines() if line.startswith("{"))


def median(rounds: list[dict[str, float]], key: str, digits: int) -> float:
    return round(float(np.median([r[key] for r in rounds])), digits)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "annotate.json")
    args = parser.parse_args()
    paths = sorted(str(p) for p in TEST_DIR.glob("*.jpeg"))
    if not paths:
        sys.exit(f"no Corel-5k test photos in {TEST_DIR}")
    work = Path(tempfile.mkdtemp(prefix="phototag-bench-annotate-"))
    try:
        encoder, _ = build_encoder("onnx", work / "onnx")
        x = premade_batch(encoder, paths, 32)
        encoder.pooled(x)
        load_start = load_average()
        rounds = []
        for r in range(args.rounds):
            result = {}
            for step in ("fwd", "e2e") if r % 2 == 0 else ("e2e", "fwd"):
                if step == "fwd":
                    seconds = forward_only(encoder, x, len(paths))
                    result["forward_images_per_s"] = len(paths) / seconds
                else:
                    seconds, printed = annotate_seconds(TEST_DIR, work)
                    if printed != len(paths):
                        sys.exit(f"annotate printed {printed} of {len(paths)} photos")
                    result["annotate_images_per_s"] = len(paths) / seconds
            result["ratio"] = result["annotate_images_per_s"] / result["forward_images_per_s"]
            print({k: round(v, 3) for k, v in result.items()}, flush=True)
            rounds.append(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        "benchmark": "phototag annotate on the Corel-5k test folder vs forward-only",
        "command": "python bench/bench_annotate.py " + " ".join(sys.argv[1:]),
        "photos": len(paths),
        "model": "default",
        "encoder": "efficientnet_lite2 (onnx), batch 32",
        "forward_only_images_per_s": median(rounds, "forward_images_per_s", 2),
        "annotate_images_per_s": median(rounds, "annotate_images_per_s", 2),
        "annotate_over_forward": median(rounds, "ratio", 3),
        "rounds": [{k: round(v, 3) for k, v in r.items()} for r in rounds],
        "load_average": [load_start, load_average()],
        "cpu_count": os.cpu_count(),
        "machine": machine_info(),
    }
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
