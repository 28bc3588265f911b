"""Reproducing the papers' benchmark tables: train, evaluate and compare with published rows.

`phototag benchmark corel5k` trains every model on the Corel-5k training split with
our features, evaluates each once on the test split with the fixed-length protocol of
the CCA-KNN paper (5 labels per image; P, R, F1 as per-word means over all 260 words;
N+), and prints the table next to the paper's Table 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from phototag.data import AnnotationSet
from phototag.evaluation.decoding import TopK
from phototag.evaluation.metrics import annotation_report
from phototag.evaluation.model_selection import select_by_cv
from phototag.evaluation.protocols import ScoringModel

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
    features: str
    precision: float
    recall: float
    f1: float
    n_plus: int
    map_label: float
    map_image: float
    fit_seconds: float
    predict_seconds: float
    cv_seconds: float = 0.0


@dataclass(frozen=True)
class ModelSpec:
    """A benchmarked model: fixed constructor arguments, and a grid chosen by CV.

    `model` is the registry name (default: the row's name). `score_only` names grid
    parameters that only scoring reads (one fit per fold is shared by the points that
    differ only in them; see `select_by_cv`). `descriptors` maps classic descriptors the
    model reads next to the image features to the distance each is compared by (see
    `with_image_features`).
    """

    config: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    score_only: tuple[str, ...] = ()
    model: str = ""
    descriptors: Mapping[str, str] = field(default_factory=dict)

    def with_image_features(self, encoder: str, metric: str = "cosine") -> ModelSpec:
        """The spec reading `encoder`'s features (compared by `metric` when descriptors
        come along), then its descriptors, unless its config names features itself."""
        if "features" in self.config:
            return self
        features: dict[str, Any] = {"features": encoder}
        if self.descriptors:
            features = {
                "features": [encoder, *self.descriptors],
                "metric": [metric, *self.descriptors.values()],
            }
        return replace(self, config={**features, **self.config})


def run_benchmark(
    train: AnnotationSet,
    test: AnnotationSet,
    models: Mapping[str, ModelSpec | Mapping[str, Any]],
    k: int = 5,
    *,
    factory: Callable[..., ScoringModel],
    n_folds: int = 3,
    progress: Callable[[str], None] | None = None,
) -> list[BenchmarkRow]:
    """Fit each model on `train` and evaluate it once on `test` (top-`k`).

    A `ModelSpec` with a grid first picks its hyperparameters by `n_folds`-fold
    cross-validation on `train` alone (metric: C-F1 of the top-`k` labels); a plain
    mapping is used as the configuration as it is. The test split is touched once.
    ``factory(name, **config)`` builds each model (`phototag.models.create_annotator` for
    the registered ones).
    """
    rows = []
    for label, spec in models.items():
        if not isinstance(spec, ModelSpec):
            spec = ModelSpec(dict(spec))
        name = spec.model or label
        config = dict(spec.config)
        cv_seconds = 0.0
        if spec.grid:
            start = time.perf_counter()
            result = select_by_cv(
                lambda _name=name, _config=config, **params: factory(_name, **_config, **params),
                spec.grid,
                train,
                n_folds=n_folds,
                metric="f1",
                decoder=TopK(k),
                score_only=spec.score_only,
            )
            config.update(result.best_params)
            cv_seconds = time.perf_counter() - start
            if progress is not None:
                chosen = f"{result.best_params} (C-F1 {result.best_score:.3f})"
                progress(f"{label}: cross-validation chose {chosen} in {cv_seconds:.0f} s")
        model = factory(name, **config)
        start = time.perf_counter()
        model.fit(train)
        fitted = time.perf_counter()
        scores = model.scores(test)
        predicted = time.perf_counter()
        report = annotation_report(test.labels, TopK(k).decode(scores), scores)
        rows.append(
            BenchmarkRow(
                model=label,
                config=config,
                features=_features_text(config.get("features")),
                precision=float(report["C-P"]),
                recall=float(report["C-R"]),
                f1=float(report["C-F1"]),
                n_plus=int(report["N+"]),
                map_label=float(report["mAP_label"]),
                map_image=float(report["mAP_image"]),
                fit_seconds=fitted - start,
                predict_seconds=predicted - fitted,
                cv_seconds=cv_seconds,
            )
        )
        if progress is not None:
            progress(f"{label}: F1 {100 * rows[-1].f1:.1f}, N+ {rows[-1].n_plus}")
    return rows


def _features_text(features: str | Sequence[str] | None) -> str:
    if features is None:
        return ""
    return features if isinstance(features, str) else " + ".join(features)


def markdown_table(rows: list[BenchmarkRow]) -> str:
    """Our rows, then the published ones, as one markdown table (percentages)."""
    lines = [
        "| method | features | P | R | F1 | N+ | mAP label | mAP image | CV s | fit s "
        "| predict s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| **{row.model}** (ours) | {row.features} | {100 * row.precision:.1f} | "
            f"{100 * row.recall:.1f} | {100 * row.f1:.1f} | {row.n_plus} | "
            f"{100 * row.map_label:.1f} | {100 * row.map_image:.1f} | "
            f"{row.cv_seconds:.0f} | {row.fit_seconds:.1f} | {row.predict_seconds:.2f} |"
        )
    for method, visual, p, r, f1, n_plus in PUBLISHED_COREL5K:
        lines.append(f"| {method} (published) | {visual} | {p} | {r} | {f1} | {n_plus} | | | | | |")
    return "\n".join(lines)


def rows_as_json(rows: list[BenchmarkRow]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]


#: The six global descriptors of the modality-fusion paper with the distance each is
#: compared by: chi-square for histograms, L1 for moments and wavelet energies, L2 for GIST.
GLOBAL_DESCRIPTORS: dict[str, str] = {
    "hsv_hist": "chi2",
    "lab_moments": "l1",
    "edge_direction": "chi2",
    "wavelet": "l1",
    "lbp": "chi2",
    "gist": "l2",
}

#: Models of the Corel-5k table: fixed settings and the grids searched by 3-fold
#: cross-validation on the training split (C-F1 of the top 5 labels).
COREL5K_MODELS: dict[str, ModelSpec] = {
    "jec": ModelSpec(grid={"k": [3, 5, 8, 13]}),
    "tagprop": ModelSpec(grid={"k": [50, 100, 200, 400]}),
    "mlknn": ModelSpec(grid={"k": [5, 10, 20, 40]}),
    "2pknn": ModelSpec(grid={"k1": [2, 3, 5, 8]}),
    "2pknn_ml": ModelSpec(grid={"k1": [2, 3, 5, 8]}),
    "cca": ModelSpec(grid={"reg_x": [1e-4, 1e-3, 1e-2], "power": [1.0, 4.0]}),
    "kcca": ModelSpec(grid={"reg_x": [1e-5, 1e-4, 1e-3]}),
    "cca_knn": ModelSpec(
        grid={"k": [1, 3, 8], "sigma": [0.03, 0.1, 0.3], "vote": ["neighbours", "label"]},
        score_only=("k", "sigma", "vote"),
    ),
    "linear": ModelSpec(grid={"epochs": [10, 20, 40]}),
    # the M3 paper's baselines on pooled features (docs/models/linear.md)
    "cnn_logistic": ModelSpec(grid={"epochs": [5, 10, 20, 40]}),
    "cnn_softmax": ModelSpec(grid={"epochs": [5, 10, 20, 40]}),
    "cnn_warp": ModelSpec(grid={"epochs": [5, 10, 20, 40]}),
    # 2PKNN, CCA and the linear classifier fused; it chooses its weights and its
    # rare-word exponent by its own 3-fold cross-validation
    "ensemble": ModelSpec(),
    # several feature types, as JEC, TagProp and 2PKNN+ML were designed for
    "jec+descriptors": ModelSpec(
        model="jec", grid={"k": [5, 8, 13]}, descriptors=GLOBAL_DESCRIPTORS
    ),
    "tagprop+descriptors": ModelSpec(
        model="tagprop", grid={"k": [100, 200]}, descriptors=GLOBAL_DESCRIPTORS
    ),
    "2pknn_ml+descriptors": ModelSpec(
        model="2pknn_ml", grid={"k1": [2, 3, 5]}, descriptors=GLOBAL_DESCRIPTORS
    ),
}
