"""Benchmark of phototag.evaluation.metrics.annotation_report on NUS-WIDE-sized and 1M-image inputs.

Usage::

    .venv/bin/python bench/bench_metrics.py            # full run, writes bench/results/metrics.json
    .venv/bin/python bench/bench_metrics.py --quick    # small shapes, prints only (smoke test)

Each case runs in a fresh subprocess, so its peak memory is its own: after generating the
data the child resets its peak-RSS counter (``/proc/self/clear_refs``) and reads ``VmHWM``
after the timed calls, so the peak covers the metric call plus the resident inputs.
Synthetic data come from a seeded RNG: label frequencies follow a Zipf-like law scaled to the
target labels per image, scores are float32 ``uniform + 0.45 * y_true`` (correlated with the
labels), and predictions are each image's top-k scores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "metrics.json"
GIB = 1024**3

CASES = {
    "nuswide": {
        "title": "NUS-WIDE test shape",
        "n": 107_859, "n_labels": 81, "labels_per_image": 2.4, "k": 3,
        "repeats": 3, "target_s": 2.0, "target_rss_gib": None,
    },
    "large": {
        "title": "1M images x 291 labels",
        "n": 1_000_000, "n_labels": 291, "labels_per_image": 5.0, "k": 5,
        "repeats": 1, "target_s": 60.0, "target_rss_gib": 8.0,
    },
}  # fmt: skip
QUICK = {"nuswide": {"n": 20_000, "repeats": 3}, "large": {"n": 100_000}}

_CHUNK = 50_000


def make_data(n: int, n_labels: int, labels_per_image: float, k: int, seed: int = 0):
    """Seeded synthetic (y_true bool, y_pred bool top-k, y_score float32), built in chunks."""
    rng = np.random.default_rng(seed)
    freq = 1.0 / np.arange(1, n_labels + 1) ** 0.8
    freq = np.minimum(freq * labels_per_image / freq.sum(), 0.6).astype(np.float32)
    y_true = np.empty((n, n_labels), dtype=bool)
    y_score = np.empty((n, n_labels), dtype=np.float32)
    y_pred = np.zeros((n, n_labels), dtype=bool)
    for r0 in range(0, n, _CHUNK):
        r1 = min(n, r0 + _CHUNK)
        t = rng.random((r1 - r0, n_labels), dtype=np.float32) < freq
        s = rng.random((r1 - r0, n_labels), dtype=np.float32)
        s += np.float32(0.45) * t
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        np.put_along_axis(y_pred[r0:r1], top, True, axis=1)
        y_true[r0:r1] = t
        y_score[r0:r1] = s
    return y_true, y_pred, y_score


def _status(field: str) -> int:
    """A memory field of /proc/self/status in bytes (VmHWM: peak RSS, VmRSS: current RSS)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak, in KiB on Linux


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def run_case(spec: dict) -> dict:
    """Body of the child process: generate, time, measure memory; returns a JSON dict."""
    from phototag.evaluation.metrics import (
        _as_scores,
        _per_image_ap,
        _per_label_ap,
        annotation_report,
        label_counts,
    )

    t0 = time.perf_counter()
    y_true, y_pred, y_score = make_data(
        spec["n"], spec["n_labels"], spec["labels_per_image"], spec["k"]
    )
    gen_s = time.perf_counter() - t0
    input_bytes = y_true.nbytes + y_pred.nbytes + y_score.nbytes
    gen_peak = _status("VmHWM")
    reset_ok = _reset_peak()
    rss_before = _status("VmRSS")
    times = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        report = annotation_report(y_true, y_pred, y_score)
        times.append(time.perf_counter() - t0)
    call_peak = _status("VmHWM")
    # One-off breakdown of where the time goes (not part of the timed call).
    parts = {}
    t0 = time.perf_counter()
    label_counts(y_true, y_pred)
    parts["validate+counts"] = time.perf_counter() - t0
    s = _as_scores(y_score)
    t0 = time.perf_counter()
    _per_label_ap(y_true, s)
    parts["mAP_label"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _per_image_ap(y_true, s)
    parts["mAP_image"] = time.perf_counter() - t0
    return {
        "shape": [spec["n"], spec["n_labels"]],
        "labels_per_image": float(y_true.sum() / spec["n"]),
        "k": spec["k"],
        "score_dtype": str(y_score.dtype),
        "generate_s": round(gen_s, 3),
        "repeats": spec["repeats"],
        "times_s": [round(t, 4) for t in times],
        "time_s": round(min(times), 4),
        "breakdown_s": {key: round(v, 4) for key, v in parts.items()},
        "input_bytes": int(input_bytes),
        "peak_rss_generation_bytes": int(gen_peak),
        "rss_before_call_bytes": int(rss_before),
        # Peak RSS of the whole process while annotation_report ran (inputs included). If the
        # peak could not be reset after data generation, it is the lifetime peak.
        "peak_rss_call_bytes": int(call_peak),
        "peak_rss_call_includes_generation": not reset_ok,
        "report": report,
    }


def machine_info() -> dict:
    import scipy

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    with open("/proc/meminfo") if os.path.exists("/proc/meminfo") else open(os.devnull) as f:
        mem = next((line.split()[1] for line in f if line.startswith("MemTotal")), None)
    return {
        "load_average_at_start": list(os.getloadavg()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem) / 1024**2, 1) if mem else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes; no JSON unless --out")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON path (default {DEFAULT_OUT})")
    parser.add_argument("--case", choices=sorted(CASES), action="append", help="run only these")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # inside the subprocess
        print(json.dumps(run_case(json.loads(args.child))))
        return 0

    machine = machine_info()  # load average before the runs: other work skews timings
    results = {}
    for name in args.case or list(CASES):
        spec = dict(CASES[name], **(QUICK[name] if args.quick else {}))
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            return proc.returncode
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        peak = result["peak_rss_call_bytes"]
        ok_time = result["time_s"] <= spec["target_s"]
        ok_rss = spec["target_rss_gib"] is None or peak <= spec["target_rss_gib"] * GIB
        results[name] = {
            "title": spec["title"],
            "target_s": spec["target_s"],
            "target_rss_gib": spec["target_rss_gib"],
            **result,
            "pass": bool(ok_time and ok_rss),
        }

    command = "python bench/bench_metrics.py" + (" --quick" if args.quick else "")
    payload = {
        "benchmark": "phototag.evaluation.metrics.annotation_report (both mAPs, float32 scores)",
        "command": command,
        "quick": args.quick,
        "machine": {**machine, "load_average_at_end": list(os.getloadavg())},
        "cases": results,
    }
    header = f"{'case':<24}{'shape':>18}{'time (s)':>10}{'target':>8}{'peak RSS':>11}{'':>3}"
    print(header)
    for r in results.values():
        peak = r["peak_rss_call_bytes"] / GIB
        shape = f"{r['shape'][0]:,} x {r['shape'][1]}"
        verdict = "ok" if r["pass"] else "FAIL"
        print(
            f"{r['title']:<24}{shape:>18}{r['time_s']:>10.2f}{r['target_s']:>8.0f}"
            f"{peak:>8.2f} GiB  {verdict}"
        )
        print(f"{'':<24}breakdown: {r['breakdown_s']}")
    out = args.out or (None if args.quick else DEFAULT_OUT)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {out}")
    return 0 if all(r["pass"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
