"""The metadata paper's experiments on the data we have (`phototag benchmark neighbourhood`).

Parts (each saved as one JSON file; `markdown` renders them as the paper's tables):

- ``mirflickr-tags``: MIRFLICKR-25k's 20,015 rows, metadata only (user tags -> 24
  labels; one seeded 80/20 split): the tag-only linear baseline (v-only on π(o_x)), LTN
  and RTN with neighbourhoods by ``id`` (Jaccard), ``w2v`` and ``wnet`` (cosine), the
  neighbours' tag vectors standing in for visual features (Table 2's structure).
- ``mirflickr-photos``: the 730 rows with a photo, five random 80/20 splits (mean ± std):
  v-only, LTN, RTN and the joint models on EfficientNet-Lite2 features with tag
  neighbourhoods (Tables 1-3).
- ``corel5k``: Corel-5k (official split) with the Corel CD (image id // 1000) as group
  metadata: group neighbourhoods for v-only, LTN, RTN and the joint models.

``w2v`` is played by GloVe 6B-50d (``glove50``; pass ``--param`` or a ``file:PATH``
word2vec file for the paper's vectors) and ``wnet`` by phototag's WordNet-graph vectors
(``wordnet``). Metrics: the paper's mAP per label and per image and per-label /
per-image recall and precision at k = 3, with the top-3 upper bound.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from phototag.data import AnnotationSet
from phototag.evaluation.decoding import TopK
from phototag.evaluation.metrics import annotation_report, top_k_upper_bound
from phototag.evaluation.studies import StudyData
from phototag.models.neighbourhood.annotators import NeighbourhoodAnnotator

PARTS = ("mirflickr-tags", "mirflickr-photos", "corel5k")
FOLDERS = {"mirflickr-tags": "mirflickr", "mirflickr-photos": "mirflickr", "corel5k": "corel5k"}
#: Most epochs (early stopping on 10% of the training items decides).
EPOCHS = 30
#: The models with linear-activation LSTMs. They train at the paper's rate (RMSProp, lr
#: 1e-4), with ten times the epochs and a patience of 10: at 1e-3 they diverge (LZip's
#: training loss reaches 3.3e5 in one epoch).
RECURRENT = ("rtn", "ltwin_rnn", "ltwin_2rnn", "lzip")
#: The other models' rate: at 1e-4 they barely move in the few hundred steps these small
#: sets give (the paper had 110,000 training photos).
STUDY_LR = 1e-3
K = 3
#: The paper's names of the encodings and the embeddings that play them.
ENCODINGS = {"id": "id", "w2v": "glove50", "wnet": "wordnet", "group": "group"}
ARCH_NAMES = {"v_only": "v-only", "ltn": "LTN", "rtn": "RTN", "ltn_vecs": "LTN+Vecs",
              "ltn_allvecs": "LTN+AllVecs", "ltwin": "LTwin", "ltwin_rnn": "LTwin+RNN",
              "ltwin_2rnn": "LTwin+2RNN", "lzip": "LZip"}  # fmt: skip
#: (architecture, n, f) runs of each part.
RUNS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "mirflickr-tags": (("v_only", "id", "id"), ("ltn", "id", "id"), ("ltn", "w2v", "id"),
                       ("ltn", "wnet", "id"), ("rtn", "id", "id"), ("rtn", "w2v", "id")),
    "mirflickr-photos": (("v_only", "id", "id"), ("ltn", "id", "id"), ("ltn", "w2v", "id"),
                         ("ltn", "wnet", "id"), ("rtn", "id", "id"), ("rtn", "w2v", "id"),
                         ("ltn_vecs", "id", "id"), ("ltn_allvecs", "id", "id"),
                         ("ltwin", "id", "id"), ("ltwin", "id", "w2v"), ("ltwin", "w2v", "w2v"),
                         ("ltwin_rnn", "id", "id"), ("ltwin_2rnn", "id", "w2v"),
                         ("lzip", "id", "id"), ("lzip", "id", "w2v")),
    "corel5k": (("v_only", "group", "group"), ("ltn", "group", "group"),
                ("rtn", "group", "group"), ("ltn_vecs", "group", "group"),
                ("ltn_allvecs", "group", "group"), ("ltwin", "group", "group"),
                ("ltwin_rnn", "group", "group"), ("ltwin_2rnn", "group", "group"),
                ("lzip", "group", "group")),
}  # fmt: skip
#: The paper's NUS-WIDE rows (Tables 1-3, (m, M) = (12, 24)), %: mAP_lab, mAP_img,
#: rec_lab, prec_lab, rec_img, prec_img (None: not reported); for orientation only.
PUBLISHED: dict[str, tuple[float | None, ...]] = {
    "Upper bound": (100.0, 100.0, 65.82, 60.68, 92.09, 66.83),
    "v-only": (45.05, 76.88, 42.31, 43.74, 71.41, 51.36),
    "LTN n:id": (53.17, 79.82, 45.67, 47.64, 74.29, 53.34),
    "LTN n:w2v": (54.54, 80.32, None, None, None, None),
    "LTN n:wnet": (53.07, 79.95, None, None, None, None),
    "RTN n:id": (53.97, 79.23, None, None, None, None),
    "RTN n:w2v": (55.36, 79.77, 48.73, 51.21, 74.35, 53.28),
    "LTN+Vecs n:id f:id": (54.86, 81.34, 46.56, 50.10, 75.67, 54.37),
    "LTN+AllVecs n:id f:id": (56.61, 81.28, None, None, None, None),
    "LTwin n:id f:id": (56.79, 82.64, None, None, None, None),
    "LTwin n:id f:w2v": (63.09, 83.70, None, None, None, None),
    "LTwin n:w2v f:w2v": (63.13, 83.77, 54.40, 51.86, 78.06, 55.78),
    "LTwin+RNN n:id f:id": (58.87, 82.95, None, None, None, None),
    "LTwin+2RNN n:id f:w2v": (63.04, 83.02, None, None, None, None),
    "LZip n:id f:id": (60.64, 82.42, None, None, None, None),
    "LZip n:id f:w2v": (62.33, 82.91, None, None, None, None),
}
#: Table columns: report keys and the paper's names.
COLUMNS = (("mAP_label", "mAP_lab"), ("mAP_image", "mAP_img"), ("C-R", "rec_lab"),
           ("C-P", "prec_lab"), ("I-R", "rec_img"), ("I-P", "prec_img"))  # fmt: skip

Progress = Callable[[str], None]


def row_name(architecture: str, n: str, f: str, features: bool = True) -> str:
    """The paper's name of a run: ``LTwin n:id f:w2v`` (f only for joint models)."""
    from phototag.models.neighbourhood.network import ARCHITECTURES

    name = ARCH_NAMES[architecture]
    if architecture == "v_only":
        return name if features else "tag-only linear"
    name += f" n:{n}"
    return name + (f" f:{f}" if ARCHITECTURES[architecture] else "")


def metrics(test: AnnotationSet, scores: np.ndarray) -> dict[str, float]:
    """The paper's metrics (and the rest of the report) of `scores`, top-3 sets."""
    report = annotation_report(test.labels, TopK(K).decode(scores), scores)
    return {key: float(value) for key, value in report.items()}


def upper_bound(test: AnnotationSet) -> dict[str, float]:
    """The top-3 upper bound (mAP 1 by definition)."""
    return {**top_k_upper_bound(test.labels, K), "mAP_label": 1.0, "mAP_image": 1.0}


def study_settings(architecture: str, epochs: int) -> dict[str, Any]:
    """The study's rate, most epochs and patience of `architecture` (`RECURRENT`)."""
    if architecture in RECURRENT:
        return {"lr": 1e-4, "epochs": 10 * epochs, "patience": 10}
    return {"lr": STUDY_LR, "epochs": epochs, "patience": 3}


def run_models(
    train: AnnotationSet,
    test: AnnotationSet,
    runs: Sequence[tuple[str, str, str]],
    *,
    features: str | None,
    epochs: int,
    seed: int = 0,
    progress: Progress = print,
    **params: Any,
) -> list[dict[str, Any]]:
    """One row per ``(architecture, n, f)`` run fitted on `train`, scored on `test`, with
    `study_settings` (`params` override them)."""
    rows = [{"name": "Upper bound", "metrics": upper_bound(test)}]
    for architecture, n, f in runs:
        start = time.perf_counter()
        settings = {**study_settings(architecture, epochs), **params}
        model = NeighbourhoodAnnotator(
            architecture=architecture, features=features, neighbourhood=ENCODINGS[n],
            metadata=ENCODINGS[f], seed=seed, **settings,
        ).fit(train)  # fmt: skip
        row = {"name": row_name(architecture, n, f, features is not None),
               "metrics": metrics(test, model.scores(test)), "lr": settings["lr"],
               "epochs": len(model.history_), "seconds": time.perf_counter() - start}  # fmt: skip
        rows.append(row)
        progress(f"{row['name']}: mAP_lab {row['metrics']['mAP_label']:.3f} mAP_img "
                 f"{row['metrics']['mAP_image']:.3f} ({row['seconds']:.0f} s)")  # fmt: skip
    return rows


def mean_rows(runs: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows of several splits merged: each metric's mean and standard deviation, and
    each split's metrics (for paired comparisons)."""
    out = []
    for i, first in enumerate(runs[0]):
        each = [split[i]["metrics"] for split in runs]
        out.append({
            "name": first["name"],
            **({"lr": first["lr"]} if "lr" in first else {}),
            "metrics": {k: float(np.mean([e[k] for e in each])) for k in first["metrics"]},
            "std": {k: float(np.std([e[k] for e in each])) for k in first["metrics"]},
            "runs": len(runs),
            "splits": [{k: split[i][k] for k in ("metrics", "epochs") if k in split[i]}
                       for split in runs],  # fmt: skip
        })  # fmt: skip
    return out


def with_corel_groups(data: AnnotationSet) -> AnnotationSet:
    """Corel-5k with each photo's CD (image id // 1000) as ``metadata["group"]``."""
    cds = [f"cd{int(i.split('.')[0]) // 1000}" for i in data.item_ids]
    data.metadata["group"] = np.array(cds)
    return data


def run_part(
    part: str, data: StudyData, *, epochs: int, params: dict[str, Any], progress: Progress
) -> list[dict[str, Any]]:
    """The rows of one part (`PARTS`); `params` are extra `NeighbourhoodAnnotator` settings."""
    from phototag.data.inputs import ModelInputs

    features = ModelInputs(features=(data.encoder,))
    if part == "corel5k":
        dataset = with_corel_groups(data.read(f"corel5k:{data.folder('corel5k')}", features))
        return run_models(dataset.split("train"), dataset.split("test"), RUNS[part],
                          features=data.encoder, epochs=epochs, progress=progress,
                          **params)  # fmt: skip
    folder = data.folder("mirflickr")
    if part == "mirflickr-tags":
        dataset = data.read(f"mirflickr:{folder}?test_size=0.2&seed=0", None)
        return run_models(dataset.split("train"), dataset.split("test"), RUNS[part],
                          features=None, epochs=epochs, progress=progress,
                          **params)  # fmt: skip
    splits = []
    for seed in range(5):
        spec = f"mirflickr:{folder}?missing_images=drop&test_size=0.2&seed={seed}"
        dataset = data.read(spec, features)
        progress(f"split {seed}")
        splits.append(run_models(dataset.split("train"), dataset.split("test"), RUNS[part],
                                 features=data.encoder, epochs=epochs, seed=seed,
                                 progress=progress, **params))  # fmt: skip
        # each split's rows in the log, so a run cut short still leaves its numbers
        progress(f"split {seed} rows: {json.dumps(splits[-1])}")
    return mean_rows(splits)


# ---------------------------------------------------------------------- tables
TITLES = {
    "mirflickr-tags": "MIRFLICKR-25k, user tags only (20,015 rows: 16,012 train / 4,003 "
    "test, 24 labels; the neighbours' tag vectors in place of visual features)",
    "mirflickr-photos": "MIRFLICKR-25k, the 730 rows with a photo (EfficientNet-Lite2 "
    "features; five random 80/20 splits, mean ± std)",
    "corel5k": "Corel-5k (4,500 / 499, 260 labels), the Corel CD as group metadata "
    "(EfficientNet-Lite2 features)",
}


def markdown(parts: dict[str, dict[str, Any]]) -> str:
    """The saved parts (by name) as tables in the paper's columns (%, top-3), then the
    paper's NUS-WIDE rows."""
    out = []
    for part in PARTS:
        if part not in parts:
            continue
        saved = parts[part]
        out += [f"**{TITLES[part]}.** `{saved['command']}` ({saved['seconds'] / 60:.0f} min)",
                ""]  # fmt: skip
        out += _table(saved["rows"])
        out.append("")
    out += ["**The paper's NUS-WIDE rows, for orientation** (AlexNet features, 110,000 "
            "training photos, (m, M) = (12, 24); %):", ""]  # fmt: skip
    out += _header()
    for name, values in PUBLISHED.items():
        cells = ["-" if v is None else f"{v:.2f}" for v in values]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _header(rates: bool = False) -> list[str]:
    names = [p for _, p in COLUMNS] + (["lr"] if rates else [])
    return ["| model | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]


def _table(rows: list[dict[str, Any]]) -> list[str]:
    rates = any("lr" in row for row in rows)  # runs saved before rates per model: none
    lines = _header(rates)
    for row in rows:
        metrics, std = row["metrics"], row.get("std")
        cells = [f"{100 * metrics[key]:.2f}" + (f" ± {100 * std[key]:.2f}" if std else "")
                 for key, _ in COLUMNS]  # fmt: skip
        if rates:
            cells.append(f"{row['lr']:g}" if "lr" in row else "-")
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return lines
