"""Options and helpers shared by several commands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EPILOG = "Datasets are given as NAME:PATH[?option=value&...]; `phototag datasets` lists the names."


def add_store_options(parser: argparse.ArgumentParser, features: bool = False) -> None:
    from phototag.cache import default_store_root
    from phototag.features import ENCODER_BATCH_SIZE, LARGE_PHOTO_BATCH_SIZE

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
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"images per forward pass (default: {ENCODER_BATCH_SIZE}; when annotating, "
        f"{LARGE_PHOTO_BATCH_SIZE} for photos over 1 MiB)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding workers: threads when annotating (default: one per core for photos "
        "over 1 MiB, else one), processes when computing a dataset's features (default: one "
        "per core for photos over 1 MiB, else cores - 1, or 0 on 2 cores: in the main process)",
    )


def dataset_batch_size(args: argparse.Namespace) -> int:
    """``--batch-size`` when computing a dataset's features (annotating picks its own
    default: `phototag.features.stream.default_batch_size`)."""
    from phototag.features import ENCODER_BATCH_SIZE

    return ENCODER_BATCH_SIZE if args.batch_size is None else args.batch_size


def attach_inputs(dataset: Any, inputs: Any, args: argparse.Namespace) -> Any:
    """`dataset` with the model inputs `inputs` (`ModelInputs`) filled with the store
    options of `args`; photos left out are reported on stderr."""
    from phototag.app.batch import report_skip
    from phototag.library.inputs import with_inputs

    dataset, report = with_inputs(
        dataset, inputs, store_root=args.store, runtime=args.runtime, dtype=args.dtype,
        batch_size=dataset_batch_size(args), workers=args.workers, progress=True,
    )  # fmt: skip
    for line in report.summaries:
        print(line, file=sys.stderr)
    for path, reason in report.failures:
        report_skip(reason or path)
    return dataset


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
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


def print_rows(rows: Sequence[tuple[str, Any]]) -> None:
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
