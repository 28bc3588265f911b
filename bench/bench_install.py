"""The photographer's install: `pip install phototag` (no extras) into a fresh venv.

    .venv/bin/python bench/bench_install.py [--venv /tmp/phototag-core]
    .venv/bin/python bench/bench_install.py --extras train   # phototag[train] instead

Creates the venv, installs this checkout (not editable; core dependencies only, or with
`--extras`; from pip's configured index; torch first, as scripts/setup.sh does), then
records the venv's size, whether PyTorch or another
extras-only package got in, and the first run of ``phototag annotate examples/`` with an
empty cache (seconds to the first keyword and to the end). Writes
``bench/results/install.json`` (``install_<extras>.json`` with `--extras`).
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

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "install.json"
EXTRAS_ONLY = ("torch", "lightning_fabric", "cv2", "skimage", "pywt", "faiss", "arff", "onnx",
               "sklearn")  # fmt: skip


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="", help="extras to install, e.g. train")
    parser.add_argument("--venv", type=Path, help="default: /tmp/phototag-core (or -EXTRAS)")
    parser.add_argument("--python", default="python3", help="the Python that makes the venv")
    args = parser.parse_args()
    label = args.extras.replace(",", "-") or "core"
    args.venv = args.venv or Path(tempfile.gettempdir()) / f"phototag-{label}"
    out = RESULTS if not args.extras else RESULTS.with_name(f"install_{label}.json")
    if args.venv.exists():
        shutil.rmtree(args.venv)
    start = time.perf_counter()
    subprocess.run([args.python, "-m", "venv", str(args.venv)], check=True)
    pip = [str(args.venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    if args.extras:
        subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, f"{ROOT}[{args.extras}]" if args.extras else str(ROOT)], check=True)
    install_s = time.perf_counter() - start
    python = str(args.venv / "bin" / "python")
    probe = (
        "import importlib.util as u, json\n"
        "print(json.dumps({m: u.find_spec(m) is not None for m in %r}))"
    )
    present = json.loads(
        subprocess.run(
            [python, "-c", probe % (EXTRAS_ONLY,)], check=True, capture_output=True, text=True
        ).stdout
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PHOTOTAG_CACHE": cache}
        command = [str(args.venv / "bin" / "phototag"), "annotate", str(ROOT / "examples")]
        begin = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
        )
        assert process.stdout is not None
        first_line = process.stdout.readline()
        first_keyword_s = time.perf_counter() - begin
        rest, err = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
        process.wait()
        total_s = time.perf_counter() - begin
    site = next((args.venv / "lib").glob("python*/site-packages"))
    sizes = {p.name: directory_bytes(p) for p in site.iterdir() if p.is_dir()}
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:10]
    result = {
        "command": " ".join([Path(sys.executable).name, "bench/bench_install.py", *sys.argv[1:]]),
        "extras": args.extras,
        "venv": str(args.venv),
        "venv_bytes": directory_bytes(args.venv),
        "venv_mib": round(directory_bytes(args.venv) / 2**20, 1),
        "install_s": round(install_s, 1),
        "largest_mib": {name: round(size / 2**20, 1) for name, size in largest},
        "extras_only_packages_present": sorted(m for m, found in present.items() if found),
        "first_run": {
            "command": "phototag annotate examples/ (empty PHOTOTAG_CACHE)",
            "exit_status": process.returncode,
            "first_keyword_s": round(first_keyword_s, 3),
            "total_s": round(total_s, 3),
            "first_line": first_line.strip(),
            "stderr_tail": err.strip().splitlines()[-3:],
        },
        "output_lines": len((first_line + rest).strip().splitlines()),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
