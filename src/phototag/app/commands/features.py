"""`phototag features`: compute and store encoder or descriptor features, resumably."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from phototag.app.options import EPILOG, add_store_options, dataset_batch_size


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
    parser.add_argument(
        "--maps",
        metavar="STAGES",
        help="also store the encoder's spatial feature maps (float16) of these stages, in the "
        "same pass: stage names or positions, comma-separated (e.g. 3,6 or stage3,stage6), "
        "'scales' (the five multi-scale maps) or 'all' (docs/features.md)",
    )
    parser.add_argument(
        "--views",
        default="plain",
        metavar="VIEWS",
        help="with --maps: whose maps to store, 'plain' (the photo), 'flip' (its mirror "
        "image) or 'plain,flip' (default: plain)",
    )
    add_store_options(parser)
    from phototag.app.batch import add_batch_options

    add_batch_options(parser)
    parser.set_defaults(run=_run_features)


def _run_features(args: argparse.Namespace) -> int:
    from phototag.app.batch import missing_error, open_journal

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
        summary = _extract_resumable(paths, journal, args)
    for path in missing:
        summary.add(path, missing_error(path))
    summary.print(journal)
    return summary.exit_status


def _extract_resumable(paths: Sequence[str], journal: Any, args: argparse.Namespace) -> Any:
    """Store ``args.encoder`` features (and ``--maps``) of `paths` not journaled yet, chunk
    by chunk, and return the run's `BatchSummary`.

    Journaled files are neither hashed nor decoded again. Prints the extraction report
    (computed, already stored, failed).
    """
    from phototag.app.batch import BatchSummary, progress_bar, report_skip
    from phototag.errors import InvalidInputError
    from phototag.features.encoders import ImageEncoder
    from phototag.features.extract import (
        ExtractionReport,
        create_source,
        extract_features,
        open_store,
    )
    from phototag.features.maps import open_map_stores, parse_stages, parse_views
    from phototag.features.store import default_store_root

    if args.maps is None and args.views != "plain":
        raise InvalidInputError("--views", "--maps STAGES with it", f"--views {args.views}")
    views = parse_views(args.views)
    encoder = create_source(args.encoder, runtime=args.runtime)
    if args.maps is not None and not isinstance(encoder, ImageEncoder):
        raise InvalidInputError("--maps", "an image encoder's stages", repr(args.encoder))
    root = default_store_root() if args.store is None else args.store
    summary = BatchSummary("features", done_word="stored")
    total = ExtractionReport()
    done = journal.completed(paths)
    for path, entry in done.items():
        report_skip(entry.error)
        summary.add(path, entry.error, replayed=True)
    todo = [p for p in paths if p not in done]
    bar = progress_bar(len(paths), len(done), "features")
    with ExitStack() as stores:
        store = stores.enter_context(open_store(root, encoder, args.dtype))
        maps = []
        if isinstance(encoder, ImageEncoder) and args.maps is not None:
            maps = open_map_stores(root, encoder, parse_stages(args.maps, encoder), views)
            for target in maps:
                stores.enter_context(target)
        for start in range(0, len(todo), args.chunk_size):
            chunk = todo[start : start + args.chunk_size]
            digests, report = extract_features(
                chunk, encoder, store, maps=maps, batch_size=dataset_batch_size(args),
                workers=args.workers, progress=False,
            )  # fmt: skip
            errors = dict(report.failures)
            for path, digest in zip(chunk, digests, strict=True):
                error = None if digest is not None else errors.get(path, "no features")
                journal.record(path, None if error else {"digest": digest}, error)
                report_skip(error)
                summary.add(path, error)
            total += report
            bar.update(len(chunk))
    bar.close()
    print(f"{encoder.name}: {total.summary()}", file=sys.stderr)
    return summary


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
