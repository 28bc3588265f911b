"""Load test of `phototag serve`: concurrent clients uploading real photos on localhost,
and the latency of one 12-megapixel upload at a time.

Usage::

    .venv/bin/python bench/bench_serve.py            # 50 clients x 10 uploads, default model
    .venv/bin/python bench/bench_serve.py --clients 50 --uploads 10 --model default \\
        --photos ../shared/data/corel5k --out bench/results/serve.json
    .venv/bin/python bench/bench_serve.py --clients 0 --large 20   # 12 MP latency only

Starts ``phototag serve`` in a subprocess on a free localhost port (fresh data folder and
feature store, so every upload is decoded and encoded: nothing is served from a cache),
sends a few warm-up uploads, then runs `--clients` concurrent clients that each upload
`--uploads` distinct photos one after another (the examples/ photos first, then
Corel-5k JPEGs) and wait for the suggestions. Reports throughput, latency percentiles,
failed requests (any status other than 200, or a transport error), how many answers
held suggestions (the default model abstains on photos it is not confident about) and
the machine's load average before and after; writes them to `--out`.

``--large N`` (default 20) then uploads N distinct 4000 x 3000 JPEGs (Corel photos
upscaled with noise, quality 90, made once into ``$TMPDIR/phototag-bench-12mp``) one
after another from one client, after two warm-up uploads, and reports the latency
percentiles (``large`` in the results; with ``--clients 0`` only that part of `--out` is
replaced): each answer is the suggestions of a photo the service had never seen, so it
hashed, decoded, encoded and scored it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-serve-token-0123456789abcdef"


def photo_files(folders: list[Path], count: int) -> list[Path]:
    """`count` distinct JPEGs: the example photos, then the folders' in sorted order."""
    found = sorted((ROOT / "examples").glob("*.jpg"))
    for folder in folders:
        found += sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    if len(found) < count:
        raise SystemExit(f"need {count} photos, found {len(found)} (add --photos DIR)")
    return found[:count]


def large_photos(count: int) -> list[Path]:
    """`count` distinct 12-megapixel JPEGs (`bench_extract.make_large`), made once."""
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_extract import make_large

    folder = Path(tempfile.gettempdir()) / "phototag-bench-12mp"
    return [Path(p) for p in make_large(folder, count, size=(4000, 3000))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable, "-m", "phototag.app.cli", "serve", "--port", str(port),
        "--model", args.model, "--runtime", args.runtime, "--token", TOKEN,
        "--data", str(workdir / "data"), "--store", str(workdir / "store"),
    ]  # fmt: skip
    log = (workdir / "server.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited:\n{(workdir / 'server.log').read_text()}")
        try:
            response = httpx.get(f"{url}/api/info", headers=auth(), timeout=2)
            if response.status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("server did not start within 300 s")


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", "X-Phototag": "1"}


async def upload(client: httpx.AsyncClient, url: str, path: Path) -> tuple[float, int, str, int]:
    """Seconds, HTTP status (0 for a transport error), an error text and the number of
    suggestions of one upload (none is an answer: the model abstains on a photo it is
    not confident about)."""
    body = path.read_bytes()
    start = time.perf_counter()
    try:
        response = await client.post(
            f"{url}/api/photos", headers=auth(), files={"file": (path.name, body, "image/jpeg")}
        )
        ok = response.status_code == 200
        tags = len(response.json()["tags"]) if ok else 0
        return (
            time.perf_counter() - start,
            response.status_code,
            "" if ok else response.text[:200],
            tags,
        )
    except httpx.HTTPError as exc:
        return time.perf_counter() - start, 0, repr(exc), 0


async def run_clients(url: str, photos: list[Path], clients: int, uploads: int) -> dict:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def one_client(k: int) -> list[tuple[float, int, str, int]]:
            mine = photos[k * uploads : (k + 1) * uploads]
            return [await upload(client, url, p) for p in mine]

        start = time.perf_counter()
        results = await asyncio.gather(*(one_client(k) for k in range(clients)))
        wall = time.perf_counter() - start
    flat = [r for rs in results for r in rs]
    latency = np.array([seconds for seconds, _, _, _ in flat])
    failures = [(status, error) for _, status, error, _ in flat if status != 200 or error]
    return {
        "requests": len(flat),
        "failed": len(failures),
        "failures": failures[:10],
        "answers_with_suggestions": sum(1 for *_, tags in flat if tags),
        "wall_s": round(wall, 2),
        "throughput_per_s": round(len(flat) / wall, 2),
        "latency_s": {
            "p50": round(float(np.percentile(latency, 50)), 3),
            "p95": round(float(np.percentile(latency, 95)), 3),
            "max": round(float(latency.max()), 3),
            "mean": round(float(latency.mean()), 3),
        },
        "upload_bytes_mean": int(np.mean([p.stat().st_size for p in photos])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--uploads", type=int, default=10, help="uploads per client")
    parser.add_argument("--model", default="default")
    parser.add_argument("--runtime", choices=("onnx", "torch"), default="onnx")
    parser.add_argument("--photos", type=Path, action="append",
                        default=[ROOT.parent / "shared" / "data" / "corel5k"])  # fmt: skip
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--large", type=int, default=20, metavar="N",
                        help="12 MP uploads, one at a time (0: none)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve.json")
    args = parser.parse_args()

    total = args.clients * args.uploads
    photos = photo_files(args.photos, total + args.warmup)
    large = large_photos(args.large + 2) if args.large else []
    load_before = os.getloadavg()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        process, url = start_server(args, Path(tmp))
        try:
            warm = asyncio.run(run_clients(url, photos[total:], 1, args.warmup))
            assert warm["failed"] == 0 and warm["answers_with_suggestions"], warm
            if total:
                result = asyncio.run(run_clients(url, photos[:total], args.clients, args.uploads))
            if large:
                asyncio.run(run_clients(url, large[:2], 1, 2))  # warm-up at that size
                result["large"] = {
                    "command": " ".join(["bench/bench_serve.py", *sys.argv[1:]]),
                    "megapixels": 12,
                    "load_average_before": [round(x, 2) for x in os.getloadavg()],
                    **asyncio.run(run_clients(url, large[2:], 1, args.large)),
                    "load_average_after": [round(x, 2) for x in os.getloadavg()],
                }
        finally:
            process.terminate()
            process.wait(timeout=30)
    result = {
        "command": " ".join(["bench/bench_serve.py", *sys.argv[1:]]),
        "clients": args.clients,
        "uploads_per_client": args.uploads,
        "model": args.model,
        "runtime": args.runtime,
        **result,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }
    if not total and args.out.exists():  # the 12 MP part alone: keep the load test's results
        result = {**json.loads(args.out.read_text()), "large": result["large"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    failed = result.get("failed", 0) + result.get("large", {}).get("failed", 0)
    if failed:
        raise SystemExit(f"{failed} failed requests")


if __name__ == "__main__":
    main()
