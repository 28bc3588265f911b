"""How far the keywords of the default (everyday) model can be trusted.

Usage::

    .venv/bin/python bench/bench_everyday.py                 # writes the JSON, plot, docs
    .venv/bin/python bench/bench_everyday.py --model DIR --out /tmp/everyday.json --docs ''

Three measurements:

1. **Held-out photos** of the everyday dataset (``everyday:../shared/data``'s test split:
   200 MIRFLICKR photos, 499 Corel-5k photos; the model never saw them): per photo, the
   keywords the model writes (its own thresholds, at most 10), their precision and
   recall against the photo's labels. Only keywords the photo's dataset labels can be
   judged (MIRFLICKR has no "cat" label); the others are counted apart.
2. **Precision against keywords per photo** on the MIRFLICKR photos, for one global
   threshold instead of the model's per-keyword ones (a plot: what writing more
   keywords would cost).
3. **Everyday photos that are not in ../shared/data** (the README's four examples and
   public-domain photos that ship with scikit-image and scikit-learn): the keywords
   written, judged by a person looking at each photo (``bench/everyday_judgements.json``;
   a keyword nobody judged yet is listed as such).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_OUT = ROOT / "bench" / "results" / "everyday.json"
DEFAULT_PLOT = ROOT / "docs" / "img" / "everyday_precision.png"
JUDGEMENTS = ROOT / "bench" / "everyday_judgements.json"
MARKERS = ("<!-- everyday:begin -->", "<!-- everyday:end -->")


def everyday_photos() -> list[Path]:
    """The README's examples and the photographs (not textures or micrographs) that ship
    inside scikit-image and scikit-learn."""
    import skimage.data
    import sklearn.datasets

    skimage_dir = Path(skimage.data.__file__).parent
    sklearn_dir = Path(sklearn.datasets.__file__).parent / "images"
    return [
        *sorted((ROOT / "examples").glob("*.jpg")),
        sklearn_dir / "china.jpg",
        sklearn_dir / "flower.jpg",
        skimage_dir / "motorcycle_left.png",
        skimage_dir / "camera.png",
    ]


def held_out(model: Any, data: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Measurement 1, and the MIRFLICKR scores and labels for measurement 2."""
    from phototag.data.everyday import read_table
    from phototag.data.readers import read_dataset
    from phototag.library.inputs import with_inputs
    from phototag.models.everyday.annotators import _known_rows

    test = read_dataset(f"everyday:{data}").split("test")
    test, _ = with_inputs(test, model.required_inputs(), progress=False)
    prediction = model.predict(test)
    written = model.decoder_.decode_prediction(prediction)
    labels = test.labels.toarray().astype(bool)
    known, _ = _known_rows(test, read_table())
    origin = np.asarray(test.metadata["dataset"]).astype(str)
    results: dict[str, Any] = {}
    for name in ("mirflickr", "corel5k"):
        rows = origin == name
        results[name] = photo_measures(written[rows], labels[rows], known[rows])
        results[name]["per_keyword"] = keyword_measures(
            written[rows], labels[rows], known[rows], list(model.vocabulary_)
        )
    rows = origin == "mirflickr"
    curve = {"scores": prediction.scores[rows], "labels": labels[rows], "known": known[rows]}
    return results, curve


def photo_measures(written: np.ndarray, labels: np.ndarray, known: np.ndarray) -> dict[str, Any]:
    judged = written & known
    right = judged & labels
    n_judged = judged.sum(axis=1)
    positives = (labels & known).sum(axis=1)
    return {
        "photos": int(len(written)),
        "keywords_per_photo": round(float(written.sum(axis=1).mean()), 3),
        "judged_per_photo": round(float(n_judged.mean()), 3),
        "photos_without_keywords": int((written.sum(axis=1) == 0).sum()),
        "precision": round(float(right.sum() / max(judged.sum(), 1)), 4),
        "precision_per_photo": round(
            float((right.sum(axis=1)[n_judged > 0] / n_judged[n_judged > 0]).mean()), 4
        ),
        "recall_per_photo": round(
            float((right.sum(axis=1)[positives > 0] / positives[positives > 0]).mean()), 4
        ),
    }


def keyword_measures(
    written: np.ndarray, labels: np.ndarray, known: np.ndarray, vocabulary: list[str]
) -> dict[str, dict[str, int]]:
    judged = written & known
    return {
        path: {
            "written": int(judged[:, j].sum()),
            "right": int((judged[:, j] & labels[:, j]).sum()),
            "positives": int((labels[:, j] & known[:, j]).sum()),
        }
        for j, path in enumerate(vocabulary)
        if known[:, j].any() and (judged[:, j].any() or (labels[:, j] & known[:, j]).any())
    }


def tradeoff(curve: dict[str, np.ndarray]) -> list[dict[str, float]]:
    """Measurement 2: one global threshold t on the judged keywords, t from 0.3 to 0.95."""
    points = []
    for t in np.round(np.arange(0.3, 0.951, 0.05), 2):
        written = (curve["scores"] >= t) & curve["known"]
        right = (written & curve["labels"]).sum()
        points.append({
            "threshold": float(t),
            "keywords_per_photo": round(float(written.sum(axis=1).mean()), 3),
            "precision": round(float(right / max(written.sum(), 1)), 4),
        })  # fmt: skip
    return points


def calibration(curve: dict[str, np.ndarray]) -> list[dict[str, float]]:
    """Per probability bin, the share of judged keywords that are right: calibrated
    probabilities make the two match."""
    scores, right = curve["scores"][curve["known"]], curve["labels"][curve["known"]]
    edges = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    bins = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (scores >= low) & ((scores < high) if high < 1 else (scores <= high))
        if inside.any():
            bins.append({
                "bin": f"{low:.1f}-{high:.1f}",
                "keywords": int(inside.sum()),
                "mean_probability": round(float(scores[inside].mean()), 3),
                "right": round(float(right[inside].mean()), 3),
            })  # fmt: skip
    return bins


def plot(points: list[dict[str, float]], model_point: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    x = [p["keywords_per_photo"] for p in points]
    y = [100 * p["precision"] for p in points]
    ax.plot(x, y, "o-", color="tab:blue", label="one global threshold (0.30 ... 0.95)")
    for p in points[::2]:
        ax.annotate(f"{p['threshold']:.2f}", (p["keywords_per_photo"], 100 * p["precision"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=7)  # fmt: skip
    ax.plot([model_point["judged_per_photo"]], [100 * model_point["precision"]], "*",
            color="tab:red", markersize=14, label="the model's own thresholds")  # fmt: skip
    ax.axhline(80, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("judged keywords per photo")
    ax.set_ylabel("keywords right (%)")
    ax.set_title("Default model on 200 held-out MIRFLICKR photos")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def on_everyday_photos(model: Any, judgements: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    """Measurement 3."""
    from phototag.data.sensitive import is_sensitive
    from phototag.library.annotation import annotate_files

    photos = everyday_photos()
    rows, right, wrong, unjudged = [], 0, 0, []
    for result in annotate_files([str(p) for p in photos], model, progress=False):
        name = Path(result.path).name
        verdict = judgements.get(name, {})
        keywords = [label for label, _ in result.tags]
        for label in keywords:
            if label in verdict.get("right", []):
                right += 1
            elif label in verdict.get("wrong", []):
                wrong += 1
            else:
                unjudged.append(f"{name}: {label}")
        rows.append({
            "photo": name,
            "keywords": [[label, round(score, 2)] for label, score in result.tags],
            "hurtful": [label for label in keywords if is_sensitive(label)],
        })  # fmt: skip
    n_keywords = right + wrong + len(unjudged)
    return {
        "photos": rows,
        "keywords_per_photo": round(n_keywords / len(rows), 3),
        "photos_without_keywords": sum(not row["keywords"] for row in rows),
        "right": right,
        "wrong": wrong,
        "unjudged": unjudged,
        "precision": round(right / max(right + wrong, 1), 4),
    }


def markdown(result: dict[str, Any]) -> str:
    heldout, photos = result["held_out"], result["everyday_photos"]
    lines = [
        f"Model `{result['model']}`; command: `{result['command']}`.",
        "",
        "| photos | photos | keywords / photo | judged / photo | without keywords "
        "| precision | precision per photo | recall per photo |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, title in (("mirflickr", "MIRFLICKR, held out"), ("corel5k", "Corel-5k test")):
        m = heldout[name]
        lines.append(
            f"| {title} | {m['photos']} | {m['keywords_per_photo']:.2f} | "
            f"{m['judged_per_photo']:.2f} | {m['photos_without_keywords']} | "
            f"{100 * m['precision']:.1f}% | {100 * m['precision_per_photo']:.1f}% | "
            f"{100 * m['recall_per_photo']:.1f}% |"
        )
    lines.append(
        f"| everyday photos (not in the data, judged by eye) | {len(photos['photos'])} | "
        f"{photos['keywords_per_photo']:.2f} | {photos['right'] + photos['wrong']} judged | "
        f"{photos['photos_without_keywords']} | {100 * photos['precision']:.1f}% | | |"
    )
    lines += ["", "| photo | keywords written |", "|---|---|"]
    for row in photos["photos"]:
        words = ", ".join(f"{label} ({score:.2f})" for label, score in row["keywords"]) or "none"
        words = words.replace("|", "\\|")  # a path level, not a table column
        lines.append(f"| {row['photo']} | {words} |")
    bins = result["calibration"]
    lines += [
        "",
        "Calibration on the held-out MIRFLICKR photos (every judged keyword, written or not):",
        "",
        "| probability | " + " | ".join(b["bin"] for b in bins) + " |",
        "|---|" + "---|" * len(bins),
        "| keywords | " + " | ".join(str(b["keywords"]) for b in bins) + " |",
        "| mean probability | " + " | ".join(f"{b['mean_probability']:.2f}" for b in bins) + " |",
        "| share right | " + " | ".join(f"{b['right']:.2f}" for b in bins) + " |",
    ]
    lines += [
        "",
        "![precision against keywords per photo](img/everyday_precision.png)",
        "",
        "| one global threshold | "
        + " | ".join(f"{p['threshold']:.2f}" for p in result["tradeoff"])
        + " |",  # noqa: E501
        "|---|" + "---|" * len(result["tradeoff"]),
        "| judged keywords / photo | "
        + " | ".join(f"{p['keywords_per_photo']:.2f}" for p in result["tradeoff"])
        + " |",  # noqa: E501
        "| right | "
        + " | ".join(f"{100 * p['precision']:.0f}%" for p in result["tradeoff"])
        + " |",  # noqa: E501
    ]
    return "\n".join(lines)


def rules_table(model: Any) -> str:
    """The keyword-by-keyword table of docs/models/everyday.md: each keyword's ImageNet
    classes, photo labels and threshold in `model`."""
    from phototag.data.everyday import read_table
    from phototag.features.encoders.imagenet import imagenet_class
    from phototag.models.everyday.rules import rule_classes
    from phototag.models.open_vocabulary import wordnet_database

    db = wordnet_database()
    thresholds = {path: threshold for path, _, threshold in model.describe()}
    lines = [
        "| keyword | ImageNet classes (count: examples) | trained on photo labels | threshold |",
        "|---|---|---|---|",
    ]
    for word in read_table():
        names = [imagenet_class(i).name for i in rule_classes(word, db)] if word.imagenet else []
        more = ", ..." if len(names) > 8 else ""
        classes = f"{len(names)}: {', '.join(names[:8])}{more}" if names else ""
        photos = "; ".join(f"{name}: {', '.join(labels)}" for name, labels in word.photos)
        t = thresholds[word.path]
        shown = "never" if t == np.inf else f"{t:.2f}"
        lines.append(f"| {word.path.replace('|', ' › ')} | {classes} | {photos} | {shown} |")
    return "\n".join(lines) + "\n"


def write_rules_table(path: Path, table: str) -> None:
    heading = "## The rules, keyword by keyword"
    doc = path.read_text(encoding="utf-8")
    head, _, rest = doc.partition(heading)
    intro = rest[: rest.index("| keyword |")]
    path.write_text(head + heading + intro + table, encoding="utf-8")


def write_docs(path: Path, text: str) -> None:
    doc = path.read_text(encoding="utf-8")
    begin, end = MARKERS
    if begin in doc:
        doc = re.sub(f"{re.escape(begin)}.*?{re.escape(end)}", f"{begin}\n{text}\n{end}", doc,
                     flags=re.S)  # fmt: skip
    else:
        doc += f"\n{begin}\n{text}\n{end}\n"
    path.write_text(doc, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="default")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    parser.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"),
                        help="markdown file to write the tables into ('' for none)")  # fmt: skip
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    from phototag.pretrained import load_model

    model = load_model(args.model)
    heldout, curve = held_out(model, args.data)
    judgements = json.loads(JUDGEMENTS.read_text(encoding="utf-8"))
    result = {
        "model": args.model,
        "command": "python bench/bench_everyday.py",
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "held_out": heldout,
        "tradeoff": tradeoff(curve),
        "calibration": calibration(curve),
        "everyday_photos": on_everyday_photos(model, judgements),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    plot(result["tradeoff"], heldout["mirflickr"], args.plot)
    text = markdown(result)
    print(text)
    if args.docs:
        write_docs(Path(args.docs), text)
        write_rules_table(ROOT / "docs" / "models" / "everyday.md", rules_table(model))
    if result["everyday_photos"]["unjudged"]:
        print(
            "not judged yet:", *result["everyday_photos"]["unjudged"], sep="\n  ", file=sys.stderr
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
