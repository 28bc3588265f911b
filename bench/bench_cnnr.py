"""CNN-R on Corel-5k (260 words, top-5), next to the CCA-KNN paper's CNN-R row.

Usage::

    .venv/bin/python bench/bench_cnnr.py                       # full run, writes the JSON
    .venv/bin/python bench/bench_cnnr.py --limit 300 --grid quick --out /tmp/cnnr.json
    # on a GPU machine: --device cuda

Protocol: the frozen trunk of EfficientNet-Lite2 (everything before ``stage7``) runs once
on every training photo and its mirror image and on every test photo, into the
feature-map store (``--store``; a second run reads them from there). 10% of the
training split (seeded) is held out as a validation split; every point of the grid
(epochs x projection lr x block lr x embedding) is trained on the other 90% and scored on
it (top-5, C-F1, ties by N+). The best point is refitted on the whole training split and
evaluated once on the test split. Metrics: `phototag.evaluation.metrics.annotation_report` (per-word
means C-P / C-R / C-F1 over the test split's words, N+, mAP).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "corel5k"
DEFAULT_OUT = ROOT / "bench" / "results" / "cnnr_corel5k.json"
PUBLISHED = {"model": "CNN-R (Caffe-Net, W2V)", "C-P": 0.32, "C-R": 0.413, "C-F1": 0.372,
             "N+": 166, "source": "Murthy, Maji & Manmatha, ICMR 2015, Table 1"}  # fmt: skip
REPORTED = ("C-P", "C-R", "C-F1", "N+", "O-F1", "mAP_label", "mAP_image")
GRIDS: dict[str, dict[str, list[Any]]] = {
    "quick": {"epochs": [3], "lr": [1e-3], "block_lr": [1e-4], "embedding": ["glove50"]},
    "full": {
        "epochs": [15, 40],
        "lr": [3e-4, 1e-3],
        "block_lr": [1e-4, 3e-4, 1e-3],
        "embedding": ["glove50", "glove300", "id"],
    },
}


def embedding_spec(name: str, data: Path, glove50_file: str | None = None) -> str:
    """``glove300``: the 300-d GloVe vectors shipped with the Corel-5k split files;
    ``glove50`` from `glove50_file` (a GloVe text file) when given."""
    if name == "glove50" and glove50_file:
        return f"file:{glove50_file}"
    if name == "glove300":
        split = data / "split260"
        return f"npy:{split / 'vocabulary_glove300.npy'}?words={split / 'corel5k_vocabulary.txt'}"
    return name


def top5_report(model: Any, data: Any) -> dict[str, float | int]:
    from phototag.evaluation.decoding import TopK
    from phototag.evaluation.metrics import annotation_report

    scores = model.scores(data)
    report = annotation_report(data.labels, TopK(5).decode(scores), scores)
    return {key: report[key] for key in REPORTED}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--encoder", default="efficientnet_lite2")
    parser.add_argument("--encoder-weights", default=None, help="weights file (default: package)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--grid", default="full", choices=sorted(GRIDS))
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="replace one grid entry, e.g. --param epochs=5,10",
    )
    parser.add_argument("--limit", type=int, default=0, help="first N train/test photos (debug)")
    parser.add_argument("--valid-fraction", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--store", default=None, help="feature store (default: the cache's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--glove50-file",
        default=None,
        help="GloVe text file for glove50 (machines without its package)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    from phototag.data.readers import read_dataset
    from phototag.features.encoders.runtime import torch_device
    from phototag.library.inputs import with_inputs
    from phototag.models.regression import CNNRAnnotator

    warnings.simplefilter("ignore", UserWarning)  # OOV notes of the embeddings
    dataset = read_dataset(f"corel5k:{args.data}")
    train, test = dataset.split("train"), dataset.split("test")
    if args.limit:
        train, test = (
            train.subset(np.arange(min(args.limit, train.n_items))),
            test.subset(np.arange(min(args.limit, test.n_items))),
        )
    common = dict(encoder=args.encoder, encoder_weights=args.encoder_weights, device=args.device,
                  seed=args.seed)  # fmt: skip
    probe = CNNRAnnotator(**common)
    fill = dict(store_root=args.store, workers=args.workers, progress=True)
    start = time.perf_counter()
    train, _ = with_inputs(train, probe.required_inputs(training=True), **fill)
    test, _ = with_inputs(test, probe.required_inputs(), **fill)
    trunk_s = time.perf_counter() - start
    n_images = train.n_items + test.n_items
    print(f"trunk maps of {n_images} photos (+flips) in {trunk_s:.0f} s", file=sys.stderr)

    rng = np.random.default_rng(args.seed)
    order = rng.permutation(train.n_items)
    n_valid = round(args.valid_fraction * len(order))
    fit_data = train.subset(np.sort(order[n_valid:]))
    valid_data = train.subset(np.sort(order[:n_valid]))  # scored on the photos as they are

    grid = dict(GRIDS[args.grid])
    for entry in args.param:
        key, _, values = entry.partition("=")
        grid[key] = [json.loads(v) if v[:1].isdigit() else v for v in values.split(",")]
    trials = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        spec = embedding_spec(params["embedding"], args.data, args.glove50_file)
        config = {**params, "embedding": spec}
        model = CNNRAnnotator(**common, **config)
        start = time.perf_counter()
        model.fit(fit_data)
        seconds = time.perf_counter() - start
        metrics = top5_report(model, valid_data)
        trials.append({"params": params, "valid": metrics, "fit_s": seconds,
                       "final_train_loss": model.history_[-1]["train_loss"]})  # fmt: skip
        print(f"{params}: valid C-F1 {metrics['C-F1']:.4f} N+ {metrics['N+']} "
              f"({seconds:.0f} s)", file=sys.stderr)  # fmt: skip
    by_embedding: dict[str, dict[str, Any]] = {}
    for name in grid["embedding"]:
        mine = [t for t in trials if t["params"]["embedding"] == name]
        best = max(mine, key=lambda t: (t["valid"]["C-F1"], t["valid"]["N+"]))
        params = best["params"]
        spec = embedding_spec(name, args.data, args.glove50_file)
        model = CNNRAnnotator(**common, **{**params, "embedding": spec})
        start = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        test_metrics = top5_report(model, test)
        predict_s = time.perf_counter() - start
        by_embedding[name] = {"params": params, "valid": best["valid"], "test": test_metrics,
                              "history": model.history_, "final_fit_s": fit_s,
                              "test_predict_s": predict_s}  # fmt: skip
        print(f"test ({params}): " + ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in test_metrics.items()
        ))  # fmt: skip
    chosen = max(by_embedding.values(), key=lambda e: (e["valid"]["C-F1"], e["valid"]["N+"]))
    result = {
        "benchmark": "corel5k top-5 (260 words)",
        "model": "cnn_r",
        "encoder": args.encoder,
        "encoder_id": probe._parts()[0].feature_id,
        "chosen": chosen["params"],
        "selection": f"{len(trials)} grid points, {args.valid_fraction:.0%} of the training "
        "split held out (seeded), best validation C-F1 (ties: N+) per embedding, refit on all "
        "training photos and tested once; 'test' is the embedding with the best validation C-F1",
        "test": chosen["test"],
        "by_embedding": by_embedding,
        "published": PUBLISHED,
        "n_train": train.n_items,
        "n_test": test.n_items,
        "seconds": {"trunk_maps": trunk_s, "grid": sum(t["fit_s"] for t in trials)},
        "grid": trials,
        "command": "python bench/bench_cnnr.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "device": str(torch_device(args.device)),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "threads": torch.get_num_threads(),
        },  # fmt: skip
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".tmp")
    temporary.write_text(json.dumps(result, indent=2))
    temporary.replace(args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
