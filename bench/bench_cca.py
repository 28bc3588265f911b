"""Benchmark of the CCA family (cca, kcca, cca_knn) against the label prior.

Usage::

    # default: Mulan scene (top-2) and Mulan Corel5k (top-5), hyperparameters chosen by
    # 3-fold CV on each training split, plus KCCA timing on 4,500 images
    .venv/bin/python bench/bench_cca.py
    .venv/bin/python bench/bench_cca.py --quick            # defaults, no CV (smoke test)
    # any dataset and feature key, e.g. Corel-5k (260 words) with CNN features from a file
    .venv/bin/python bench/bench_cca.py --dataset corel5k:../shared/data/corel5k \\
        --features efficientnet_lite2 --features-file corel5k_lite2.npz \\
        --embedding "npy:../shared/data/corel5k/split260/vocabulary_glove300.npy?words=..."

Each dataset is read with `phototag.data.readers.read_dataset`; ``--features-file`` (an
``.npz`` with ``features`` [n x dim] and ``item_ids``) attaches extra features under the
``--features`` key, matched by item id. Hyperparameters are chosen on the training split
only (`phototag.evaluation.model_selection.select_by_cv`, seeded folds, metric C-F1 by default); the
test split is scored once, by the refitted best model. Metrics: per-word means C-P / C-R /
C-F1 (labels absent from the test split are left out), N+, overall O-F1, mAP per label.
Times are wall-clock seconds on a shared machine (noisy).
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
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_OUT = ROOT / "bench" / "results" / "cca_mulan.json"
REPORTED = ("C-P", "C-R", "C-F1", "N+", "O-P", "O-R", "O-F1", "mAP_label", "mAP_image")

# Cross-validation plan (3 folds of the training split, metric C-F1 by default):
# - cca: the projection hyperparameters (GRIDS["cca"]);
# - kcca: reg_x (GRIDS["kcca"]) with reg_t and power taken from the cca search;
# - cca_knn: the vote (GRIDS["cca_knn"], one CCA fit per fold shared by all points via
#   score_only) on the projection chosen for cca;
# - cca_knn(kcca): no search of its own: the kcca projection + the cca_knn vote.
GRIDS: dict[str, dict[str, list[Any]]] = {
    "cca": {"reg_x": [1e-5, 1e-4, 1e-3, 1e-2], "reg_t": [1e-3, 1e-2], "power": [1.0, 4.0]},
    "kcca": {"reg_x": [1e-5, 1e-4, 1e-3]},
    "cca_knn": {
        "k": [1, 3, 8],
        "sigma": [0.03, 0.1, 0.3, 1.0],
        "vote": ["neighbours", "label"],
    },
}
SCORE_ONLY = ("k", "sigma", "vote")
CV_PLAN = (
    "cca: GRIDS['cca']; kcca: GRIDS['kcca'] with reg_t/power of cca; cca_knn: GRIDS['cca_knn'] "
    "on the cca projection; cca_knn(kcca): kcca projection + cca_knn vote, no own search"
)


def models(embedding: str | None) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, registry name, fixed config) of every benchmarked model, in fitting order."""
    views = [("BV", None)] + ([("W2V", embedding)] if embedding else [])
    out: list[tuple[str, str, dict[str, Any]]] = [("prior", "prior", {})]
    for view, spec in views:
        out += [
            (f"cca {view}", "cca", {"embedding": spec}),
            (f"kcca {view}", "kcca", {"embedding": spec}),
            (f"cca_knn {view}", "cca_knn", {"embedding": spec}),
            (f"cca_knn(kcca) {view}", "cca_knn", {"embedding": spec, "base": "kcca"}),
        ]
    return out


def chosen_config(label: str, name: str, chosen: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Hyperparameters inherited from earlier searches of the same text view."""
    view = label.split()[-1]
    if name == "kcca":
        cca = chosen.get(f"cca {view}", {})
        return {k: cca[k] for k in ("reg_t", "power") if k in cca}
    if label.startswith("cca_knn(kcca)"):
        kcca = chosen.get(f"kcca {view}", {})
        knn = chosen.get(f"cca_knn {view}", {})
        keep = ("reg_x", "reg_t", "power")
        return {
            **{k: kcca[k] for k in keep if k in kcca},
            **{k: knn[k] for k in SCORE_ONLY if k in knn},
        }
    if name == "cca_knn":
        cca = chosen.get(f"cca {view}", {})
        return {k: cca[k] for k in ("reg_x", "reg_t", "power") if k in cca}
    return {}


def load(spec: str, features: str, features_file: str | None):
    from phototag.data.readers import read_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = read_dataset(spec)
    if features_file:
        with np.load(features_file, allow_pickle=False) as npz:
            vectors, ids = npz["features"], [str(i) for i in npz["item_ids"]]
        row = {item: i for i, item in enumerate(ids)}
        missing = [item for item in data.item_ids if item not in row]
        if missing:
            raise SystemExit(
                f"{features_file}: no features for {len(missing)} items, e.g. {missing[:3]}"
            )
        data.features[features] = vectors[[row[item] for item in data.item_ids]]
    if features not in data.features:
        raise SystemExit(f"{spec}: no features {features!r}; has {sorted(data.features)}")
    return data


def evaluate(model, test, decoder) -> tuple[dict[str, Any], float]:
    from phototag.evaluation.metrics import annotation_report

    start = time.perf_counter()
    scores = model.scores(test)
    seconds = time.perf_counter() - start
    report = annotation_report(test.labels, decoder.decode(scores), scores)
    return {k: report[k] for k in REPORTED}, seconds


def run_dataset(args, spec: str, features: str, k: int) -> dict[str, Any]:
    from phototag.evaluation.decoding import TopK
    from phototag.evaluation.model_selection import select_by_cv
    from phototag.models import create_annotator

    data = load(spec, features, args.features_file if spec == args.dataset else None)
    train, test = data.split("train"), data.split("test")
    decoder = TopK(k)
    result: dict[str, Any] = {
        "dataset": spec,
        "features": features,
        "feature_dim": int(np.shape(data.features[features])[1]),
        "train": train.n_items,
        "test": test.n_items,
        "labels": data.n_labels,
        "labels_in_test": int((test.label_frequencies() > 0).sum()),
        "protocol": f"top{k}",
        "models": {},
    }
    embedding = args.embedding if spec == args.dataset else args.mulan_embedding
    chosen: dict[str, dict[str, Any]] = {}
    for label, name, fixed in models(embedding if spec != SCENE else None):
        if args.only and not any(o in label for o in args.only):
            continue
        config = dict(fixed)
        if name != "prior":
            config["features"] = features
        entry: dict[str, Any] = {"model": name}
        if args.cv:
            config.update(chosen_config(label, name, chosen))
            grid = GRIDS.get(name) if not label.startswith("cca_knn(kcca)") else None
            if grid:

                def factory(_name=name, _config=config, **params):
                    return create_annotator(_name, **_config, **params)

                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    cv = select_by_cv(factory, grid, train, n_folds=3, metric=args.metric,
                                      decoder=decoder, score_only=SCORE_ONLY)  # fmt: skip
                entry["cv"] = {
                    "metric": cv.metric,
                    "best_params": cv.best_params,
                    "best_score": cv.best_score,
                    "grid_points": len(cv.results),
                    "seconds": time.perf_counter() - start,
                }
                config.update(cv.best_params)
                print(f"  cv {label}: {cv.best_params} {cv.metric}={cv.best_score:.4f} "
                      f"({entry['cv']['seconds']:.0f}s)", flush=True)  # fmt: skip
            chosen[label] = config
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = create_annotator(name, **config).fit(train)
        entry["fit_s"] = time.perf_counter() - start
        entry["metrics"], entry["predict_s"] = evaluate(model, test, decoder)
        entry["config"] = model.get_config()
        if hasattr(model, "text_view_"):
            entry["text_view"] = model.text_view_
        result["models"][label] = entry
        m = entry["metrics"]
        print(
            f"{label:24s} fit {entry['fit_s']:6.1f}s predict {entry['predict_s']:5.2f}s  "
            f"C-P {m['C-P']:.3f} C-R {m['C-R']:.3f} C-F1 {m['C-F1']:.3f} N+ {m['N+']:3d} "
            f"O-F1 {m['O-F1']:.3f} mAP {m['mAP_label']:.3f}",
            flush=True,
        )
    return result


def kcca_timing(args) -> dict[str, Any]:
    """KCCA fits on 4,500 training images: the --dataset's features when given, else Mulan
    Corel5k (499-d) and a seeded synthetic non-negative 1280-d matrix (CNN-feature shaped)."""
    from phototag.models import create_annotator

    if args.dataset:
        data = load(args.dataset, args.features, args.features_file).split("train")
        cases = [(args.features, 1500), (args.features, 3000)]
    else:
        data = load(MULAN_COREL, "arff", None).split("train")
        rng = np.random.default_rng(0)
        data.features["synthetic1280"] = rng.gamma(0.5, 1.0, size=(data.n_items, 1280)).astype(
            np.float32
        )
        cases = [("arff", 1500), ("synthetic1280", 1500), ("synthetic1280", 3000)]
    out: dict[str, Any] = {"target_s": 300.0, "dataset": args.dataset or MULAN_COREL, "runs": []}
    for features, m in cases:
        start = time.perf_counter()
        model = create_annotator("kcca", features=features, n_landmarks=m).fit(data)
        seconds = time.perf_counter() - start
        run = {"n": data.n_items, "dim": int(data.features[features].shape[1]),
               "features": features, "n_landmarks": m, "kernel": model.image_map_,
               "fit_s": seconds, "load_average": list(os.getloadavg())}  # fmt: skip
        out["runs"].append(run)
        print(f"kcca fit n={run['n']} dim={run['dim']} m={m}: {seconds:.1f}s", flush=True)
    return out


SCENE = f"mulan:{SHARED / 'mulan'}?name=scene"
MULAN_COREL = f"mulan:{SHARED / 'mulan'}?name=Corel5k"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", help="NAME:PATH of one dataset (default: Mulan scene + Corel5k)"
    )
    parser.add_argument("--features", default="arff", help="feature key (default: arff)")
    parser.add_argument("--features-file", help=".npz with 'features' and 'item_ids'")
    parser.add_argument("--embedding", help="W2V text-view spec for --dataset")
    parser.add_argument("--mulan-embedding", default="glove50",
                        help="W2V spec for Mulan Corel5k ('' to skip)")  # fmt: skip
    parser.add_argument("--top-k", type=int, help="labels per image (default: 2 scene, else 5)")
    parser.add_argument("--metric", default="f1", help="CV metric (default f1 = C-F1)")
    parser.add_argument("--quick", action="store_true", help="defaults only, no CV, no timing")
    parser.add_argument("--only", nargs="*", help="only models whose label contains one of these")
    parser.add_argument("--no-timing", action="store_true", help="skip the KCCA 4,500 timing")
    parser.add_argument("--out", type=Path, help=f"JSON output (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    args.cv = not args.quick
    args.mulan_embedding = args.mulan_embedding or None

    import scipy

    started = time.time()
    record: dict[str, Any] = {
        "benchmark": "phototag cca / kcca / cca_knn vs prior",
        "command": "python " + " ".join([os.path.relpath(__file__, ROOT), *(argv or sys.argv[1:])]),
        "machine": {
            "cores": os.cpu_count(),
            "load_average_at_start": list(os.getloadavg()),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
        },
        "cv": None
        if not args.cv
        else {"folds": 3, "metric": args.metric, "grids": GRIDS, "plan": CV_PLAN},
        "datasets": [],
    }
    if args.dataset:
        runs = [(args.dataset, args.features, args.top_k or 5)]
    else:
        runs = [(SCENE, "arff", args.top_k or 2), (MULAN_COREL, "arff", args.top_k or 5)]
    for spec, features, k in runs:
        print(f"== {spec} [{features}] top{k}", flush=True)
        record["datasets"].append(run_dataset(args, spec, features, k))
    if not args.quick and not args.no_timing:
        record["kcca_timing"] = kcca_timing(args)
    record["machine"]["load_average_at_end"] = list(os.getloadavg())
    record["seconds"] = time.time() - started
    out = args.out or (None if args.quick else DEFAULT_OUT)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
