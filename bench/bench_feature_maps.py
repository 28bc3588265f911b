"""Spatial feature maps in the feature store: disk size per EfficientNet-Lite2 stage, write
and read speed, and reading a training epoch's maps against recomputing them.

Usage (from the repository root)::

    .venv/bin/python bench/bench_feature_maps.py --photos 500

Protocol, on ``--photos`` Corel-5k photos (a seeded sample of the 4,999 JPEGs under
../shared/data/corel5k/{train,test}), EfficientNet-Lite2 (260 px) on ONNX Runtime, plain
view, every stage:

- *size*: each stage's store folder (maps.bin, index.sqlite, meta.json: allocated
  bytes), and per photo; the 4,999-photo figure is the per-photo size times 4,999
  (exact for maps.bin: fixed-size rows).
- *write*: the stage's maps of all photos (computed beforehand, in memory) added to a
  fresh `FeatureMapStore` 32 at a time (each add is written, fsynced and indexed).
- *read*: one epoch: the photos in a seeded random order, in batches of 64, read through
  ``store.mapped(digests)[batch]`` and converted to float32 (what training consumes);
  *cold* after dropping the file from the page cache (``posix_fadvise DONTNEED``), then
  *warm*.
- *recompute*: what CNN-R does today in each fit: decode the photo to the model input
  (``load_model_input``) and run the encoder to that stage (``forward_pixels(x,
  [stage])``, batches of 32), on ``--recompute-photos`` photos.
- *ratio*: recompute seconds per photo / cold (and warm) read seconds per photo.
- *extraction*: ``extract_features`` into fresh stores, pooled vectors only and pooled
  vectors plus every stage's maps (the ``phototag features --maps all`` pass).

Results: bench/results/feature_maps.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from phototag.features.encoders import create_encoder
from phototag.features.extract import extract_features, load_model_input, open_store
from phototag.features.maps import FeatureMapStore, map_shapes, open_map_stores
from phototag.imaging import file_digest

ROOT = Path(__file__).resolve().parents[1]
COREL = ROOT.parent / "shared" / "data" / "corel5k"
N_COREL = 4999
WRITE_BATCH = 32
READ_BATCH = 64


def corel_photos(n: int, seed: int) -> list[str]:
    paths = sorted(str(p) for split in ("train", "test") for p in (COREL / split).glob("*.jpeg"))
    if len(paths) != N_COREL:
        raise SystemExit(f"expected {N_COREL} Corel-5k photos under {COREL}, found {len(paths)}")
    chosen = np.random.default_rng(seed).choice(len(paths), size=min(n, len(paths)), replace=False)
    return [paths[i] for i in sorted(chosen)]


def allocated_bytes(folder: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_epoch(store: FeatureMapStore, digests: list[str], seed: int) -> float:
    """Seconds to read every photo's maps once, shuffled, in training batches."""
    order = np.random.default_rng(seed).permutation(len(digests))
    start = time.perf_counter()
    rows = store.mapped(digests)
    for i in range(0, len(order), READ_BATCH):
        batch = rows[order[i : i + READ_BATCH]].astype(np.float32)
        assert batch.shape[0] > 0
    return time.perf_counter() - start


def recompute_seconds(encoder: Any, paths: list[str], stage: str) -> float:
    """Seconds to decode `paths` and run the encoder up to `stage`, batches of 32."""
    start = time.perf_counter()
    for i in range(0, len(paths), WRITE_BATCH):
        pixels = np.stack([load_model_input(p, encoder.preprocess) for p in paths[i : i + 32]])
        encoder.forward_pixels(pixels, [stage])[stage].numpy()
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> dict[str, Any]:
    paths = corel_photos(args.photos, args.seed)
    digests = [file_digest(p) for p in paths]
    encoder = create_encoder("efficientnet_lite2", runtime="onnx")
    stages = list(encoder.stage_names)
    shapes = map_shapes(encoder, stages)
    work = Path(tempfile.mkdtemp(prefix="bench-maps-", dir=args.work))
    try:
        pixels = np.stack([load_model_input(p, encoder.preprocess) for p in paths])
        computed: dict[str, list[np.ndarray]] = {stage: [] for stage in stages}
        for i in range(0, len(pixels), WRITE_BATCH):
            out = encoder.forward_pixels(pixels[i : i + WRITE_BATCH], stages)
            for stage in stages:
                computed[stage].append(out[stage].numpy().astype(np.float16))
        del pixels
        rows = []
        for stage in stages:
            key = (work / "w", encoder.feature_id, stage, "plain", shapes[stage])
            maps = np.concatenate(computed.pop(stage))
            with FeatureMapStore(*key) as s:
                start = time.perf_counter()
                for i in range(0, len(maps), WRITE_BATCH):
                    s.add(digests[i : i + WRITE_BATCH], maps[i : i + WRITE_BATCH])
                write_s = time.perf_counter() - start
                folder = s.directory
            del maps
            size = allocated_bytes(folder)
            drop_from_page_cache(folder / "maps.bin")
            with FeatureMapStore(*key) as s:
                cold_s = read_epoch(s, digests, args.seed)
                warm_s = read_epoch(s, digests, args.seed + 1)
            shutil.rmtree(folder)
            sample = paths[: args.recompute_photos]
            recompute_s = recompute_seconds(encoder, sample, stage) / len(sample)
            n = len(paths)
            row_mb = int(np.prod(shapes[stage])) * 2 / 1e6
            rows.append({
                "stage": stage,
                "shape": list(shapes[stage]),
                "bytes_per_photo": size / n,
                "gb_for_4999": size / n * N_COREL / 1e9,
                "write_mb_s": row_mb * n / write_s,
                "write_photos_s": n / write_s,
                "read_cold_mb_s": row_mb * n / cold_s,
                "read_warm_mb_s": row_mb * n / warm_s,
                "read_cold_photos_s": n / cold_s,
                "read_warm_photos_s": n / warm_s,
                "recompute_photos_s": 1 / recompute_s,
                "ratio_cold": recompute_s / (cold_s / n),
                "ratio_warm": recompute_s / (warm_s / n),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
        extraction = {}
        for name, wanted in (("pooled only", []), ("pooled + all stage maps", stages)):
            root = work / name.replace(" ", "_")
            with open_store(root, encoder, "float32") as store:
                maps_stores = open_map_stores(root, encoder, wanted)
                start = time.perf_counter()
                _, report = extract_features(
                    paths, encoder, store, maps=maps_stores, batch_size=32, progress=False
                )
                seconds = time.perf_counter() - start
                for target in maps_stores:
                    target.close()
            extraction[name] = {
                "photos_s": report.n_computed / seconds,
                "store_gb": allocated_bytes(root) / 1e9,
            }
            print(name, extraction[name], flush=True)
            shutil.rmtree(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "command": f"bench/bench_feature_maps.py --photos {args.photos} --recompute-photos "
        f"{args.recompute_photos} --seed {args.seed}",
        "photos": len(paths),
        "encoder": encoder.feature_id,
        "runtime": encoder.runtime,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average": os.getloadavg(),
        "stages": rows,
        "extraction": extraction,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=500, help="Corel-5k photos (max 4999)")
    parser.add_argument("--recompute-photos", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="where the stores go (temp)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/feature_maps.json")
    args = parser.parse_args()
    result = run(args)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
