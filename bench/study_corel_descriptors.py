"""Do the classic descriptors add to EfficientNet-Lite2 features on Corel-5k? (a study)

Computes the six global descriptors of the modality-fusion paper's set (HSV histogram,
LAB moments, edge directions, wavelet texture, LBP, GIST; `phototag.features.descriptors`)
for the 4,999 Corel-5k photos in 2 processes, attaches the stored EfficientNet-Lite2
pooled features (computed first if missing), fits TagProp, JEC and 2PKNN+ML on the
training split with all seven features (learned or equal weights) and evaluates each once
on the test split (top 5). Writes bench/results/corel5k_descriptor_study.json.

Usage::

    .venv/bin/python bench/study_corel_descriptors.py [--data ../shared/data/corel5k]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from corel_study import fit_and_score  # noqa: E402

from phototag.data.readers import read_dataset  # noqa: E402
from phototag.evaluation.benchmark import GLOBAL_DESCRIPTORS  # noqa: E402
from phototag.features.attach import with_features  # noqa: E402
from phototag.features.descriptors import create_descriptor, describe_images  # noqa: E402
from phototag.imaging import load_rgb  # noqa: E402

#: Each descriptor with the distance it is compared by (histograms: chi2, moments: l1).
DESCRIPTORS = GLOBAL_DESCRIPTORS


def describe(paths: list[str]) -> dict[str, np.ndarray]:
    descriptors = [create_descriptor(name) for name in DESCRIPTORS]
    return describe_images((load_rgb(p) for p in paths), descriptors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "corel5k")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "corel5k_descriptor_study.json"
    )
    args = parser.parse_args()
    data = read_dataset(f"corel5k:{args.data}")
    paths = [str(p) for p in data.image_paths]
    start = time.perf_counter()
    with get_context("fork").Pool(2) as pool:
        halves = pool.map(describe, [paths[0::2], paths[1::2]])
    for name in DESCRIPTORS:
        values = np.zeros((len(paths), halves[0][name].shape[1]), np.float32)
        values[0::2], values[1::2] = halves[0][name], halves[1][name]
        data.features[name] = values
    describe_seconds = time.perf_counter() - start
    print(f"descriptors: {describe_seconds:.0f} s", flush=True)
    data, _ = with_features(data, "efficientnet_lite2", progress=False)
    train, test = data.split("train"), data.split("test")
    features = ["efficientnet_lite2", *DESCRIPTORS]
    metrics = ["cosine", *DESCRIPTORS.values()]
    runs = {
        "tagprop efficientnet_lite2": ("tagprop", features[:1], metrics[:1]),
        "tagprop all seven": ("tagprop", features, metrics),
        "jec all seven": ("jec", features, metrics),
        "2pknn_ml all seven": ("2pknn_ml", features, metrics),
    }
    results = {
        label: fit_and_score(label, train, test, name, keys, distances)[0]
        for label, (name, keys, distances) in runs.items()
    }
    args.out.write_text(json.dumps({
        "study": "Corel-5k: EfficientNet-Lite2 + six classic descriptors (top 5, test split)",
        "command": "python bench/study_corel_descriptors.py " + " ".join(sys.argv[1:]),
        "descriptor_seconds_2_processes": round(describe_seconds, 1),
        "distances": {"efficientnet_lite2": "cosine", **DESCRIPTORS},
        "results": results,
    }, indent=2) + "\n")  # fmt: skip
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
