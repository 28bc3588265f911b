"""`phototag evaluate`: the metric suite on predictions or a saved model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from phototag.app.options import EPILOG, add_store_options, attach_inputs, print_rows


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
    source.add_argument(
        "--model", metavar="NAME|DIR", help="a saved phototag model, or a shipped one by name"
    )
    parser.add_argument("--split", default="test", help="dataset split to evaluate (default: test)")
    parser.add_argument(
        "--protocol",
        default="top5",
        help="how scores become label sets: topK (default top5), threshold:T, quantity, "
        "or 'model' (the saved model's own decoder); ignored for label-set predictions",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_store_options(parser)
    parser.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from phototag.data.readers import read_dataset
    from phototag.evaluation.evaluate import evaluate_model, evaluate_predictions
    from phototag.evaluation.predictions import read_predictions

    target = read_dataset(args.dataset).split(args.split)
    if args.model is not None:
        from phototag.pretrained import load_model

        model = load_model(args.model)
        target = attach_inputs(target, model.required_inputs(), args)
        result = evaluate_model(model, target, args.protocol)
    else:
        predictions = read_predictions(args.predictions, target)
        result = evaluate_predictions(target, predictions, args.protocol)
    if args.json:
        print(json.dumps(result.metrics))
        return 0
    print(f"{target.name}: {target.n_items} items, {target.n_labels} labels, {result.protocol}")
    print_rows([(key, _format_metric(key, value)) for key, value in result.metrics.items()])
    return 0


def _format_metric(key: str, value: float | int) -> str:
    return str(value) if key == "N+" else f"{100 * value:6.2f} %"


def register(commands: argparse._SubParsersAction) -> None:
    _add_evaluate(commands)
