"""Start-up of the `phototag` command: `--help`, annotating one photo, the first run.

    .venv/bin/python bench/bench_startup.py [--rounds 5] [--phototag PATH]

Each measurement is the wall time of a fresh `phototag` process, median over rounds:

- ``help``: ``phototag --help``.
- ``annotate_one``: ``phototag annotate examples/chelsea.jpg`` with the model and the
  encoder graph ready and the cache in use (another photo annotated before, untimed), the
  photo itself not seen before.
- ``first_run``: the same photo with an empty cache (``PHOTOTAG_CACHE`` pointing at a new
  folder), timed to the first keyword printed, as on a fresh install.

Writes ``bench/results/startup.json`` (``--out``). ``--phototag /tmp/phototag-core/bin/phototag``
measures the core install that ``bench/bench_install.py`` makes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "startup.json"
PHOTO = ROOT / "examples" / "chelsea.jpg"
OTHER = ROOT / "examples" / "coffee.jpg"


def timed(command: list[str], cache: Path) -> tuple[float, float]:
    """(seconds to the first line on stdout, seconds to exit) of `command`."""
    env = {**os.environ, "PHOTOTAG_CACHE": str(cache)}
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    first_at = time.perf_counter() - start
    rest, err = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    process.wait()
    total = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}): {err}")
    if not (first + rest).strip():
        raise SystemExit(f"{' '.join(command)} printed nothing")
    return first_at, total


def summary(samples: list[float]) -> dict[str, object]:
    return {
        "median_s": round(statistics.median(samples), 3),
        "samples_s": [round(s, 3) for s in samples],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--phototag", default=str(Path(sys.executable).with_name("phototag")),
        help="the phototag executable (default: the one next to this Python)",
    )  # fmt: skip
    parser.add_argument("--no-first-run", action="store_true", help="skip the empty-cache runs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (JSON)")
    args = parser.parse_args()
    phototag = [args.phototag]
    help_s, one_s, first_s, first_keyword_s = [], [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(args.rounds):
            help_s.append(timed([*phototag, "--help"], Path(scratch) / "unused")[1])
            warm = Path(scratch) / f"warm{i}"
            timed([*phototag, "annotate", str(OTHER)], warm)
            one_s.append(timed([*phototag, "annotate", str(PHOTO)], warm)[1])
            if not args.no_first_run:
                first, total = timed([*phototag, "annotate", str(PHOTO)], Path(scratch) / f"new{i}")
                first_keyword_s.append(first)
                first_s.append(total)
    result: dict[str, object] = {
        "command": " ".join([Path(sys.executable).name, "bench/bench_startup.py", *sys.argv[1:]]),
        "phototag": args.phototag,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "help": summary(help_s),
        "annotate_one": summary(one_s),
    }
    if first_s:
        result["first_run"] = summary(first_s)
        result["first_run_first_keyword"] = summary(first_keyword_s)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for key in ("help", "annotate_one", "first_run", "first_run_first_keyword"):
        if key in result:
            print(f"{key:<24} {result[key]['median_s']:.3f} s (median of {args.rounds})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
