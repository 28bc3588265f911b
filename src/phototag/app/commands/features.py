"""`phototag features`: compute and store encoder or descriptor features, resumably."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phototag.app.options import EPILOG, add_store_options


def _add_features(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "features",
        help="compute and store image features of photos or a dataset",
        description="Compute each photo's features (an encoder's pooled vector or a classic "
        "descriptor) once and keep them in a feature store (keyed by file content and "
        "encoder or descriptor), so training, evaluation and annotation "
        "reuse them. Resumable: a killed run continues where it stopped. Unreadable photos "
        "are reported and skipped; the exit status is 1 if any photo was skipped (after the "
        "whole batch), else 0.",
        epilog=EPILOG,
    )
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="photos or folders")
    parser.add_argument("--dataset", metavar="NAME:PATH", help="a dataset's photos instead")
    parser.add_argument(
        "--encoder",
        default="efficientnet_lite2",
        help="image encoder or classic descriptor, with builder options as NAME?key=value&... "
        "(e.g. 'resnet101?weights=r101.pth'; default: efficientnet_lite2; `phototag "
        "encoders` lists both)",
    )
    add_store_options(parser)
    from phototag.app.batch import add_batch_options

    add_batch_options(parser)
    parser.set_defaults(run=_run_features)


def _run_features(args: argparse.Namespace) -> int:
    from phototag.app.batch import extract_resumable, missing_error, open_journal

    if (args.dataset is None) == (not args.paths):
        from phototag.errors import InvalidInputError

        raise InvalidInputError("features", "photos/folders or --dataset NAME:PATH (one of them)",
                                "both" if args.paths else "neither")  # fmt: skip
    inputs = [args.dataset] if args.dataset is not None else [str(p) for p in args.paths]
    paths, missing = _photo_paths(args)
    if not paths:
        print("phototag: no photos found", file=sys.stderr)
        return 1
    with open_journal("features", args, inputs) as journal:
        summary = extract_resumable(paths, journal, args)
    for path in missing:
        summary.add(path, missing_error(path))
    summary.print(journal)
    return summary.exit_status


def _photo_paths(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The image files a `features` run works on (a dataset's, or those under PATHs) and
    the PATHs that do not exist."""
    from phototag.app.batch import find_photos
    from phototag.errors import InvalidInputError

    if args.dataset is None:
        return find_photos(args.paths)
    from phototag.data.readers import read_dataset

    dataset = read_dataset(args.dataset)
    if dataset.image_paths is None:
        raise InvalidInputError(
            "--dataset",
            "a dataset with images",
            f"{dataset.name} (labels only)",
            "Give the reader the image folder: NAME:PATH?images=DIR.",
        )
    return [str(p) for p in dataset.image_paths], []


def register(commands: argparse._SubParsersAction) -> None:
    _add_features(commands)
