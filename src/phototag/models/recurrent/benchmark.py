"""The JVSP paper's experiments on the data we have (`phototag benchmark recurrent`).

Two parts, each saved as one JSON file; `markdown` renders them as tables:

- ``corel5k`` (rare-first, top-5, as the paper on ESP Game): JVSP, CNN-RNN and the CNN +
  logistic baseline; the ablation (JVSP without the knowledge guidance, without the
  diversity loss, with a plain LSTM, frequent-first); per-label precision and recall of
  the small-object words (the paper's Fig. 3); training time and decoding speed;
- ``mirflickr-photos``: the 1,000 MIRFLICKR photos with the 24 official concepts
  (frequent-first, top-3), five random 80/20 splits: CNN-RNN, JVSP and CNN + logistic
  (mean and standard deviation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from phototag.data import AnnotationSet, Vocabulary
from phototag.data.inputs import ModelInputs
from phototag.evaluation.decoding import TopK
from phototag.evaluation.metrics import annotation_report
from phototag.evaluation.model_selection import select_by_cv
from phototag.evaluation.studies import StudyData
from phototag.models.recurrent.annotators import CNNRNNAnnotator, JVSPAnnotator
from phototag.models.registry import create_annotator

PARTS = ("corel5k", "mirflickr-photos")
FOLDERS = {"corel5k": "corel5k", "mirflickr-photos": "mirflickr"}
EPOCHS = 30
#: Table columns: phototag's report keys.
COLUMNS = ("C-P", "C-R", "C-F1", "O-P", "O-R", "O-F1", "mAP_label", "N+")
#: Ablation rows: JVSP settings changed from the full model.
ABLATIONS = {
    "JVSP without knowledge guidance": {"knowledge": False},
    "JVSP without diversity loss": {"alpha": 0.0},
    "JVSP with a plain LSTM": {"visual_lstm": False},
    "JVSP frequent-first": {"order": "frequent_first"},
}
#: Corel-5k words whose object usually fills a small part of the photo (the paper's
#: Fig. 3 uses MS-COCO's bottle, cell phone, bowl, spoon, fork, knife and mouse).
SMALL_OBJECTS = ("birds", "boats", "cars", "sun", "statue", "window", "fish", "nest", "people")
#: The paper's ESP Game table (%): P, R, F1, N+ (for orientation: other data, VGG).
PUBLISHED_ESP = {
    "TagProp": (39, 27, 32, 239),
    "2PKNN": (51, 23, 31.7, 234),
    "CCA-KNN": (46, 36, 40.4, 260),
    "RIA": (32, 26, 28.7, 241),
    "JVSP": (50.3, 36.4, 42.2, 258),
}
LOGISTIC_GRID = {"epochs": [10, 20, 40]}
#: The MIRFLICKR concepts: the 24 official ones (the ``_r1`` columns are the strict
#: versions of 14 of them).
STRICT_SUFFIX = "_r1"

Progress = Callable[[str], None]


def run_part(
    part: str, data: StudyData, *, epochs: int, params: dict[str, Any], progress: Progress
) -> list[dict[str, Any]]:
    """The rows of one part (`PARTS`); `params` are settings of every recurrent model."""
    inputs = JVSPAnnotator(**params).required_inputs() | ModelInputs(features=(data.encoder,))
    if part == "corel5k":
        dataset = data.read(f"corel5k:{data.folder('corel5k')}", inputs)
        return run_corel5k(dataset.split("train"), dataset.split("test"), features=data.encoder,
                           epochs=epochs, progress=progress, **params)  # fmt: skip
    splits = []
    for seed in range(5):
        spec = f"mirflickr:{data.folder('mirflickr')}?items=photos&test_size=0.2&seed={seed}"
        dataset = official_concepts(data.read(spec, inputs))
        splits.append((dataset.split("train"), dataset.split("test")))
    return run_mirflickr_photos(splits, features=data.encoder, epochs=epochs,
                                progress=progress, **params)  # fmt: skip


def official_concepts(data: Any) -> Any:
    """`data` (a MIRFLICKR dataset or set) with only the 24 concepts, not the strict
    ``_r1`` versions."""
    kept = [i for i, word in enumerate(data.vocabulary) if not word.endswith(STRICT_SUFFIX)]
    vocabulary = Vocabulary([data.vocabulary[i] for i in kept])
    return replace(data, vocabulary=vocabulary, labels=data.labels[:, kept])


def run_corel5k(
    train: AnnotationSet,
    test: AnnotationSet,
    *,
    features: str,
    epochs: int,
    seed: int = 0,
    progress: Progress = print,
    **settings: Any,
) -> list[dict[str, Any]]:
    """JVSP, CNN-RNN, CNN + logistic and the ablation on Corel-5k (top-5, rare-first by
    default); JVSP and CNN-RNN rows add the small-object words' precision and recall and
    the decoding speed."""
    settings = {"k": 5, **settings}
    models: dict[str, Any] = {
        "JVSP": JVSPAnnotator(epochs=epochs, seed=seed, **settings),
        "CNN-RNN": CNNRNNAnnotator(epochs=epochs, seed=seed, **settings),
    }
    for name, change in ABLATIONS.items():
        models[name] = JVSPAnnotator(epochs=epochs, seed=seed, **{**settings, **change})
    rows = []
    for name, model in models.items():
        row = _fit_and_evaluate(name, model, train, test)
        if name in ("JVSP", "CNN-RNN"):
            row["small_objects"] = per_label(test, row.pop("label_sets"), SMALL_OBJECTS)
            row["decode_per_second"] = decoding_speed(model, train)
        row.pop("label_sets", None)
        rows.append(row)
        progress(f"{name}: C-F1 {row['metrics']['C-F1']:.3f}, N+ {row['metrics']['N+']}, "
                 f"{row['seconds']:.0f} s, {row['epochs']} epochs")  # fmt: skip
    rows.append(_logistic(train, test, features, 5, seed))
    progress(f"CNN+logistic: C-F1 {rows[-1]['metrics']['C-F1']:.3f}")
    return rows


def run_mirflickr_photos(
    splits: Sequence[tuple[AnnotationSet, AnnotationSet]],
    *,
    features: str,
    epochs: int,
    progress: Progress = print,
    **settings: Any,
) -> list[dict[str, Any]]:
    """CNN-RNN, JVSP and CNN + logistic over several ``(train, test)`` splits,
    frequent-first and top-3: the mean of each metric and its standard deviation."""
    settings = {"k": 3, "order": "frequent_first", **settings}
    runs: dict[str, list[dict[str, Any]]] = {}
    for seed, (train, test) in enumerate(splits):
        for name, kind in (("CNN-RNN", CNNRNNAnnotator), ("JVSP", JVSPAnnotator)):
            model = kind(epochs=epochs, seed=seed, **settings)
            row = _fit_and_evaluate(name, model, train, test)
            row.pop("label_sets")
            runs.setdefault(name, []).append(row)
        runs.setdefault("CNN+logistic", []).append(_logistic(train, test, features, 3, seed))
        progress(f"split {seed}: " + ", ".join(
            f"{name} C-F1 {rows[-1]['metrics']['C-F1']:.3f}" for name, rows in runs.items()
        ))  # fmt: skip
    return [_mean_row(name, rows) for name, rows in runs.items()]


def per_label(
    test: AnnotationSet, label_sets: np.ndarray, words: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Precision and recall of each of `words` (those in the vocabulary) with the number
    of test images that have it."""
    truth = test.labels.toarray().astype(bool)
    out = {}
    for word in words:
        if word not in test.vocabulary:
            continue
        j = test.vocabulary.index(word)
        hits = float(np.sum(truth[:, j] & label_sets[:, j]))
        out[word] = {
            "precision": hits / max(float(label_sets[:, j].sum()), 1.0),
            "recall": hits / max(float(truth[:, j].sum()), 1.0),
            "images": int(truth[:, j].sum()),
        }
    return out


def decoding_speed(model: Any, data: AnnotationSet, repeats: int = 1) -> float:
    """Images decoded per second from cached maps (`data`'s), the best of `repeats`."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(data)
        best = min(best, time.perf_counter() - start)
    return data.n_items / best


def _fit_and_evaluate(
    name: str, model: Any, train: AnnotationSet, test: AnnotationSet
) -> dict[str, Any]:
    start = time.perf_counter()
    model.fit(train)
    seconds = time.perf_counter() - start
    prediction = model.predict(test)
    return {
        "name": name,
        "metrics": _report(test, prediction.label_sets, prediction.scores),
        "seconds": seconds,
        "epochs": len(model.history_),
        "history": model.history_,
        "label_sets": prediction.label_sets,
    }


def _logistic(
    train: AnnotationSet, test: AnnotationSet, features: str, k: int, seed: int
) -> dict[str, Any]:
    """The CNN + logistic baseline on the pooled features (epochs by 3-fold CV)."""
    start = time.perf_counter()
    chosen = select_by_cv(
        lambda **p: create_annotator("cnn_logistic", features=features, seed=seed, **p),
        LOGISTIC_GRID, train, n_folds=3, metric="f1", decoder=TopK(k),
    ).best_params  # fmt: skip
    model = create_annotator("cnn_logistic", features=features, seed=seed, **chosen).fit(train)
    scores = model.scores(test)
    return {"name": "CNN+logistic", "metrics": _report(test, TopK(k).decode(scores), scores),
            "config": chosen, "seconds": time.perf_counter() - start}  # fmt: skip


def _mean_row(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = rows[0]["metrics"]
    return {
        "name": name,
        "metrics": {k: float(np.mean([r["metrics"][k] for r in rows])) for k in keys},
        "std": {k: float(np.std([r["metrics"][k] for r in rows])) for k in keys},
        "seconds": float(np.mean([r["seconds"] for r in rows])),
        "runs": len(rows),
    }


def _report(test: AnnotationSet, decoded: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    report = annotation_report(test.labels, decoded, scores)
    return {key: float(value) for key, value in report.items()}


# ---------------------------------------------------------------------- tables
def markdown(parts: dict[str, dict[str, Any]]) -> str:
    """The saved parts (by part name) as markdown tables, with the paper's rows."""
    out = []
    if "corel5k" in parts:
        saved = parts["corel5k"]
        rows = saved["rows"]
        out += ["**Corel-5k** (499 test photos, 260 words; rare-first, top-5). "
                f"`{saved['command']}`", ""]  # fmt: skip
        out += _table(rows, seconds=True)
        out += ["", "**The paper's ESP Game table, for orientation** (other data, VGG-16; "
                "per-label P, R, F1 in %):", "", "| model | P | R | F1 | N+ |",
                "|---|---|---|---|---|"]  # fmt: skip
        for name, (p, r, f1, n_plus) in PUBLISHED_ESP.items():
            out.append(f"| {name} (paper) | {p} | {r} | {f1} | {n_plus} |")
        small = {row["name"]: row["small_objects"] for row in rows if "small_objects" in row}
        if small:
            names = list(small)
            out += ["", "**Small objects on Corel-5k** (per-label precision / recall, %; "
                    "the paper's Fig. 3):", "",
                    "| word | test images | " + " | ".join(names) + " |",
                    "|---|---|" + "---|" * len(names)]  # fmt: skip
            for word, first in small[names[0]].items():
                cells = [f"{100 * small[n][word]['precision']:.0f} / "
                         f"{100 * small[n][word]['recall']:.0f}" for n in names]  # fmt: skip
                out.append(f"| {word} | {first['images']} | " + " | ".join(cells) + " |")
        speed = [f"{row['name']} {row['decode_per_second']:.0f}"
                 for row in rows if "decode_per_second" in row]  # fmt: skip
        if speed:
            out += ["", "Decoding from cached maps (images/s, the 4,500 training maps, "
                    "beam 3): " + ", ".join(speed) + "."]  # fmt: skip
        out.append("")
    if "mirflickr-photos" in parts:
        saved = parts["mirflickr-photos"]
        out += ["**MIRFLICKR-25k, the 1,000 photos with the 24 official concepts** (five "
                f"random 80/20 splits, mean ± std; frequent-first, top-3). `{saved['command']}`",
                ""]  # fmt: skip
        out += _table(saved["rows"], seconds=True)
        out.append("")
    return "\n".join(out) + "\n"


def _table(rows: list[dict[str, Any]], *, seconds: bool) -> list[str]:
    header = "| model | " + " | ".join(COLUMNS) + (" | train (s) | epochs |" if seconds else " |")
    lines = [header, "|" + "---|" * (len(COLUMNS) + 1 + 2 * seconds)]
    for row in rows:
        metrics, std = row["metrics"], row.get("std")
        cells = []
        for key in COLUMNS:
            scale, digits = (1, 0) if key == "N+" else (100, 1)
            cell = f"{scale * metrics[key]:.{digits}f}"
            cells.append(cell + (f" ± {scale * std[key]:.{digits}f}" if std else ""))
        if seconds:
            cells += [f"{row['seconds']:.0f}", str(row.get("epochs", ""))]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return lines
