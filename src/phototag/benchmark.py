"""Reproducing the papers' benchmark tables: train, evaluate and compare with published rows.

`phototag benchmark corel5k` trains every model on the Corel-5k training split with
our features, evaluates each once on the test split with the fixed-length protocol of
the CCA-KNN paper (5 labels per image; P, R, F1 as per-word means over all 260 words;
N+), and prints the table next to the paper's Table 1.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from phototag.data import AnnotationSet
from phototag.decoding import TopK
from phototag.metrics import annotation_report
from phototag.models import create_annotator

#: Corel-5k rows of Table 1 of the CCA-KNN paper (Murthy, Maji, Manmatha), in percent.
PUBLISHED_COREL5K: tuple[tuple[str, str, float, float, float, int], ...] = (
    ("JEC", "VGG-16", 31, 32, 32, 141),
    ("2PKNN", "VGG-16", 33, 30, 32, 160),
    ("2PKNN+ML", "15 hand-crafted", 44, 46, 45, 191),
    ("SVM-DMBRM", "VGG-16", 42, 45, 43, 186),
    ("CCA", "VGG-16, W2V", 35, 46, 40, 172),
    ("KCCA", "VGG-16", 39, 53, 45, 184),
    ("CCA-KNN (BV)", "VGG-16", 39, 51, 44, 192),
    ("CCA-KNN (W2V)", "VGG-16", 42, 52, 46, 201),
    ("CNN-R", "Caffe-Net", 32, 41.3, 37.2, 166),
)


@dataclass(frozen=True)
class BenchmarkRow:
    """One trained-and-evaluated model: metrics as fractions, times in seconds."""

    model: str
    config: dict[str, Any]
    precision: float
    recall: float
    f1: float
    n_plus: int
    map_label: float
    map_image: float
    fit_seconds: float
    predict_seconds: float


def run_benchmark(
    train: AnnotationSet,
    test: AnnotationSet,
    models: Mapping[str, Mapping[str, Any]],
    k: int = 5,
) -> list[BenchmarkRow]:
    """Fit each ``name -> config`` model on `train`, evaluate it once on `test` (top-`k`)."""
    rows = []
    for name, config in models.items():
        model = create_annotator(name, **config)
        start = time.perf_counter()
        model.fit(train)
        fitted = time.perf_counter()
        scores = model.scores(test)
        predicted = time.perf_counter()
        report = annotation_report(test.labels, TopK(k).decode(scores), scores)
        rows.append(
            BenchmarkRow(
                model=name,
                config=dict(config),
                precision=float(report["C-P"]),
                recall=float(report["C-R"]),
                f1=float(report["C-F1"]),
                n_plus=int(report["N+"]),
                map_label=float(report["mAP_label"]),
                map_image=float(report["mAP_image"]),
                fit_seconds=fitted - start,
                predict_seconds=predicted - fitted,
            )
        )
    return rows


def markdown_table(rows: list[BenchmarkRow], features: str) -> str:
    """Our rows, then the published ones, as one markdown table (percentages)."""
    lines = [
        "| method | features | P | R | F1 | N+ | mAP label | mAP image | fit s | predict s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| **{row.model}** (ours) | {features} | {100 * row.precision:.1f} | "
            f"{100 * row.recall:.1f} | {100 * row.f1:.1f} | {row.n_plus} | "
            f"{100 * row.map_label:.1f} | {100 * row.map_image:.1f} | "
            f"{row.fit_seconds:.1f} | {row.predict_seconds:.2f} |"
        )
    for method, visual, p, r, f1, n_plus in PUBLISHED_COREL5K:
        lines.append(f"| {method} (published) | {visual} | {p} | {r} | {f1} | {n_plus} | | | | |")
    return "\n".join(lines)


def rows_as_json(rows: list[BenchmarkRow]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]


#: Models of the Corel-5k table with their configurations (chosen by cross-validation on
#: the training split; see docs/benchmarks.md for the search).
COREL5K_MODELS: dict[str, dict[str, Any]] = {"prior": {}}
