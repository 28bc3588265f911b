"""The modality-fusion paper's study on the data we have (`phototag benchmark fusion`).

Three parts, each saved as one JSON file; `markdown` renders every saved part:

- ``scene``: Mulan scene (1,211 / 1,196 images, 294 features, 6 labels), the paper's
  natural-scene set: one feature type x the three similarities; mu and sigma chosen by
  3-fold cross-validation on the training split (mAP per image), then the models fitted
  with six seeds (mean and std: the seed moves the Hamming loss by about as much as
  the rows differ);
- ``corel5k``: Corel-5k (4,500 / 499 photos, 260 words): the six global descriptors,
  the encoder's pooled features, three encoder stages' maps averaged over space and,
  with ``--mulan``, Duygulu's region blob tokens (Mulan Corel5k) x three similarities;
- ``mirflickr-photos``: MIRFLICKR-25k's 730 rows with a photo (24 labels): the same
  visual sources plus the user tags, five random 80/20 splits (mean and std).

Rows: the fusion (EG weights), uniform weights, every single modality (the same fitted
heads, re-weighted; each with its own Hamming thresholds), ML-kNN (the paper's lazy
learning baseline) and the logistic classifier on the encoder's pooled features, each
decoded by its own 0.5 rule and, as the fusion rows are, by per-label Hamming thresholds
fitted on out-of-fold training scores. Metric: Hamming loss first, then the report's suite.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from phototag.data import AnnotationSet
from phototag.data.inputs import ModelInputs
from phototag.evaluation.decoding import LabelThresholds, Threshold
from phototag.evaluation.metrics import annotation_report
from phototag.evaluation.model_selection import cv_folds, select_by_cv
from phototag.evaluation.studies import StudyData
from phototag.models.fusion.annotators import EG_SELECT, SIMILARITIES, FusionAnnotator
from phototag.models.fusion.eg import hamming_thresholds
from phototag.models.registry import create_annotator

PARTS = ("scene", "corel5k", "mirflickr-photos")
FOLDERS = {"scene": "mulan", "corel5k": "corel5k", "mirflickr-photos": "mirflickr"}
EPOCHS = 20
#: Seeds of the scene part's runs (head initialisation, batches, folds, pair draws).
SCENE_SEEDS = (0, 1, 2, 3, 4, 5)
#: The paper's global descriptors (Sec. 4.1) and the encoder stages pooled as sources.
DESCRIPTORS = ("hsv_hist", "lab_moments", "edge_direction", "wavelet", "lbp", "gist")
STAGES = ("stage3", "stage5", "stage6")
#: The feature key of Duygulu's region blob tokens (Mulan Corel5k), joined by image id.
BLOBS = "duygulu_blobs"
#: Table 1 of the paper: Hamming loss of lazy learning (ML-kNN), DRC and the fusion.
PUBLISHED = {"natural scene": (0.227, 0.176, 0.134), "NUS-WIDE": (0.0364, 0.0321, 0.0219),
             "IAPRTC-12": (0.0545, 0.0493, 0.0291)}  # fmt: skip
#: The temperatures searched on scene (the paper's values first).
MU_GRID = {"linear": [1.0, 0.5, 2.0], "cosine": [0.18, 0.1, 0.3], "rbf": [0.18, 0.1, 0.3]}
#: How the table names each criterion of the eta/gamma search.
SELECT_NAMES = {"hamming": "held-out Hamming loss", "misranked": "held-out misranked pairs"}
COLUMNS = ("hamming_loss", "C-P", "C-R", "C-F1", "O-F1", "mAP_label", "mAP_image")

Progress = Callable[[str], None]


def _report(test: AnnotationSet, decoded: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {k: float(v) for k, v in annotation_report(test.labels, decoded, scores).items()}


def fusion_rows(
    model: FusionAnnotator, test: AnnotationSet, seconds: float
) -> list[dict[str, Any]]:
    """The fitted fusion, EG with eta and gamma chosen by the other criterion, uniform
    weights and every single modality on `test`."""
    posteriors = model.modality_scores(test)
    other = next(s for s in EG_SELECT if s != model.eg_select)
    rows = []
    for combination in ("eg", other, "uniform", *model.modalities_):
        if combination == "eg":
            variant = model
        elif combination == other:
            variant = model.reweighted("eg", eg_select=other)
        else:
            variant = model.reweighted(combination)
        scores = np.einsum("inl,n->il", posteriors, variant.alpha_)
        names = {"eg": "fusion (EG)", "uniform": "uniform alpha",
                 other: f"EG, eta/gamma by {SELECT_NAMES[other]}"}  # fmt: skip
        kinds = {"eg": "fusion", "uniform": "uniform", other: "variant"}
        row: dict[str, Any] = {
            "name": names.get(combination, combination),
            "kind": kinds.get(combination, "single"),
            "metrics": _report(test, variant.decoder_.decode(scores), scores),
        }
        if combination == other:
            row |= {"alpha": variant.alpha_.tolist(), "eg_choice": variant.eg_choice_}
        if combination == "eg":
            row |= {"seconds": seconds, "alpha": model.alpha_.tolist(),
                    "modalities": model.modalities_, "eg_search": model.eg_search_,
                    "eg_choice": model.eg_choice_,
                    "alpha_history": model.alpha_history_.tolist(),
                    "alpha_steps": model.alpha_steps_.tolist()}  # fmt: skip
        rows.append(row)
    return rows


def baseline_rows(
    train: AnnotationSet, test: AnnotationSet, *, knn_features: str, knn_metric: str,
    logistic_features: str,
) -> list[dict[str, Any]]:  # fmt: skip
    """ML-kNN and the logistic classifier, each decoded twice: by its own 0.5 rule on its
    probabilities, and by per-label Hamming thresholds fitted on its out-of-fold scores
    on `train` (3 folds), the decoding the fusion rows get."""
    rows = []
    makers = {
        f"ML-kNN ({knn_features})": lambda: create_annotator(
            "mlknn", features=knn_features, metric=knn_metric),
        f"logistic ({logistic_features})": lambda: create_annotator(
            "cnn_logistic", features=logistic_features),
    }  # fmt: skip
    for name, make in makers.items():
        start = time.perf_counter()
        scores = make().fit(train).scores(test)
        seconds = time.perf_counter() - start
        rows.append({"name": name, "kind": "baseline", "seconds": seconds,
                     "metrics": _report(test, Threshold(0.5).decode(scores), scores)})  # fmt: skip
        cuts = LabelThresholds(hamming_thresholds(train.labels, _out_of_fold(make, train)))
        rows.append({"name": f"{name}, Hamming thresholds", "kind": "baseline",
                     "metrics": _report(test, cuts.decode(scores), scores)})  # fmt: skip
    return rows


def _out_of_fold(make: Callable[[], Any], train: AnnotationSet) -> np.ndarray:
    """Scores of every `train` item by a model made by `make` and fitted on the other
    folds (3 folds, seed 0)."""
    scores = np.zeros(train.labels.shape, np.float32)
    for fitted, held_out in cv_folds(train.n_items, 3, 0):
        scores[held_out] = make().fit(train.subset(fitted)).scores(train.subset(held_out))
    return scores


def choose_temperatures(train: AnnotationSet, features: Sequence[str], progress: Progress,
                        **settings: Any) -> dict[str, float]:  # fmt: skip
    """mu of each similarity (and sigma with RBF) by 3-fold cross-validation of that
    similarity's single-modality model on `train` (mean average precision per image)."""
    chosen: dict[str, float] = {}
    for similarity in SIMILARITIES:
        grid: dict[str, list[float]] = {f"mu_{similarity}": MU_GRID[similarity]}
        if similarity == "rbf":
            grid["sigma"] = [2.0, 1.0]
        result = select_by_cv(
            lambda _s=similarity, **p: FusionAnnotator(features=features, similarities=[_s],
                                                       folds=2, **settings, **p),
            grid, train, n_folds=3, metric="mAP_image",
        )  # fmt: skip
        chosen |= result.best_params
        progress(f"{similarity}: {result.best_params} (mAP per image {result.best_score:.4f})")
    return chosen


def run_scene(train: AnnotationSet, test: AnnotationSet, *, epochs: int, progress: Progress,
              **params: Any) -> list[dict[str, Any]]:  # fmt: skip
    """The scene part: temperatures by CV (once, seed 0), then the fusion, its variants
    and the baselines for every seed of `SCENE_SEEDS`, as mean rows."""
    settings = {"epochs": epochs, "device": "cpu", **params}
    chosen = {} if any(k.startswith("mu_") for k in params) else choose_temperatures(
        train, ["arff"], progress, **settings)  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {}
    for seed in SCENE_SEEDS:
        start = time.perf_counter()
        model = FusionAnnotator(features=["arff"], **chosen, **{"seed": seed, **settings})
        model.fit(train)
        rows = fusion_rows(model, test, time.perf_counter() - start)
        rows[0]["temperatures"] = chosen
        rows += baseline_rows(train, test, knn_features="arff", knn_metric="l2",
                              logistic_features="arff")  # fmt: skip
        for row in rows:
            runs.setdefault(row["name"], []).append(row)
        progress(f"scene seed {seed}: fusion Hamming loss "
                 f"{rows[0]['metrics']['hamming_loss']:.4f}")  # fmt: skip
    return [_mean_row(rows) for rows in runs.values()]


def duygulu_blobs(corel: Path, mulan: Path, item_ids: Sequence[str]) -> np.ndarray:
    """Mulan Corel5k's 499 region blob tokens of each Corel-5k photo, joined by image id
    through Duygulu's label files (Mulan's rows follow them; the duplicate test row is
    dropped by the reader)."""
    import warnings

    from phototag.data.readers import read_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = read_dataset(f"mulan:{mulan}?name=Corel5k")
    rows: dict[str, np.ndarray] = {}
    for split, name in (("train", "training_label"), ("test", "test_label")):
        part = table.split(split)
        lines = [
            ln.split()[0]
            for ln in (corel / "duygulu" / name).read_text().splitlines()
            if ln.strip()
        ]
        rows |= dict(zip(lines, np.asarray(part.features["arff"], np.float32), strict=True))
    return np.stack([rows[Path(item).stem] for item in item_ids])


def _inputs(model: FusionAnnotator, encoder: str) -> ModelInputs:
    return model.required_inputs() | ModelInputs(features=(encoder,))


def run_corel5k(
    data: StudyData, *, epochs: int, progress: Progress, **params: Any
) -> list[dict[str, Any]]:
    """The Corel-5k part (20+ modalities)."""
    folder, mulan = data.folder("corel5k"), data.folders.get("mulan")
    sources = [*DESCRIPTORS, data.encoder, *(f"{data.encoder}@{s}" for s in STAGES)]
    model = FusionAnnotator(features=sources)
    dataset = data.read(f"corel5k:{folder}", _inputs(model, data.encoder))
    if mulan is not None:
        dataset.features[BLOBS] = duygulu_blobs(folder, mulan, dataset.item_ids)
        sources.append(BLOBS)
    train, test = dataset.split("train"), dataset.split("test")
    settings = {"epochs": epochs, "batch_size": 128, **params}
    start = time.perf_counter()
    model = FusionAnnotator(features=sources, **settings).fit(train)
    seconds = time.perf_counter() - start
    progress(f"corel5k: {len(model.modalities_)} modalities fitted in {seconds:.0f} s")
    rows = fusion_rows(model, test, seconds)
    rows += baseline_rows(train, test, knn_features=data.encoder, knn_metric="cosine",
                          logistic_features=data.encoder)  # fmt: skip
    progress(f"corel5k: fusion Hamming loss {rows[0]['metrics']['hamming_loss']:.5f}")
    return rows


def run_mirflickr(
    data: StudyData, *, epochs: int, progress: Progress, **params: Any
) -> list[dict[str, Any]]:
    """The MIRFLICKR part: five splits of the 730 rows with a photo, mean and std."""
    folder = data.folder("mirflickr")
    sources = [*DESCRIPTORS, data.encoder, *(f"{data.encoder}@{s}" for s in STAGES), "tags"]
    inputs = _inputs(FusionAnnotator(features=sources), data.encoder)
    runs: dict[str, list[dict[str, Any]]] = {}
    for seed in range(5):
        dataset = data.read(
            f"mirflickr:{folder}?missing_images=drop&test_size=0.2&seed={seed}", inputs
        )
        train, test = dataset.split("train"), dataset.split("test")
        start = time.perf_counter()
        model = FusionAnnotator(features=sources, epochs=epochs, seed=seed, **params).fit(train)
        rows = fusion_rows(model, test, time.perf_counter() - start)
        rows += baseline_rows(train, test, knn_features=data.encoder, knn_metric="cosine",
                              logistic_features=data.encoder)  # fmt: skip
        for row in rows:
            runs.setdefault(row["name"], []).append(row)
        progress(f"split {seed}: fusion Hamming loss {rows[0]['metrics']['hamming_loss']:.4f}")
    return [_mean_row(rows) for rows in runs.values()]


def _mean_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = rows[0]["metrics"]
    out = dict(rows[0])
    out["metrics"] = {k: float(np.mean([r["metrics"][k] for r in rows])) for k in keys}
    out["std"] = {k: float(np.std([r["metrics"][k] for r in rows])) for k in keys}
    out["runs"] = len(rows)
    out["hamming_runs"] = [r["metrics"]["hamming_loss"] for r in rows]
    if "seconds" in rows[0]:
        out["seconds"] = float(np.mean([r["seconds"] for r in rows]))
    if "alpha" in rows[0]:
        out["alpha"] = np.mean([r["alpha"] for r in rows], axis=0).tolist()
        out["alpha_runs"] = [r["alpha"] for r in rows]
    if "eg_search" in rows[0]:
        out["eg_search_runs"] = [r["eg_search"] for r in rows]
    if "eg_choice" in rows[0]:
        out["eg_choice_runs"] = [r["eg_choice"] for r in rows]
    return out


def run_part(
    part: str, data: StudyData, *, epochs: int, params: dict[str, Any], progress: Progress
) -> list[dict[str, Any]]:
    """The rows of one part of the study (`PARTS`); `params` are `FusionAnnotator` settings."""
    if part == "scene":
        dataset = data.read(f"mulan:{data.folder('mulan')}?name=scene", None)
        return run_scene(dataset.split("train"), dataset.split("test"), epochs=epochs,
                         progress=progress, **params)  # fmt: skip
    if part == "corel5k":
        return run_corel5k(data, epochs=epochs, progress=progress, **params)
    return run_mirflickr(data, epochs=epochs, progress=progress, **params)


# ---------------------------------------------------------------------- tables
TITLES = {
    "scene": "Mulan scene (1,196 test images, 6 labels; 3 modalities)",
    "corel5k": "Corel-5k (499 test photos, 260 words)",
    "mirflickr-photos": "MIRFLICKR-25k, the 730 rows with a photo (24 labels; five random "
    "80/20 splits, mean ± std)",
}


def markdown(parts: dict[str, dict[str, Any]]) -> str:
    """The saved parts (by part name) as tables, the targets, and the paper's Table 1."""
    out = []
    for part in PARTS:
        if part not in parts:
            continue
        saved = parts[part]
        rows = saved["rows"]
        fusion = rows[0]
        out += [f"**{TITLES[part]}.** `{saved['command']}` ({saved['seconds'] / 60:.1f} min "
                f"for the part; the fusion's fit: {fusion['seconds']:.0f} s, "
                f"{len(fusion['modalities'])} modalities)", ""]  # fmt: skip
        out += _table(rows)
        out += ["", _targets(rows), ""]
        top = np.argsort(fusion["alpha"])[::-1][:5]
        weights = ", ".join(f"{fusion['modalities'][i]} {fusion['alpha'][i]:.3f}" for i in top)
        out += [f"Largest weights alpha: {weights}.", ""]
    out += ["**The paper's Table 1 (Hamming loss; other data and features), for orientation:**",
            "", "| dataset | lazy learning (ML-kNN) | DRC | fusion |",
            "|---|---|---|---|"]  # fmt: skip
    for dataset, values in PUBLISHED.items():
        out.append(f"| {dataset} | " + " | ".join(f"{v:g}" for v in values) + " |")
    return "\n".join(out) + "\n"


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| model | Hamming loss | " + " | ".join(COLUMNS[1:]) + " | N+ |",
             "|" + "---|" * (len(COLUMNS) + 2)]  # fmt: skip
    singles = sorted((r for r in rows if r["kind"] == "single"),
                     key=lambda r: r["metrics"]["hamming_loss"])  # fmt: skip
    ordered = [r for r in rows if r["kind"] != "single"] + singles
    for row in ordered:
        metrics, std = row["metrics"], row.get("std")
        cells = [
            f"{metrics['hamming_loss']:.4f}" + (f" ± {std['hamming_loss']:.4f}" if std else "")
        ]
        cells += [
            f"{100 * metrics[k]:.1f}" + (f" ± {100 * std[k]:.1f}" if std else "")
            for k in COLUMNS[1:]
        ]
        name = f"**{row['name']}**" if row["kind"] == "fusion" else row["name"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {metrics['N+']:.0f} |")
    return lines


def _targets(rows: list[dict[str, Any]]) -> str:
    """The issue's targets for this part, checked on the rows."""
    loss = {r["name"]: r["metrics"]["hamming_loss"] for r in rows}
    fusion = rows[0]["metrics"]["hamming_loss"]
    singles = {r["name"]: loss[r["name"]] for r in rows if r["kind"] == "single"}
    best = min(singles, key=singles.__getitem__)
    verdict = "below" if fusion < singles[best] else "not below"
    uniform = "below" if fusion < loss["uniform alpha"] else "not below"
    text = (
        f"Fusion {fusion:.4f}: {verdict} the best single modality ({best}, "
        f"{singles[best]:.4f}); {uniform} uniform alpha ({loss['uniform alpha']:.4f})."
    )
    baselines = {r["name"]: loss[r["name"]] for r in rows if r["kind"] == "baseline"}
    if baselines:
        strongest = min(baselines, key=baselines.__getitem__)
        relation = "below" if fusion < baselines[strongest] else "NOT below"
        value = baselines[strongest]
        text += f" The strongest baseline, {strongest}: {value:.4f} (fusion {relation} it)."
    variants = [r for r in rows if r["kind"] == "variant"]
    for row in variants:
        value = row["metrics"]["hamming_loss"]
        relation = "below" if value < loss["uniform alpha"] else "not below"
        text += f" {row['name']}: {value:.4f}, {relation} uniform alpha."
    if "hamming_runs" not in rows[0]:
        return text
    runs = {r["name"]: np.asarray(r["hamming_runs"]) for r in rows}
    best_single = np.min([runs[name] for name in singles], axis=0)
    for row in [rows[0], *variants]:
        ours = runs[row["name"]]
        text += (
            f" Run by run, {row['name']}: below every single modality in "
            f"{int((ours < best_single).sum())} of {len(ours)}, below uniform alpha in "
            f"{int((ours < runs['uniform alpha']).sum())} of {len(ours)} ("
            + ", ".join(f"{v:.4f}" for v in ours)
            + ")."
        )
    return text + (
        " Uniform alpha run by run: "
        + ", ".join(f"{v:.4f}" for v in runs["uniform alpha"])
        + "; the best single modality run by run: "
        + ", ".join(f"{v:.4f}" for v in best_single)
        + "."
    )


def plot_alpha(saved: dict[str, Any], path: str | Path, top: int = 8) -> Path:
    """A PNG of alpha over the EG steps of a saved part's fusion row: the `top`
    modalities by final weight named, the others grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fusion = saved["rows"][0]
    history, steps = np.asarray(fusion["alpha_history"]), np.asarray(fusion["alpha_steps"])
    order = np.argsort(history[-1])[::-1]
    figure, axes = plt.subplots(figsize=(7, 4))
    for rank, j in enumerate(order):
        if rank < top:
            axes.plot(steps, history[:, j], label=fusion["modalities"][j], linewidth=1.5)
        else:
            axes.plot(steps, history[:, j], color="0.8", linewidth=0.8)
    axes.set_xlabel("EG step (one batch of ranked pairs)")
    axes.set_ylabel("alpha_j")
    title = f"Modality weights over time: {TITLES[saved['part']].split(' (')[0]}"
    if fusion.get("runs", 1) > 1:
        title += f"\n(the first of {fusion['runs']} runs)"
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
