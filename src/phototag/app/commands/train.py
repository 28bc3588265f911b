"""`phototag train`: fit a model on a dataset or on a photo library, and save it."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from phototag.app.options import EPILOG, add_store_options, attach_inputs, parse_params
from phototag.fileio import atomic_write
from phototag.training import is_main_process


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
    add_store_options(parser, features=True)
    parser.add_argument(
        "--feedback",
        type=Path,
        metavar="DB",
        help="also learn from accept/reject decisions made in `phototag serve` (its "
        "feedback.sqlite; docs/serve.md)",
    )
    parser.add_argument(
        "--min-label-count",
        type=int,
        metavar="N",
        help="drop labels used on fewer than N photos (default: 3 for folder datasets; "
        "giving it, or --validation-fraction, trains as for a photo library)",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        metavar="F",
        help="hold out this fraction of the tagged photos (stratified by label) to calibrate "
        "per-label thresholds and report precision/recall (default: 0.2 for folder datasets)",
    )
    parser.add_argument(
        "--min-precision",
        type=float,
        metavar="P",
        help="calibrate each keyword's threshold for precision: suggest it only where it "
        "was right at least this often on the validation photos (e.g. 0.8; default: the "
        "threshold with the best F1)",
    )
    parser.add_argument(
        "--max-keywords",
        type=int,
        metavar="N",
        help="suggest at most N keywords per photo, the best-scoring that pass (default: all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation split")
    parser.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    import time

    from phototag.data.readers import read_dataset
    from phototag.models import create_annotator

    model = create_annotator(args.model, **parse_params(args.param))
    dataset = read_dataset(args.dataset)
    dataset = _with_feedback(dataset, args)
    if _learns_vocabulary(args):
        return _train_on_library(args, model, dataset)
    train = attach_inputs(dataset.split(args.split), _inputs(model, args, training=True), args)
    valid = None
    if "valid" in dataset.splits:
        valid = attach_inputs(dataset.split("valid"), _inputs(model, args), args)
    start = time.perf_counter()
    model.fit(train, valid)
    seconds = time.perf_counter() - start
    if not is_main_process():  # under torchrun, the first process reports and saves
        return 0
    model.save(args.out)
    print(f"trained {args.model} on {train.n_items} items of {train.name} in {seconds:.1f} s")
    print(f"saved to {args.out}")
    return 0


def _inputs(model: Any, args: argparse.Namespace, training: bool = False) -> Any:
    """What `model` reads, with the pooled features of ``--features`` when given."""
    inputs = model.required_inputs(training)
    return replace(inputs, features=tuple(args.features)) if args.features else inputs


def _learns_vocabulary(args: argparse.Namespace) -> bool:
    """Train as for a photo library (docs/photo-library.md): folder datasets, or asked."""
    return (args.min_label_count is not None or args.validation_fraction is not None
            or args.min_precision is not None or args.max_keywords is not None
            or args.dataset.partition(":")[0] == "folder")  # fmt: skip


def _train_on_library(args: argparse.Namespace, model: Any, dataset: Any) -> int:
    """Drop rare labels, hold out a validation split, calibrate per-label thresholds,
    save the model with them as its decoder, and print the report."""
    import time

    import numpy as np

    from phototag.library.learning import fit_on_library

    if args.split in dataset.splits:
        tagged = dataset.split(args.split)
    else:  # e.g. a label file without splits: every photo that has labels
        tagged = dataset.subset(np.flatnonzero(dataset.label_counts() > 0))
    tagged = attach_inputs(tagged, _inputs(model, args, training=True), args)
    start = time.perf_counter()
    report = fit_on_library(
        model, tagged,
        min_label_count=3 if args.min_label_count is None else args.min_label_count,
        validation_fraction=0.2 if args.validation_fraction is None else args.validation_fraction,
        seed=args.seed, min_precision=args.min_precision, max_labels=args.max_keywords,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if not is_main_process():
        return 0
    model.save(args.out)
    atomic_write(Path(args.out) / "training_report.json", report.to_json() + "\n")
    print(report.format())
    for warning in report.warnings:
        print(f"phototag: warning: {warning}", file=sys.stderr)
    print(f"trained {args.model} on {report.train_photos} photos of {tagged.name} "
          f"in {seconds:.1f} s")  # fmt: skip
    print(f"saved to {args.out} (report: training_report.json)")
    return 0


def _with_feedback(dataset: Any, args: argparse.Namespace) -> Any:
    """`dataset` with the decisions of ``--feedback DB`` applied (unchanged without it)."""
    if getattr(args, "feedback", None) is None:
        return dataset
    from phototag.library.feedback import merge_feedback

    dataset, report = merge_feedback(dataset, args.feedback, split=args.split)
    print(f"feedback: {report.summary()}", file=sys.stderr)
    for reason in report.skipped:
        print(f"feedback: skipped {reason}", file=sys.stderr)
    return dataset


def register(commands: argparse._SubParsersAction) -> None:
    _add_train(commands)
