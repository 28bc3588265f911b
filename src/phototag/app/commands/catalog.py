"""`phototag datasets`, `phototag models`, `phototag encoders`: what is available."""

from __future__ import annotations

import argparse
import json
from typing import Any

from phototag.app.options import EPILOG, print_rows
from phototag.filenames import printable


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
    print_rows(rows)
    for note in summary["notes"]:
        print(f"note: {printable(note)}")
    return 0


def _add_models(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("models", help="list the registered annotation models")
    parser.set_defaults(run=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from phototag.models import annotator_class, available_annotators
    from phototag.models.registry import unavailable_families

    for name in available_annotators():
        doc = (annotator_class(name).__doc__ or "").strip().splitlines()
        print(f"{name:<12}  {doc[0] if doc else ''}")
    for error in unavailable_families().values():
        print(f"note: {error}")
    return 0


def _add_encoders(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "encoders", help="list the image encoders and classic descriptors (feature types)"
    )
    parser.set_defaults(run=_run_encoders)


def _run_encoders(args: argparse.Namespace) -> int:
    from phototag.extras import missing_extra
    from phototag.features.descriptors import available_descriptors, create_descriptor
    from phototag.features.encoders import available_encoders, default_encoder

    default = default_encoder()
    print("image encoders:")
    for name in available_encoders():
        print(f"  {name}{'  (default)' if name == default else ''}")
    print("classic descriptors (docs/descriptors.md):")
    for name in available_descriptors():
        try:
            descriptor = create_descriptor(name)
        except ImportError as error:  # a package of an extra is missing
            missing = missing_extra(error, name)
            if missing is None:
                raise
            print(f"  {name}  (needs pip install 'phototag[{missing.extra}]')")
            continue
        note = "  (learns a codebook: Python only)" if descriptor.requires_fit else ""
        print(f"  {name}  {descriptor.dim}-d{note}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    _add_datasets(commands)
    _add_models(commands)
    _add_encoders(commands)
