"""The M3 paper's experiments on the data we have (`phototag benchmark m3`).

Three parts, each run on its own and saved as one JSON file; `markdown` renders every
saved part as the paper's tables:

- ``corel5k``: the ablation (Tables I-II: CNN, MS-CNN, MS-CNN+LQP and the upper bound
  with the true label counts) and the CNN + logistic / softmax / WARP baselines (Tables
  III-IV), with LQP accuracy and MSE (Tables V-VI); fixed top-5 for rows without LQP;
- ``mirflickr-tags``: Tags and Tags+LQP on MIRFLICKR-25k's 20,015 rows (user tags ->
  24 labels); fixed top-3 for rows without LQP;
- ``mirflickr-photos``: MS-CNN, MS-CNN+LQP, MS-CNN+Tags and MS-CNN+Tags+LQP on the 730
  rows with a photo, five random 80/20 splits (mean and standard deviation).

Metrics: C-P, C-R, C-F1, the paper's I-P, I-R, I-F1 (phototag's overall O-*), H-F1, N+.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from phototag.data import AnnotationSet
from phototag.data.inputs import ModelInputs
from phototag.evaluation.decoding import Decoder, Quantity, TopK
from phototag.evaluation.metrics import (
    annotation_report,
    label_quantity_accuracy_score,
    label_quantity_mse_loss,
)
from phototag.evaluation.model_selection import select_by_cv
from phototag.evaluation.predictions import Prediction
from phototag.evaluation.studies import StudyData
from phototag.models.m3.annotators import M3Annotator
from phototag.models.registry import create_annotator

PARTS = ("corel5k", "mirflickr-tags", "mirflickr-photos")
FOLDERS = {"corel5k": "corel5k", "mirflickr-tags": "mirflickr", "mirflickr-photos": "mirflickr"}
EPOCHS = 10
#: The table's columns: phototag's report keys, and the paper's names for them.
COLUMNS = (("C-P", "C-P"), ("C-R", "C-R"), ("C-F1", "C-F1"), ("O-P", "I-P"), ("O-R", "I-R"),
           ("O-F1", "I-F1"), ("H-F1", "H-F1"))  # fmt: skip
#: Tables I-IV of the paper (NUS-WIDE, MS-COCO), in percent: C-P, C-R, C-F1, I-P, I-R,
#: I-F1, H-F1; for orientation only (other data, other encoder).
PUBLISHED: dict[str, dict[str, tuple[float, ...]]] = {
    "NUS-WIDE": {
        "Upper bound": (81.46, 75.83, 78.55, 85.87, 85.87, 85.87, 82.05),
        "MS-CNN+Tags+LQP": (80.27, 60.95, 69.29, 84.55, 76.80, 80.49, 74.47),
        "MS-CNN+LQP": (65.00, 52.79, 58.26, 77.10, 73.77, 75.40, 65.73),
        "MS-CNN+Tags": (57.15, 64.39, 60.55, 62.85, 74.03, 67.98, 64.05),
        "MS-CNN": (49.60, 56.36, 52.77, 60.07, 70.77, 64.98, 58.24),
        "CNN": (45.86, 57.34, 50.96, 59.88, 70.54, 64.77, 57.04),
        "CNN+WARP": (31.65, 35.60, 33.51, 48.59, 60.49, 53.89, 41.32),
        "CNN+softmax": (31.68, 31.22, 31.45, 47.82, 59.52, 53.03, 39.48),
        "CNN+logistic": (45.60, 45.03, 45.31, 51.32, 70.77, 59.50, 51.44),
    },
    "MS-COCO": {
        "Upper bound": (75.43, 71.23, 73.27, 77.15, 77.15, 77.15, 75.16),
        "MS-CNN+Tags+LQP": (74.88, 64.96, 69.57, 76.34, 70.25, 73.17, 71.32),
        "MS-CNN+LQP": (67.48, 60.93, 64.04, 70.22, 67.93, 69.06, 66.46),
        "MS-CNN+Tags": (63.69, 63.87, 63.78, 64.47, 68.77, 66.55, 65.14),
        "MS-CNN": (58.47, 58.77, 58.62, 61.06, 62.15, 63.02, 60.74),
        "CNN": (57.16, 57.24, 57.20, 60.23, 64.25, 62.17, 59.58),
        "CNN+WARP": (52.50, 59.30, 55.70, 61.40, 59.80, 60.70, 58.09),
        "CNN+softmax": (57.00, 59.00, 58.00, 62.10, 60.20, 61.10, 59.51),
        "CNN+logistic": (59.30, 58.60, 58.90, 61.70, 65.00, 63.30, 61.02),
    },
}
#: Tables V-VI: LQP accuracy (%) and MSE with visual / visual + tag features.
PUBLISHED_LQP = {
    "NUS-WIDE": {"MS-CNN": (45.92, 0.673), "MS-CNN+Tags": (48.26, 0.437)},
    "MS-COCO": {"MS-CNN": (46.27, 0.773), "MS-CNN+Tags": (47.96, 0.564)},
}
BASELINES = {"CNN+logistic": "cnn_logistic", "CNN+softmax": "cnn_softmax",
             "CNN+WARP": "cnn_warp"}  # fmt: skip
BASELINE_GRID = {"epochs": [5, 10, 20, 40]}

Progress = Callable[[str], None]


def evaluate_rows(
    name: str,
    model: Any,
    test: AnnotationSet,
    k: int,
    *,
    lqp: bool,
    upper_bound: bool = False,
    train: AnnotationSet | None = None,
) -> list[dict[str, Any]]:
    """Rows of a fitted M3 model on `test`: ``name`` decoded by top-`k`, ``name+LQP`` by
    its predicted quantities, and with `upper_bound` by the true label counts; each with
    the report's metrics, and LQP accuracy and MSE (with `train`: also the accuracy of
    always predicting its most common label count, ``most_common``)."""
    prediction = model.predict(test)
    true = test.label_counts().astype(np.float64)
    decoders: list[tuple[str, Decoder, Prediction]] = [(name, TopK(k), prediction)]
    if lqp:
        decoders.append((f"{name}+LQP", Quantity(), prediction))
    if upper_bound:
        decoders.append(("Upper bound", Quantity(), Prediction(prediction.scores, quantities=true)))
    quantity = {
        "accuracy": label_quantity_accuracy_score(test.labels, prediction.quantities),
        "mse": label_quantity_mse_loss(test.labels, prediction.quantities),
    }
    if train is not None:
        common = np.bincount(train.label_counts()).argmax()
        quantity["most_common"] = float(np.mean(test.label_counts() == common))
    return [
        {
            "name": row,
            "metrics": _report(test, decoder.decode_prediction(p), p.scores),
            "lqp": quantity,
        }  # fmt: skip
        for row, decoder, p in decoders
    ]


def run_corel5k(
    train: AnnotationSet,
    test: AnnotationSet,
    *,
    features: str,
    epochs: int,
    seed: int = 0,
    progress: Progress = print,
    **m3: Any,
) -> list[dict[str, Any]]:
    """The Corel-5k ablation and baselines (top-5 without LQP). `train` and `test` hold
    the encoder's scale maps and pooled `features`; `m3` are extra `M3Annotator` settings."""
    rows = []
    plain = M3Annotator(stages=[M3Annotator().stage_names()[-1]], epochs=epochs, seed=seed, **m3)
    multi = M3Annotator(epochs=epochs, seed=seed, **m3)
    for name, model, lqp in (("CNN", plain, False), ("MS-CNN", multi, True)):
        start = time.perf_counter()
        model.fit(train)
        fitted = evaluate_rows(name, model, test, 5, lqp=lqp, upper_bound=lqp, train=train)
        for row in fitted:
            row["seconds"] = time.perf_counter() - start
            row["history"] = model.history_
        rows += fitted
        progress(f"{name}: C-F1 {fitted[0]['metrics']['C-F1']:.3f} ({fitted[0]['seconds']:.0f} s)")
    for name, registered in BASELINES.items():
        start = time.perf_counter()
        chosen = select_by_cv(
            lambda _r=registered, **p: create_annotator(_r, features=features, seed=seed, **p),
            BASELINE_GRID, train, n_folds=3, metric="f1", decoder=TopK(5),
        ).best_params  # fmt: skip
        model = create_annotator(registered, features=features, seed=seed, **chosen).fit(train)
        scores = model.scores(test)
        row = {"name": name, "metrics": _report(test, TopK(5).decode(scores), scores),
               "config": chosen, "seconds": time.perf_counter() - start}  # fmt: skip
        rows.append(row)
        progress(f"{name}: C-F1 {row['metrics']['C-F1']:.3f} ({chosen})")
    return rows


def run_mirflickr_tags(
    train: AnnotationSet, test: AnnotationSet, *, epochs: int, seed: int = 0, **m3: Any
) -> list[dict[str, Any]]:
    """Tags and Tags+LQP (and the upper bound) on user tags alone, top-3 without LQP."""
    model = M3Annotator(stages=[], tags=True, epochs=epochs, seed=seed, **m3).fit(train)
    return evaluate_rows("Tags", model, test, 3, lqp=True, upper_bound=True, train=train)


def run_mirflickr_photos(
    splits: Sequence[tuple[AnnotationSet, AnnotationSet]],
    *,
    epochs: int,
    progress: Progress = print,
    **m3: Any,
) -> list[dict[str, Any]]:
    """MS-CNN (+Tags) (+LQP) on the photo rows over several ``(train, test)`` splits: the
    mean of each metric and its standard deviation (``std``), top-3 without LQP."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for seed, (train, test) in enumerate(splits):
        for tags in (False, True):
            model = M3Annotator(tags=tags, epochs=epochs, seed=seed, **m3).fit(train)
            name = "MS-CNN+Tags" if tags else "MS-CNN"
            rows = evaluate_rows(name, model, test, 3, lqp=True, upper_bound=tags, train=train)
            for row in rows:
                runs.setdefault(row["name"], []).append(row)
            progress(f"split {seed}: {name} C-F1 {runs[name][-1]['metrics']['C-F1']:.3f}")
    return [_mean_row(name, rows) for name, rows in runs.items()]


def _mean_row(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = rows[0]["metrics"]
    mean = {k: float(np.mean([r["metrics"][k] for r in rows])) for k in keys}
    std = {k: float(np.std([r["metrics"][k] for r in rows])) for k in keys}
    lqp = {k: float(np.mean([r["lqp"][k] for r in rows])) for k in rows[0]["lqp"]}
    return {"name": name, "metrics": mean, "std": std, "lqp": lqp, "runs": len(rows)}


def _report(test: AnnotationSet, decoded: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    report = annotation_report(test.labels, decoded, scores)
    return {key: float(value) for key, value in report.items()}


def run_part(
    part: str, data: StudyData, *, epochs: int, params: dict[str, Any], progress: Progress
) -> list[dict[str, Any]]:
    """The rows of one part of the study (`PARTS`); `params` are M3 settings."""
    if part == "corel5k":
        inputs = M3Annotator(**params).required_inputs() | ModelInputs(features=(data.encoder,))
        dataset = data.read(f"corel5k:{data.folder('corel5k')}", inputs)
        train, test = dataset.split("train"), dataset.split("test")
        return run_corel5k(train, test, features=data.encoder, epochs=epochs,
                           progress=progress, **params)  # fmt: skip
    folder = data.folder("mirflickr")
    if part == "mirflickr-tags":
        dataset = data.read(f"mirflickr:{folder}?test_size=0.2&seed=0", None)
        train, test = dataset.split("train"), dataset.split("test")
        progress(f"mirflickr tags: {train.n_items} training and {test.n_items} test rows")
        return run_mirflickr_tags(train, test, epochs=epochs, **params)
    inputs = M3Annotator(**params, tags=True).required_inputs()
    splits = []
    for seed in range(5):
        spec = f"mirflickr:{folder}?missing_images=drop&test_size=0.2&seed={seed}"
        dataset = data.read(spec, inputs)
        splits.append((dataset.split("train"), dataset.split("test")))
    return run_mirflickr_photos(splits, epochs=epochs, progress=progress, **params)


# ---------------------------------------------------------------------- tables
def markdown(parts: dict[str, dict[str, Any]]) -> str:
    """The saved parts (by part name) as markdown tables, with the paper's rows."""
    out = []
    titles = {
        "corel5k": "Corel-5k (499 test photos, 260 words; top-5 without LQP)",
        "mirflickr-tags": "MIRFLICKR-25k, user tags only (20,015 rows, 24 labels; top-3 "
        "without LQP)",
        "mirflickr-photos": "MIRFLICKR-25k, the 730 rows with a photo (five random 80/20 "
        "splits, mean ± std; top-3 without LQP)",
    }
    for part in PARTS:
        if part not in parts:
            continue
        saved = parts[part]
        out += [f"**{titles[part]}.** `{saved['command']}`", ""]
        out += _table(saved["rows"])
        out.append("")
    out += ["**The paper's rows, for orientation** (other data, ResNet-101 fine-tuned; %):", ""]
    header = "| dataset | model | " + " | ".join(p for _, p in COLUMNS) + " |"
    out += [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for dataset, rows in PUBLISHED.items():
        for name, values in rows.items():
            out.append(f"| {dataset} | {name} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    out += ["", "| dataset | LQP features | accuracy (%) | MSE |", "|---|---|---|---|"]
    for dataset, rows in PUBLISHED_LQP.items():
        for name, (accuracy, mse) in rows.items():
            out.append(f"| {dataset} (paper) | {name} | {accuracy:.2f} | {mse:.3f} |")
    return "\n".join(out) + "\n"


def _table(rows: list[dict[str, Any]]) -> list[str]:
    header = "| model | " + " | ".join(p for _, p in COLUMNS) + " | N+ | LQP acc. | LQP MSE "
    header += "| most common count acc. |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 5)]
    for row in rows:
        metrics, std = row["metrics"], row.get("std")
        cells = [
            f"{100 * metrics[key]:.2f}" + (f" ± {100 * std[key]:.2f}" if std else "")
            for key, _ in COLUMNS
        ]
        lqp = row.get("lqp")
        quantity = ["", "", ""]
        if lqp:
            common = lqp.get("most_common")
            quantity = [f"{100 * lqp['accuracy']:.1f}", f"{lqp['mse']:.3f}",
                        "" if common is None else f"{100 * common:.1f}"]  # fmt: skip
        n_plus = f"{metrics['N+']:.0f}" + (f" ± {std['N+']:.0f}" if std else "")
        lines.append(f"| {row['name']} | " + " | ".join([*cells, n_plus, *quantity]) + " |")
    return lines
