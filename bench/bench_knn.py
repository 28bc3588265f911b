"""Benchmark of the nearest-neighbour annotators: fit + predict time and test metrics.

Usage::

    .venv/bin/python bench/bench_knn.py        # Mulan scene (top-2) and Mulan Corel5k (top-5),
                                               # writes bench/results/knn_mulan.json
    .venv/bin/python bench/bench_knn.py \\
        --dataset corel5k:../shared/data/corel5k --top-k 5 \\
        --features efficientnet_lite2 --features-file corel5k_effnet_lite2.npz \\
        --metric cosine --out bench/results/knn_corel5k.json

Any `AnnotationSet.features` key can be used (``--features``, several keys comma-separated).
Features that the dataset reader does not provide can be attached from ``.npz`` files
(``--features-file``, one per key, with arrays ``features`` ``[n, dim]`` and ``item_ids``
matched to the dataset's item ids) or ``.npy`` files in the dataset's item order.
Each model is trained on the ``train`` split and evaluated once on the ``test`` split with
``--top-k`` decoding (`phototag.evaluation.metrics.annotation_report`: C-P/C-R/C-F1 are
per-label means over labels present in the test split, N+ the labels recalled at least once).
Model settings:
``--set MODEL.ARG=VALUE`` (VALUE parsed as JSON when possible), e.g. ``--set tagprop.k=100``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from phototag.data import AnnotationSet  # noqa: E402
from phototag.data.readers import read_dataset  # noqa: E402
from phototag.evaluation.decoding import TopK  # noqa: E402
from phototag.evaluation.metrics import annotation_report  # noqa: E402
from phototag.models import create_annotator  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "knn_mulan.json"
SHARED = ROOT.parent / "shared" / "data"
MODELS = ("prior", "jec", "mlknn", "tagprop", "2pknn", "2pknn_ml")
MULAN = ((f"mulan:{SHARED / 'mulan'}?name=scene", 2), (f"mulan:{SHARED / 'mulan'}?name=Corel5k", 5))
REPORTED = ("C-P", "C-R", "C-F1", "O-P", "O-R", "O-F1", "N+", "mAP_label", "mAP_image")
STATE = ("temperature_", "fit_info_", "n_neighbors_")


def parse_settings(items: list[str]) -> dict[str, dict]:
    settings: dict[str, dict] = {}
    for item in items:
        key, _, value = item.partition("=")
        model, _, arg = key.partition(".")
        if not arg:
            raise SystemExit(f"--set expects MODEL.ARG=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        settings.setdefault(model, {})[arg] = parsed
    return settings


def attach_features(data: AnnotationSet, keys: list[str], files: list[str]) -> None:
    for key, file in zip(keys, files, strict=False):
        path = Path(file)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                features, ids = arrays["features"], [str(i) for i in arrays["item_ids"]]
            row = {item: r for r, item in enumerate(ids)}
            missing = [i for i in data.item_ids if i not in row]
            if missing:
                raise SystemExit(f"{path}: no features for {len(missing)} items, e.g. {missing[0]}")
            data.features[key] = features[[row[i] for i in data.item_ids]]
        else:
            data.features[key] = np.load(path, mmap_mode="r")
        if len(data.features[key]) != data.n_items:
            raise SystemExit(f"{path}: {len(data.features[key])} rows for {data.n_items} items")


def state_of(model) -> dict:
    out = {}
    for key in STATE:
        value = getattr(model, key, None)
        if value is not None:
            out[key.rstrip("_")] = value
    if hasattr(model, "weights_"):
        out["weights"] = np.round(np.asarray(model.weights_), 4).tolist()[:20]
    if hasattr(model, "metric_weights_"):
        out["metric_weights"] = np.round(model.metric_weights_, 3).tolist()
    return out


def run_dataset(spec: str, top_k: int, args, settings: dict[str, dict]) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = read_dataset(spec)
    keys = args.features.split(",")
    attach_features(data, keys, args.features_file)
    train, test = data.split("train"), data.split("test")
    features = keys[0] if len(keys) == 1 else keys
    print(f"== {spec}: {train.n_items} train / {test.n_items} test, {data.n_labels} labels, "
          f"features {features}, top-{top_k}", flush=True)  # fmt: skip
    results = {
        "dataset": spec,
        "train": train.n_items,
        "test": test.n_items,
        "labels": data.n_labels,
        "labels_in_test": int((test.label_frequencies() > 0).sum()),
        "features": {k: list(np.shape(data.features[k])) for k in keys},
        "protocol": f"top{top_k}",
        "models": {},
    }
    for name in args.models:
        config = {} if name == "prior" else {"features": features, "metric": args.metric}
        config.update(settings.get(name, {}))
        load = os.getloadavg()[0]
        model = create_annotator(name, **config)
        t0 = time.perf_counter()
        model.fit(train)
        t1 = time.perf_counter()
        scores = model.scores(test)
        t2 = time.perf_counter()
        report = annotation_report(test.labels, TopK(top_k).decode(scores), scores)
        row = {
            "config": model.get_config(),
            "fit_s": round(t1 - t0, 2),
            "predict_s": round(t2 - t1, 2),
            "load_average_before": round(load, 2),
            **{k: round(float(report[k]), 4) if k != "N+" else int(report[k]) for k in REPORTED},
            "state": state_of(model),
        }
        results["models"][name] = row
        print(f"{name:10s} fit {row['fit_s']:7.2f}s  predict {row['predict_s']:6.2f}s  "
              f"C-P {row['C-P']:.3f} C-R {row['C-R']:.3f} C-F1 {row['C-F1']:.3f}  "
              f"O-F1 {row['O-F1']:.3f}  N+ {row['N+']:4d}  mAP_l {row['mAP_label']:.3f}  "
              f"mAP_i {row['mAP_image']:.3f}  (load {load:.1f})", flush=True)  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", help="dataset spec (default: Mulan sets)")
    parser.add_argument("--top-k", type=int, action="append", help="one per --dataset")
    parser.add_argument("--features", default="arff", help="feature key(s), comma-separated")
    parser.add_argument("--features-file", action="append", default=[])
    parser.add_argument("--metric", default="l2", help="distance (or comma-separated, per key)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--set", action="append", default=[], metavar="MODEL.ARG=VALUE")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.models = args.models.split(",")
    if "," in args.metric:
        args.metric = args.metric.split(",")
    datasets = list(MULAN)
    if args.dataset:
        tops = args.top_k or [5] * len(args.dataset)
        if len(tops) != len(args.dataset):
            raise SystemExit("give one --top-k per --dataset")
        datasets = list(zip(args.dataset, tops, strict=True))
    out = args.out or (DEFAULT_OUT if not args.dataset else None)
    settings = parse_settings(args.set)
    import faiss
    import scipy

    result = {
        "benchmark": "phototag kNN annotators: fit on train, evaluate once on test",
        "command": "python " + " ".join(sys.argv),
        "machine": {
            "load_average_at_start": list(os.getloadavg()),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "faiss": faiss.__version__,
        },
        "datasets": [run_dataset(spec, k, args, settings) for spec, k in datasets],
    }
    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
