"""Annotating with M3 against a model on the plain encoder's pooled features, per photo.

Both models annotate the same Corel-5k test photos through `annotate_files` (decode,
encode, score, decode keywords) in one run: the pooled model (`cnn_logistic`) reads
the encoder's pooled vector, M3 (MS-CNN+LQP) its five stage maps, computed in memory
and fused. Neither reads a stored feature: every photo is decoded and encoded. The
models are trained briefly on stored maps / features of the training split (their
keywords do not matter here, only the time). Target (issue 13): M3 within 1.5x.

    .venv/bin/python bench/bench_m3_annotate.py --photos 200 --out bench/results/m3_annotate.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "corel5k"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--photos", type=int, default=200, help="test photos annotated")
    parser.add_argument("--train", type=int, default=500, help="training photos (brief fits)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from phototag.data.readers import read_dataset
    from phototag.library.annotation import annotate_files
    from phototag.library.inputs import with_inputs
    from phototag.models import create_annotator
    from phototag.models.m3 import M3Annotator

    dataset = read_dataset(f"corel5k:{args.data}")
    train = dataset.split("train").subset(np.arange(args.train))
    paths = dataset.split("test").image_paths[: args.photos]
    m3 = M3Annotator(epochs=1, validation_fraction=0.0, visual_lr=0.1, textual_lr=0.01)
    pooled = create_annotator("cnn_logistic", features="efficientnet_lite2", epochs=1)
    for model in (m3, pooled):
        model.fit(with_inputs(train, model.required_inputs(training=True))[0])
    seconds: dict[str, list[float]] = {"pooled": [], "m3": []}
    for _ in range(args.rounds):
        for name, model in (("pooled", pooled), ("m3", m3)):
            with tempfile.TemporaryDirectory() as store:  # nothing stored is reused
                start = time.perf_counter()
                results = list(annotate_files(paths, model, store_root=store, progress=False))
                seconds[name].append(time.perf_counter() - start)
            assert all(r.error is None for r in results)
    best = {name: min(values) / len(paths) for name, values in seconds.items()}
    result = {
        "photos": len(paths),
        "seconds": seconds,
        "ms_per_photo": {name: 1000 * value for name, value in best.items()},
        "ratio_m3_to_pooled": best["m3"] / best["pooled"],
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
