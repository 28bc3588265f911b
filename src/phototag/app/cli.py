"""The ``phototag`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from phototag.errors import PhototagError

EPILOG = "Datasets are given as NAME:PATH[?option=value&...]; `phototag datasets` lists the names."


def _add_datasets(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "datasets",
        help="list dataset readers, or describe a dataset",
        description="Without arguments: list the dataset readers and their options. "
        "`phototag datasets info NAME:PATH` reads a dataset and prints its statistics.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="action")
    info = sub.add_parser("info", help="items per split, labels, label cardinality, tags")
    info.add_argument("dataset", metavar="NAME:PATH", help="dataset to read")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=_run_datasets)


def _run_datasets(args: argparse.Namespace) -> int:
    from phototag.data.readers import available_readers, read_dataset

    if args.action != "info":
        readers = available_readers()
        width = max(len(name) for name in readers)
        for name, info in readers.items():
            options = f"  [options: {', '.join(info.options)}]" if info.options else ""
            print(f"{name:<{width}}  {info.summary}{options}")
        return 0
    summary = read_dataset(args.dataset).summary()
    if args.json:
        print(json.dumps(summary))
        return 0
    rows: list[tuple[str, Any]] = [
        ("dataset", summary["name"]),
        ("items", summary["items"]),
        *((f"  {split}", size) for split, size in summary["splits"].items()),
        ("labels", summary["labels"]),
        ("label cardinality", f"{summary['label_cardinality']:.3f}"),
        ("items without labels", summary["items_without_labels"]),
        ("labels without items", summary["labels_without_items"]),
        ("images", "yes" if summary["images"] else "no (labels only)"),
        ("tag vocabulary", summary["tag_vocabulary"] or "none"),
    ]
    if "tags_per_item" in summary:
        rows.append(("tags per item", f"{summary['tags_per_item']:.3f}"))
    rows += [(f"features[{k}]", f"{d}-d") for k, d in summary["features"].items()]
    _print_rows(rows)
    for note in summary["notes"]:
        print(f"note: {note}")
    return 0


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="score predictions (or a saved model) against a dataset split",
        description="Compare predictions with a dataset's ground truth and print the "
        "standard annotation metrics (docs/metrics.md defines each one).",
        epilog=EPILOG + " Prediction formats: .npy (scores or 0/1 label sets, split order x "
        "vocabulary order), .npz/.json (scores or label_sets, optional item_ids, labels, "
        "quantities), .jsonl (phototag annotate --format json output); docs/evaluate.md.",
    )
    parser.add_argument("--dataset", required=True, metavar="NAME:PATH")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", type=Path, metavar="FILE", help="predictions file")
    source.add_argument("--model", type=Path, metavar="DIR", help="a saved phototag model")
    parser.add_argument("--split", default="test", help="dataset split to evaluate (default: test)")
    parser.add_argument(
        "--protocol",
        default="top5",
        help="how scores become label sets: topK (default top5), threshold:T, quantity, "
        "or 'model' (the saved model's own decoder); ignored for label-set predictions",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    _add_store_options(parser)
    parser.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from phototag.data.readers import read_dataset
    from phototag.evaluation import evaluate_model, evaluate_predictions
    from phototag.predictions import read_predictions

    target = read_dataset(args.dataset).split(args.split)
    if args.model is not None:
        from phototag.models import Annotator

        model = Annotator.load(args.model)
        target = _attach_features(target, model.required_features(), args)
        result = evaluate_model(model, target, args.protocol)
    else:
        predictions = read_predictions(args.predictions, target)
        result = evaluate_predictions(target, predictions, args.protocol)
    if args.json:
        print(json.dumps(result.metrics))
        return 0
    print(f"{target.name}: {target.n_items} items, {target.n_labels} labels, {result.protocol}")
    _print_rows([(key, _format_metric(key, value)) for key, value in result.metrics.items()])
    return 0


def _format_metric(key: str, value: float | int) -> str:
    return str(value) if key == "N+" else f"{100 * value:6.2f} %"


def _add_features(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "features",
        help="compute and store image features of a dataset",
        description="Compute each photo's encoder features once and keep them in a feature "
        "store (keyed by file content and encoder), so training, evaluation and annotation "
        "reuse them. Resumable: a killed run continues where it stopped.",
        epilog=EPILOG,
    )
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="photos or folders")
    parser.add_argument("--dataset", metavar="NAME:PATH", help="a dataset's photos instead")
    parser.add_argument(
        "--encoder",
        default="efficientnet_lite2",
        help="image encoder (default: efficientnet_lite2; `phototag encoders` lists them)",
    )
    _add_store_options(parser)
    from phototag.app.batch import add_batch_options

    add_batch_options(parser)
    parser.set_defaults(run=_run_features)


def _add_store_options(parser: argparse.ArgumentParser, features: bool = False) -> None:
    from phototag.features.store import default_store_root

    if features:
        parser.add_argument(
            "--features",
            action="append",
            metavar="ENCODER",
            help="encoder features to attach (default: the ones the model reads); repeatable",
        )
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"feature store directory (default: {default_store_root()})",
    )
    parser.add_argument(
        "--runtime",
        choices=("onnx", "torch"),
        default="onnx",
        help="where the encoder runs (default: onnx, falls back to torch)",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "float16"),
        default="float32",
        help="stored precision (float16 halves the disk and memory use)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding processes (default: cores - 1, or one per core for photos over 1 MiB; "
        "0 decodes in-process)",
    )


def _attach_features(dataset: Any, encoders: Sequence[str], args: argparse.Namespace) -> Any:
    from phototag.features.attach import with_encoder_features

    for name in encoders:
        if name in dataset.features:
            continue
        dataset, report = with_encoder_features(
            dataset,
            name,
            store_root=args.store,
            runtime=args.runtime,
            dtype=args.dtype,
            batch_size=args.batch_size,
            workers=args.workers,
        )
        print(f"{name}: {report.summary()}", file=sys.stderr)
        for path, reason in report.failures:
            print(f"skipped: {reason or path}", file=sys.stderr)
    return dataset


def _run_features(args: argparse.Namespace) -> int:
    from phototag.app.batch import extract_resumable, open_journal

    if (args.dataset is None) == (not args.paths):
        from phototag.errors import InvalidInputError

        raise InvalidInputError("features", "photos/folders or --dataset NAME:PATH (one of them)",
                                "both" if args.paths else "neither")  # fmt: skip
    inputs = [args.dataset] if args.dataset is not None else [str(p) for p in args.paths]
    with open_journal("features", args, inputs) as journal:
        summary = extract_resumable(_photo_paths(args), journal, args)
    summary.print(journal)
    return 0 if summary.done else 1


def _photo_paths(args: argparse.Namespace) -> list[str]:
    """The image files a `features` run works on: a dataset's, or those under PATHs."""
    from phototag.errors import InvalidInputError
    from phototag.imaging import iter_image_files

    if args.dataset is None:
        return [str(p) for p in iter_image_files(args.paths)]
    from phototag.data.readers import read_dataset

    dataset = read_dataset(args.dataset)
    if dataset.image_paths is None:
        raise InvalidInputError("--dataset", "a dataset with images", f"{dataset.name} (labels "
                                "only)", "Give the reader the image folder: NAME:PATH?images=DIR.")
    return [str(p) for p in dataset.image_paths]


def _add_annotate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "annotate", help="suggest keywords for photos (files and folders)",
        description="Suggest keywords for photos with a trained model. Folders are searched "
        "recursively (hidden files skipped). Unreadable photos are reported on stderr and "
        "skipped; the exit status is 1 if any photo failed.",
        epilog="--format json prints one JSON object per photo and line: "
        '{"path": ..., "tags": [{"label": ..., "score": ...}, ...]}, best first.',
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="photos or folders")
    parser.add_argument(
        "--model", default="default", metavar="NAME|DIR",
        help="a shipped model name or a directory from `phototag train` (default: default)",
    )
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--top-k", type=int, metavar="K", help="the K best keywords per photo")
    choice.add_argument("--threshold", type=float, metavar="T", help="keywords scoring >= T")
    choice.add_argument(
        "--auto", action="store_true",
        help="the model's own decoder, e.g. per-label thresholds (the default)",
    )
    parser.add_argument(
        "--vocabulary", type=Path, metavar="FILE",
        help="suggest only these words (one per line), no training needed: ImageNet classes "
        "mapped through WordNet, combined with the model for words it knows",
    )
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    _add_store_options(parser)
    from phototag.app.batch import add_batch_options

    add_batch_options(parser, report=True)
    parser.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="where decoding, encoding and scoring run: this process (default) or Ray Data "
        "(pip install 'phototag[ray]'; same results, in the same order; docs/ray.md)",
    )
    parser.add_argument(
        "--address", metavar="ADDR",
        help="the Ray cluster for --engine ray, run from one of its nodes (auto or HOST:6379; "
        "implies --engine ray; default: start a local Ray instance)",
    )
    _add_write_options(parser)
    parser.set_defaults(run=_run_annotate)


def _run_annotate(args: argparse.Namespace) -> int:
    import csv

    from phototag.annotation import UserVocabulary, annotate_files
    from phototag.app.batch import BatchSummary, open_journal, record_annotation, resume_annotations
    from phototag.decoding import Threshold, TopK
    from phototag.imaging import iter_image_files
    from phototag.models.open_vocabulary import read_word_list
    from phototag.pretrained import load_model

    model = load_model(args.model)
    if args.vocabulary is not None:
        model = UserVocabulary(read_word_list(args.vocabulary), trained=model)
    decoder = None
    if args.top_k is not None:
        decoder = TopK(args.top_k)
    elif args.threshold is not None:
        decoder = Threshold(args.threshold)
    missing = [p for p in args.paths if not p.exists()]
    for path in missing:
        print(f"skipped: {path}: no such file or folder", file=sys.stderr)
    paths = list(iter_image_files([p for p in args.paths if p.exists()]))
    if not paths:
        print("phototag: no photos found", file=sys.stderr)
        return 1
    writer = csv.writer(sys.stdout) if args.format == "csv" else None
    keyword_writer = _keyword_writer(args, model)
    if writer:
        writer.writerow(["path", "label", "score"])
    summary = BatchSummary("annotate")
    for path in missing:
        summary.add(str(path), f"{path}: no such file or folder")

    def annotate(todo: list[str]) -> Any:
        if args.engine == "ray" or args.address is not None:
            return _annotate_on_ray(todo, model, decoder, args)
        return annotate_files(
            todo, model, decoder, store_root=args.store, runtime=args.runtime,
            batch_size=args.batch_size, workers=args.workers, chunk_size=args.chunk_size,
            progress=False,
        )  # fmt: skip

    # a run that writes sidecars must see them changed (e.g. by `untag`) to write again
    sidecars = _sidecar_paths if args.write is not None else None
    with open_journal("annotate", args, [str(p) for p in args.paths], sidecars) as journal, \
            _maybe_report(args.report, "phototag annotate") as report:  # fmt: skip
        for path in missing if report is not None else ():
            report.add(path, error=f"{path}: no such file or folder")
        for result, replayed in resume_annotations(paths, journal, annotate):
            if result.error is not None:
                print(f"skipped: {result.error}", file=sys.stderr)
            elif writer:
                rows = [(result.path, label, f"{score:.4f}") for label, score in result.tags]
                writer.writerows(rows)
            elif args.format == "json":
                tags = [{"label": label, "score": round(score, 6)} for label, score in result.tags]
                print(json.dumps({"path": result.path, "tags": tags}, ensure_ascii=False))
            else:
                keywords = ", ".join(f"{label} ({score:.2f})" for label, score in result.tags)
                print(f"{result.path}: {keywords or '-'}")
            sys.stdout.flush()
            done = True  # journaled once output and keyword write are done; never twice
            if keyword_writer is not None and result.error is None and not replayed:
                done = keyword_writer.write(result.path, result.tags) is not None
            if done and not replayed:
                record_annotation(journal, result)
            summary.add(result.path, result.error, replayed=replayed, empty=not result.tags)
            if report is not None:
                report.add(result.path, result.tags, result.error)
        if report is not None:
            report.summary = summary.lines()
    summary.print(journal)
    if summary.n_skipped:
        print(f"{summary.n_skipped} of {summary.files} photos could not be annotated",
              file=sys.stderr)
    if keyword_writer is not None:
        print(keyword_writer.summary(), file=sys.stderr)
        if keyword_writer.failed:
            return 1
    return 1 if summary.n_skipped else 0


def _annotate_on_ray(paths: list[str], model: Any, decoder: Any, args: argparse.Namespace) -> Any:
    """`phototag.engines.ray.annotate_files_ray` with the annotate options."""
    from phototag.engines.ray import ModelSource, annotate_files_ray
    from phototag.models.open_vocabulary import read_word_list

    words = read_word_list(args.vocabulary) if args.vocabulary is not None else None
    return annotate_files_ray(
        paths, ModelSource.of(args.model, words), decoder, encoders=model.required_features(),
        address=args.address, runtime=args.runtime, batch_size=args.batch_size, progress=False,
    )  # fmt: skip


def _sidecar_paths(photo: str) -> Any:
    from phototag.metadata.reading import sidecar_paths

    return sidecar_paths(photo)


def _maybe_report(path: Path | None, title: str) -> Any:
    """An `HtmlReport` writing to `path`, or a no-op context giving ``None``."""
    import contextlib

    from phototag.report import HtmlReport

    return HtmlReport(path, title=title) if path is not None else contextlib.nullcontext()


def _add_write_options(parser: argparse.ArgumentParser) -> None:
    """annotate --write xmp [--embed] [--dry-run]: keywords into metadata (photo-library.md)."""
    parser.add_argument(
        "--write", choices=("xmp",),
        help="write the keywords into XMP metadata: a sidecar photo.jpg.xmp (or the existing "
        "photo.xmp); your own keywords are kept, `phototag untag` removes phototag's",
    )
    parser.add_argument(
        "--embed", action="store_true",
        help="with --write: into the photo itself (JPEG, TIFF, PNG, WebP), through a verified "
        "temporary copy that replaces it atomically",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="with --write: show what would change, write nothing"
    )


def _keyword_writer(args: argparse.Namespace, model: Any) -> Any:
    """A `KeywordWriter` for ``--write xmp``, or None."""
    from phototag.errors import InvalidInputError
    from phototag.metadata import KeywordWriter, Provenance

    if args.write is None:
        if args.embed or args.dry_run:
            raise InvalidInputError("--embed/--dry-run", "--write xmp with them", "no --write")
        return None
    trained = getattr(model, "trained", model)
    name = getattr(trained, "name", "") if trained is not None else ""
    source = Path(args.model).name if Path(args.model).expanduser().is_dir() else args.model
    model_id = f"{name}:{source}" if name else str(source)
    if args.vocabulary is not None:
        model_id = f"vocabulary:{args.vocabulary.name}+{model_id}"
    return KeywordWriter(Provenance(model_id), embed=args.embed, dry_run=args.dry_run)


def _add_untag(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "untag", help="remove the keywords phototag wrote (and nothing else)",
        description="Remove every keyword phototag wrote into photos or their XMP sidecars, "
        "with its provenance; keywords people wrote stay. Folders are searched recursively.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="photos or folders")
    parser.add_argument("--dry-run", action="store_true", help="show what would be removed")
    parser.set_defaults(run=_run_untag)


def _run_untag(args: argparse.Namespace) -> int:
    from phototag.imaging import iter_image_files
    from phototag.metadata import untag_files

    missing = [p for p in args.paths if not p.exists()]
    for path in missing:
        print(f"skipped: {path}: no such file or folder", file=sys.stderr)
    paths = [str(p) for p in iter_image_files([p for p in args.paths if p.exists()])]
    changed, failed = untag_files(paths, dry_run=args.dry_run)
    verb = "would untag" if args.dry_run else "untagged"
    print(f"{verb} {changed} files of {len(paths)} photos; {failed} failed", file=sys.stderr)
    return 1 if failed or missing else 0


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train a model on a dataset split and save it",
        description="Fit a registered model (`phototag models` lists them) on a dataset "
        "split and save it as config.json + weights.safetensors.",
        epilog=EPILOG,
    )
    parser.add_argument("--dataset", required=True, metavar="NAME:PATH")
    parser.add_argument("--model", required=True, metavar="NAME", help="registered model name")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    parser.add_argument("--split", default="train", help="split to train on (default: train)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model constructor argument (VALUE parsed as JSON when it can be); repeatable",
    )
    _add_store_options(parser, features=True)
    parser.add_argument(
        "--feedback", type=Path, metavar="DB",
        help="also learn from accept/reject decisions made in `phototag serve` (its "
        "feedback.sqlite; docs/serve.md)",
    )
    parser.add_argument(
        "--min-label-count", type=int, metavar="N",
        help="drop labels used on fewer than N photos (default: 3 for folder datasets; "
        "giving it, or --validation-fraction, trains as for a photo library)",
    )
    parser.add_argument(
        "--validation-fraction", type=float, metavar="F",
        help="hold out this fraction of the tagged photos (stratified by label) to calibrate "
        "per-label thresholds and report precision/recall (default: 0.2 for folder datasets)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation split")
    parser.set_defaults(run=_run_train)


def _parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    from phototag.errors import InvalidInputError

    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError("--param", "KEY=VALUE", repr(pair))
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _run_train(args: argparse.Namespace) -> int:
    import time

    from phototag.data.readers import read_dataset
    from phototag.models import create_annotator

    model = create_annotator(args.model, **_parse_params(args.param))
    dataset = read_dataset(args.dataset)
    dataset = _with_feedback(dataset, args)
    encoders = args.features or model.required_features()
    if _learns_vocabulary(args):
        return _train_on_library(args, model, dataset, encoders)
    train = _attach_features(dataset.split(args.split), encoders, args)
    valid = None
    if "valid" in dataset.splits:
        valid = _attach_features(dataset.split("valid"), encoders, args)
    start = time.perf_counter()
    model.fit(train, valid)
    seconds = time.perf_counter() - start
    model.save(args.out)
    print(f"trained {args.model} on {train.n_items} items of {train.name} in {seconds:.1f} s")
    print(f"saved to {args.out}")
    return 0


def _learns_vocabulary(args: argparse.Namespace) -> bool:
    """Train as for a photo library (docs/photo-library.md): folder datasets, or asked."""
    return (args.min_label_count is not None or args.validation_fraction is not None
            or args.dataset.partition(":")[0] == "folder")  # fmt: skip


def _train_on_library(
    args: argparse.Namespace, model: Any, dataset: Any, encoders: Sequence[str]
) -> int:
    """Drop rare labels, hold out a validation split, calibrate per-label thresholds,
    save the model with them as its decoder, and print the report."""
    import time

    import numpy as np

    from phototag.library_training import fit_on_library

    if args.split in dataset.splits:
        tagged = dataset.split(args.split)
    else:  # e.g. a label file without splits: every photo that has labels
        tagged = dataset.subset(np.flatnonzero(dataset.label_counts() > 0))
    tagged = _attach_features(tagged, encoders, args)
    start = time.perf_counter()
    report = fit_on_library(
        model, tagged,
        min_label_count=3 if args.min_label_count is None else args.min_label_count,
        validation_fraction=0.2 if args.validation_fraction is None else args.validation_fraction,
        seed=args.seed,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    model.save(args.out)
    (Path(args.out) / "training_report.json").write_text(report.to_json() + "\n")
    print(report.format())
    print(f"trained {args.model} on {report.train_photos} photos of {tagged.name} "
          f"in {seconds:.1f} s")  # fmt: skip
    print(f"saved to {args.out} (report: training_report.json)")
    return 0


def _with_feedback(dataset: Any, args: argparse.Namespace) -> Any:
    """`dataset` with the decisions of ``--feedback DB`` applied (unchanged without it)."""
    if getattr(args, "feedback", None) is None:
        return dataset
    from phototag.feedback import merge_feedback

    dataset, report = merge_feedback(dataset, args.feedback, split=args.split)
    print(f"feedback: {report.summary()}", file=sys.stderr)
    for reason in report.skipped:
        print(f"feedback: skipped {reason}", file=sys.stderr)
    return dataset


def _add_serve(commands: argparse._SubParsersAction) -> None:
    import os

    parser = commands.add_parser(
        "serve", help="web page + REST API: suggested keywords to accept or reject",
        description="Serve a web page and a REST API (OpenAPI docs at /docs) that suggest "
        "keywords for uploaded photos or photos of --folder; accept/reject decisions are "
        "stored for `phototag train --feedback`. Binds to localhost unless --host is given; "
        "any other host requires --token. docs/serve.md.",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument("--model", default="default", metavar="NAME|DIR",
                        help="a shipped model name or a directory from `phototag train`")
    parser.add_argument("--folder", type=Path, metavar="DIR",
                        help="a photo folder to browse (nothing outside it is ever readable)")
    parser.add_argument("--token", default=os.environ.get("PHOTOTAG_TOKEN"),
                        help="secret every API call must send as 'Authorization: Bearer TOKEN' "
                        "(default: $PHOTOTAG_TOKEN); required for a non-localhost --host")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="where uploads and decisions (feedback.sqlite) are kept "
                        "(default: $PHOTOTAG_DATA or ~/.local/share/phototag)")
    parser.add_argument("--max-upload-mb", type=float, default=25.0,
                        help="largest accepted upload in MiB (default: 25)")
    parser.add_argument("--store", type=Path, metavar="DIR", help="feature store directory")
    parser.add_argument("--runtime", choices=("onnx", "torch"), default="onnx",
                        help="where the encoder runs (default: onnx, falls back to torch)")
    parser.set_defaults(run=_run_serve)  # fmt: skip


def _run_serve(args: argparse.Namespace) -> int:
    from phototag.app.server import ServerConfig, serve

    config = ServerConfig(
        model=args.model, host=args.host, port=args.port, folder=args.folder,
        token=args.token or None, store=args.store, runtime=args.runtime,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
    )  # fmt: skip
    if args.data is not None:
        config.data_dir = args.data
    serve(config)
    return 0


def _add_benchmark(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "benchmark", help="reproduce a paper's benchmark table",
        description="Train every model on a benchmark's training split (hyperparameters "
        "chosen on the training split only), evaluate each once on the test split, and print "
        "the table next to the published numbers. docs/benchmarks.md records the results.",
    )
    parser.add_argument("benchmark", choices=("corel5k",), help="which table to reproduce")
    parser.add_argument("--data", required=True, type=Path, metavar="DIR",
                        help="the dataset folder (e.g. ../shared/data/corel5k)")
    parser.add_argument(
        "--model", action="append", metavar="NAME[=JSON]", dest="models",
        help="model to run (default: all); with =JSON that configuration is used as given, "
        "otherwise the cross-validated grid of the benchmark",
    )
    parser.add_argument("--encoder", default="efficientnet_lite2", help="image features")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the rows as JSON")
    _add_store_options(parser)
    parser.set_defaults(run=_run_benchmark)


def _run_benchmark(args: argparse.Namespace) -> int:
    import dataclasses
    import inspect

    from phototag.benchmark import (
        COREL5K_MODELS,
        ModelSpec,
        markdown_table,
        rows_as_json,
        run_benchmark,
    )
    from phototag.data.readers import read_dataset
    from phototag.models import annotator_class

    models: dict[str, ModelSpec] = {}
    for spec in args.models or COREL5K_MODELS:
        name, _, config = spec.partition("=")
        model = ModelSpec(json.loads(config)) if config else COREL5K_MODELS.get(name, ModelSpec())
        if "features" in inspect.signature(annotator_class(name).__init__).parameters:
            model = dataclasses.replace(model, config={"features": args.encoder, **model.config})
        models[name] = model
    dataset = read_dataset(f"corel5k:{args.data}")
    train = _attach_features(dataset.split("train"), [args.encoder], args)
    test = _attach_features(dataset.split("test"), [args.encoder], args)
    rows = run_benchmark(train, test, models, progress=lambda line: print(line, file=sys.stderr))
    print(markdown_table(rows, args.encoder))
    if args.json:
        args.json.write_text(json.dumps(rows_as_json(rows), indent=2) + "\n")
    return 0


def _add_models(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("models", help="list the registered annotation models")
    parser.set_defaults(run=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from phototag.models import annotator_class, available_annotators

    for name in available_annotators():
        doc = (annotator_class(name).__doc__ or "").strip().splitlines()
        print(f"{name:<12}  {doc[0] if doc else ''}")
    return 0


def _add_encoders(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("encoders", help="list the image encoders")
    parser.set_defaults(run=_run_encoders)


def _run_encoders(args: argparse.Namespace) -> int:
    from phototag.features.encoders import available_encoders, default_encoder

    default = default_encoder()
    for name in available_encoders():
        print(f"{name}{'  (default)' if name == default else ''}")
    return 0


def _print_rows(rows: Sequence[tuple[str, Any]]) -> None:
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def build_parser() -> argparse.ArgumentParser:
    from phototag import __version__

    parser = argparse.ArgumentParser(
        prog="phototag",
        description="Automatic multi-label image annotation: tag photo libraries, "
        "train and evaluate annotation models.",
    )
    parser.add_argument("--version", action="version", version=f"phototag {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_datasets(commands)
    _add_annotate(commands)
    _add_untag(commands)
    _add_features(commands)
    _add_train(commands)
    _add_evaluate(commands)
    _add_serve(commands)
    _add_benchmark(commands)
    _add_models(commands)
    _add_encoders(commands)
    return parser


def _show_warning(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    print(f"phototag: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    import warnings

    from phototag.errors import DataDefectWarning

    # handled dataset defects are reported as notes by the commands themselves
    warnings.simplefilter("ignore", DataDefectWarning)
    warnings.showwarning = _show_warning
    try:
        return args.run(args)
    except PhototagError as exc:
        print(f"phototag: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("phototag: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
