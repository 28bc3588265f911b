"""`phototag benchmark`: reproduce a paper's table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from phototag.app.options import add_store_options, attach_inputs
from phototag.fileio import atomic_write


def _add_benchmark(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "benchmark",
        help="reproduce a paper's benchmark table",
        description="Train every model on a benchmark's training split (hyperparameters "
        "chosen on the training split only), evaluate each once on the test split, and print "
        "the table next to the published numbers. docs/benchmarks.md records the results.",
    )
    parser.add_argument("benchmark", choices=("corel5k",), help="which table to reproduce")
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        metavar="DIR",
        help="the dataset folder (e.g. ../shared/data/corel5k)",
    )
    parser.add_argument(
        "--model",
        action="append",
        metavar="NAME[=JSON]",
        dest="models",
        help="model to run (default: all); with =JSON that configuration is used as given, "
        "otherwise the cross-validated grid of the benchmark",
    )
    parser.add_argument("--encoder", default="efficientnet_lite2", help="image features")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the rows as JSON")
    add_store_options(parser)
    parser.set_defaults(run=_run_benchmark)


def _run_benchmark(args: argparse.Namespace) -> int:
    import inspect

    from phototag.data.readers import read_dataset
    from phototag.evaluation.benchmark import (
        COREL5K_MODELS,
        ModelSpec,
        markdown_table,
        rows_as_json,
        run_benchmark,
    )
    from phototag.models import annotator_class, create_annotator

    models: dict[str, ModelSpec] = {}
    for spec in args.models or COREL5K_MODELS:
        name, _, config = spec.partition("=")
        model = ModelSpec(json.loads(config)) if config else COREL5K_MODELS.get(name, ModelSpec())
        parameters = inspect.signature(annotator_class(model.model or name).__init__).parameters
        models[name] = (
            model.with_image_features(args.encoder) if "features" in parameters else model
        )
    descriptors = dict.fromkeys(d for m in models.values() for d in m.descriptors)
    features = [args.encoder, *descriptors]
    dataset = read_dataset(f"corel5k:{args.data}")
    from phototag.data.inputs import ModelInputs

    inputs = ModelInputs(features=tuple(features))
    train = attach_inputs(dataset.split("train"), inputs, args)
    test = attach_inputs(dataset.split("test"), inputs, args)
    rows = run_benchmark(
        train,
        test,
        models,
        factory=create_annotator,
        progress=lambda line: print(line, file=sys.stderr),
    )
    print(markdown_table(rows))
    if args.json:
        atomic_write(args.json, json.dumps(rows_as_json(rows), indent=2) + "\n")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    _add_benchmark(commands)
