"""The 60-photo library of issue 14, re-tested on real photos.

A user trained ``phototag train --dataset folder:DIR`` on 60 tagged photos and got the
same keywords on every photo. This study replays that with MIRFLICKR photos and their
official labels as the user's own keywords:

1. ``--n-library`` photos (with at least one label) become the user's tagged library:
   copied into a temporary folder, each with an XMP sidecar ``photo.jpg.xmp`` holding its
   labels in ``dc:subject``, as a photo manager writes them; a 2-photo library (the
   first two of them) is the second case.
2. ``--n-eval`` photos of the everyday model's held-out MIRFLICKR photos (none of them
   seen by the shipped default model, none in the library) are the new photos.
3. ``phototag train --dataset folder:LIB --model M --out OUT`` runs as a user runs it
   (default options), for each ``--model``; its exit status and everything it prints
   are recorded.
4. ``phototag annotate EVAL --model OUT --format json`` (the model's own decoder) is
   judged against the photos' labels, and so is ``--model default``, whose keywords are
   judged through the ``photos`` column of ``everyday.tsv`` (``Nature|Sky`` is right when
   the photo has ``sky``; keywords without a MIRFLICKR concept are not judged).

The 24 plain MIRFLICKR concepts are used (not the strict ``*_r1`` ones), without ``male``
and ``female``: phototag does not write gender words.

Usage (from the repository root; a few minutes on 2 cores with the features cached)::

    .venv/bin/python bench/study_small_library.py [--n-library 60] [--n-eval 200] \\
        [--seed 0] [--model linear --model tagprop ...] \\
        [--out bench/results/small_library.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from phototag.data.readers import read_dataset  # noqa: E402
from phototag.metadata import read_keywords  # noqa: E402

DEFAULT_MODELS = ("linear", "tagprop", "mlknn", "ensemble")
#: Besides the default options, each model of the library case is also trained with
#: these (the docs' advice for precision).
VARIANTS = (["--min-precision", "0.8"],)
#: phototag does not write gender words, so these labels are not the user's keywords.
LEFT_OUT = ("male", "female")
EVERYDAY_TABLE = ROOT / "src" / "phototag" / "data" / "everyday.tsv"

#: A sidecar as a photo manager writes it: the user's keywords in dc:subject, nothing
#: of phototag's.
SIDECAR = """<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
<dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>
</rdf:Description></rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>
"""


def phototag(*args: str) -> list[str]:
    """The command line that runs phototag in this interpreter."""
    return [sys.executable, "-m", "phototag", *args]


def read_photos(data: Path) -> tuple[list[str], dict[str, list[str]], dict[str, Path]]:
    """The MIRFLICKR concepts used, each photo's labels among them, each photo's file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reader's notes about the tag matrix
        photos = read_dataset(f"mirflickr:{data / 'mirflickr25k'}?items=photos")
    concepts = sorted(w for w in photos.vocabulary if not w.endswith("_r1") and w not in LEFT_OUT)
    wanted = set(concepts)
    labels = {
        name: sorted(set(words) & wanted)
        for name, words in zip(photos.item_ids, photos.label_sets(), strict=True)
    }
    paths = {
        name: Path(path) for name, path in zip(photos.item_ids, photos.image_paths, strict=True)
    }
    return concepts, labels, paths


def default_model_unseen(data: Path) -> list[str]:
    """The MIRFLICKR photos the shipped default model did not train on (its held-out
    split), as ``imN.jpg``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test = read_dataset(f"everyday:{data}").split("test")
    prefix = "mirflickr/"
    return [i.removeprefix(prefix) for i in test.item_ids if i.startswith(prefix)]


def choose_photos(
    labels: dict[str, list[str]], unseen: list[str], n_library: int, n_eval: int, seed: int
) -> tuple[list[str], list[str]]:
    """Seeded library photos (with at least one label, not among `unseen`) and
    evaluation photos (among `unseen`), disjoint."""
    rng = np.random.default_rng(seed)
    unseen_set = set(unseen)
    pool = sorted((n for n, words in labels.items() if words and n not in unseen_set), key=_number)
    if n_library > len(pool) or n_eval > len(unseen):
        raise SystemExit(
            f"asked for {n_library} library and {n_eval} evaluation photos; "
            f"there are {len(pool)} and {len(unseen)}"
        )
    library = [pool[i] for i in rng.permutation(len(pool))[:n_library]]
    evaluation = sorted((unseen[i] for i in rng.permutation(len(unseen))[:n_eval]), key=_number)
    return library, evaluation


def _number(name: str) -> int:
    return int(name.removeprefix("im").removesuffix(".jpg"))


def make_library(
    folder: Path, names: list[str], labels: dict[str, list[str]], paths: dict[str, Path]
) -> None:
    """Copy the photos into `folder`, each with a sidecar holding its labels as the
    user's keywords, and check that phototag reads them back as the user's."""
    folder.mkdir(parents=True)
    for name in names:
        shutil.copyfile(paths[name], folder / name)
        items = "".join(f"<rdf:li>{escape(word)}</rdf:li>" for word in labels[name])
        (folder / f"{name}.xmp").write_text(SIDECAR.format(items=items), encoding="utf-8")
        read = read_keywords(folder / name)
        if sorted(read.user) != labels[name] or read.automatic:
            raise SystemExit(f"{name}: wrote {labels[name]}, phototag reads {read}")
    dataset = read_dataset(f"folder:{folder}")
    seen = {i: sorted(s) for i, s in zip(dataset.item_ids, dataset.label_sets(), strict=True)}
    if seen != {name: labels[name] for name in names}:
        raise SystemExit(f"folder:{folder} does not read the keywords written")


def copy_photos(folder: Path, names: list[str], paths: dict[str, Path]) -> None:
    """The evaluation photos, without keywords."""
    folder.mkdir(parents=True)
    for name in names:
        shutil.copyfile(paths[name], folder / name)


def run(args: list[str]) -> dict[str, Any]:
    """Run a phototag command; its exit status, output (stderr without the progress
    bars) and time."""
    start = time.perf_counter()
    done = subprocess.run(phototag(*args), capture_output=True, text=True, cwd=ROOT)
    stderr = "".join(
        line
        for line in done.stderr.splitlines(keepends=True)
        if line.strip() and not line.rstrip().endswith("/s]")
    )
    return {
        "exit_status": done.returncode,
        "stdout": done.stdout,
        "stderr": stderr,
        "seconds": round(time.perf_counter() - start, 1),
    }


def annotate(
    folder: Path, model: str, journal: Path
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Each photo's written keywords with `model`'s own decoder, and the run."""
    result = run(
        [
            "annotate",
            str(folder),
            "--model",
            model,
            "--format",
            "json",
            "--journal",
            str(journal),
            "--restart",
        ]
    )
    if result["exit_status"] != 0:
        raise SystemExit(f"annotate --model {model} failed:\n{result['stderr']}")
    written = {}
    for line in result["stdout"].splitlines():
        row = json.loads(line)
        written[Path(row["path"]).name] = [tag["label"] for tag in row["tags"]]
    del result["stdout"]
    return written, result


def everyday_concepts(concepts: list[str]) -> dict[str, str]:
    """Everyday keyword -> the MIRFLICKR concept its head is trained on (`photos`
    column of everyday.tsv); a strict ``*_r1`` label counts as its plain concept."""
    mapping = {}
    for line in EVERYDAY_TABLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or line.startswith("keyword\t"):
            continue
        keyword, _, photos = (line.split("\t") + ["", ""])[:3]
        for source in photos.split():
            dataset, _, words = source.partition(":")
            if dataset == "mirflickr":
                for word in words.split(","):
                    if word.removesuffix("_r1") in concepts:
                        mapping[keyword] = word.removesuffix("_r1")
    return mapping


def judge(
    written: dict[str, list[str]],
    labels: dict[str, list[str]],
    concept_of: dict[str, str],
    known: list[str],
) -> dict[str, Any]:
    """Written keywords against the photos' labels.

    `concept_of` maps a written keyword to the concept that judges it (keywords not in
    it are counted but not judged); `known` are the concepts recall is computed over
    (the library model's keywords) and a second precision is restricted to.
    """
    photos = sorted(written, key=_number)
    known_set = set(known)
    judged = right = judged_known = right_known = 0
    per_keyword = {c: {"written": 0, "right": 0, "photos_with_it": 0} for c in known}
    for name in photos:
        truth = set(labels[name])
        said = {concept_of[k] for k in written[name] if k in concept_of}
        for concept in known_set & said:
            per_keyword[concept]["written"] += 1
            per_keyword[concept]["right"] += concept in truth
        for concept in known_set & truth:
            per_keyword[concept]["photos_with_it"] += 1
        judged += len(said)
        right += len(said & truth)
        judged_known += len(said & known_set)
        right_known += len(said & truth & known_set)
    relevant = sum(len(set(labels[n]) & known_set) for n in photos)
    f1 = 2 * right_known / (judged_known + relevant) if judged_known + relevant else None
    sets = Counter(tuple(sorted(written[n])) for n in photos)
    common, count = sets.most_common(1)[0]
    n = len(photos)
    return {
        "photos": n,
        "keywords_per_photo": round(sum(len(written[p]) for p in photos) / n, 2),
        "judged_keywords_per_photo": round(judged / n, 2),
        "photos_with_none": sum(not written[p] for p in photos),
        "precision": _ratio(right, judged),
        "precision_on_library_keywords": _ratio(right_known, judged_known),
        "recall_on_library_keywords": _ratio(right_known, relevant),
        "f1_on_library_keywords": None if f1 is None else round(f1, 3),
        "distinct_keyword_sets": len(sets),
        "most_common_keyword_set": {"keywords": list(common), "photos": count},
        "per_keyword": per_keyword,
    }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


def most_common_baseline(
    library: list[str], evaluation: list[str], labels: dict[str, list[str]], known: list[str]
) -> dict[str, Any]:
    """Every photo given the library's most common keywords (as many as a library photo
    has on average), the comparison `train` makes on its validation photos."""
    counts = Counter(w for n in library for w in labels[n] if w in known)
    per_photo = max(1, round(sum(counts.values()) / len(library)))
    top = [w for w, _ in counts.most_common(per_photo)]
    result = judge({n: top for n in evaluation}, labels, {w: w for w in known}, known)
    return {"keywords": top, **result}


def train_case(
    name: str,
    library: Path,
    runs: list[tuple[str, list[str]]],
    work: Path,
    evaluation: Path,
    labels: dict[str, list[str]],
) -> dict[str, Any]:
    """`phototag train` on `library` for each (model, options), and the trained model's
    written keywords on the evaluation photos when it was saved."""
    results = {}
    for model, options in runs:
        key = " ".join([model, *options])
        out = work / f"{name}-{model}{''.join(options)}"
        command = [
            "train",
            "--dataset",
            f"folder:{library}",
            "--model",
            model,
            "--out",
            str(out),
            *options,
        ]
        print(f"[{name}] phototag {' '.join(command)}", file=sys.stderr)
        result = run(command)
        result["command"] = "phototag " + " ".join(command)
        for field in ("command", "stdout", "stderr"):
            result[field] = result[field].replace(str(work), "TMP")
        report = out / "training_report.json"
        if report.exists():
            result["training_report"] = json.loads(report.read_text(encoding="utf-8"))
        if result["exit_status"] == 0 and (out / "config.json").exists():
            written, run_info = annotate(evaluation, str(out), out.with_suffix(".journal"))
            known = [row["label"] for row in result.get("training_report", {}).get("labels", [])]
            result["heldout"] = judge(written, labels, {k: k for k in known}, known)
            result["heldout"]["annotate_seconds"] = run_info["seconds"]
        results[key] = result
    return results


def summary(results: dict[str, Any]) -> str:
    """A markdown summary of the held-out numbers and what train said."""
    lines = [
        "| library | model | train exit | precision | recall | F1 | "
        "keywords/photo | photos with none | distinct sets |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def row(case: str, model: str, exit_status: Any, held: dict[str, Any] | None) -> None:
        if held is None:
            lines.append(f"| {case} | {model} | {exit_status} | - | - | - | - | - | - |")
            return
        lines.append(
            f"| {case} | {model} | {exit_status} | {held['precision']} | "
            f"{held['recall_on_library_keywords']} | {held['f1_on_library_keywords']} | "
            f"{held['keywords_per_photo']} | "
            f"{held['photos_with_none']} | {held['distinct_keyword_sets']} |"
        )

    for case in ("library", "two_photos"):
        for model, result in results[case]["train"].items():
            row(
                f"{results[case]['photos']} photos",
                model,
                result["exit_status"],
                result.get("heldout"),
            )
    row("(shipped)", "default", "-", results["default_model"])
    row("60 photos", "most common keywords", "-", results["most_common_baseline"])
    lines.append("")
    for case in ("library", "two_photos"):
        for model, result in results[case]["train"].items():
            lines.append(
                f"### {results[case]['photos']} photos, {model}: exit {result['exit_status']}"
            )
            lines.append("```")
            lines.append((result["stdout"] + result["stderr"]).strip())
            lines.append("```")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--n-library", type=int, default=60)
    parser.add_argument("--n-small", type=int, default=2, help="photos of the small case")
    parser.add_argument("--n-eval", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", action="append", help=f"default: {', '.join(DEFAULT_MODELS)}")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "small_library.json"
    )
    args = parser.parse_args()
    models = args.model or list(DEFAULT_MODELS)

    concepts, labels, paths = read_photos(args.data)
    unseen = default_model_unseen(args.data)
    library, evaluation = choose_photos(labels, unseen, args.n_library, args.n_eval, args.seed)
    small = library[: args.n_small]
    results: dict[str, Any] = {
        "concepts": concepts,
        "evaluation_photos": evaluation,
        "seed": args.seed,
    }
    with tempfile.TemporaryDirectory(prefix="phototag-small-library-") as temp:
        work = Path(temp)
        make_library(work / "library", library, labels, paths)
        make_library(work / "two", small, labels, paths)
        copy_photos(work / "heldout", evaluation, paths)
        plain: list[tuple[str, list[str]]] = [(m, []) for m in models]
        variants = [(m, list(v)) for v in VARIANTS for m in models]
        for case, folder, names, runs in (
            ("library", work / "library", library, plain + variants),
            ("two_photos", work / "two", small, plain),
        ):
            results[case] = {
                "photos": len(names),
                "keywords": {n: labels[n] for n in names},
                "keyword_counts": dict(Counter(w for n in names for w in labels[n]).most_common()),
                "train": train_case(case, folder, runs, work, work / "heldout", labels),
            }
        known = sorted(
            {
                row["label"]
                for result in results["library"]["train"].values()
                for row in result.get("training_report", {}).get("labels", [])
            }
        )
        results["library_keywords"] = known
        results["evaluation_labels_per_photo"] = round(
            sum(len(set(labels[n]) & set(known)) for n in evaluation) / len(evaluation), 2
        )
        written, run_info = annotate(work / "heldout", "default", work / "default.journal")
        mapping = everyday_concepts(concepts)
        results["default_model"] = judge(written, labels, mapping, known)
        results["default_model"]["annotate_seconds"] = run_info["seconds"]
        results["default_model"]["judged_keywords"] = mapping
        results["most_common_baseline"] = most_common_baseline(library, evaluation, labels, known)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(summary(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
