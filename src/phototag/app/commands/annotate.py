"""`phototag annotate` (keywords for photos, optionally written to XMP) and `phototag untag`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phototag.app.options import add_store_options

if TYPE_CHECKING:
    from concurrent.futures import Future


def _add_annotate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "annotate",
        help="suggest keywords for photos (files and folders)",
        description="Suggest keywords for photos with a trained model. Folders are searched "
        "recursively (hidden files skipped). Unreadable photos are reported on stderr and "
        "skipped; the exit status is 1 if any photo was skipped or failed (after the whole "
        "batch), else 0.",
        epilog="--format json prints one JSON object per photo and line: "
        '{"path": ..., "tags": [{"label": ..., "score": ...}, ...]}, best first. A file name '
        "that is not UTF-8 is printed with each such byte as \\udcNN in JSON, \\xNN in "
        "table and csv output (docs/batches.md).",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="photos or folders")
    parser.add_argument(
        "--model",
        default="default",
        metavar="NAME|DIR",
        help="a shipped model name or a directory from `phototag train` (default: default)",
    )
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--top-k", type=int, metavar="K", help="the K best keywords per photo")
    choice.add_argument("--threshold", type=float, metavar="T", help="keywords scoring >= T")
    choice.add_argument(
        "--auto",
        action="store_true",
        help="the model's own decoder, e.g. per-label thresholds (the default)",
    )
    parser.add_argument(
        "--vocabulary",
        type=Path,
        metavar="FILE",
        help="suggest only these words (one per line), no training needed: ImageNet classes "
        "mapped through WordNet, combined with the model for words it knows",
    )
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    add_store_options(parser)
    from phototag.app.batch import add_batch_options

    add_batch_options(parser, report=True)
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="where decoding, encoding and scoring run: this process (default) or Ray Data "
        "(pip install 'phototag[ray]'; same results, in the same order; docs/ray.md)",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help="the Ray cluster for --engine ray, run from one of its nodes (auto or HOST:6379; "
        "implies --engine ray; default: start a local Ray instance)",
    )
    _add_write_options(parser)
    parser.set_defaults(run=_run_annotate)


def _run_annotate(args: argparse.Namespace) -> int:
    import csv
    from collections import deque
    from contextlib import nullcontext

    from phototag.app.batch import (
        BatchSummary,
        find_photos,
        missing_error,
        open_journal,
        record_annotation,
        report_skip,
        resume_annotations,
    )
    from phototag.evaluation.decoding import Threshold, TopK
    from phototag.filenames import json_text, printable
    from phototag.library.annotation import UserVocabulary, annotate_files
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
    paths, missing = find_photos(args.paths)
    if not paths:
        print("phototag: no photos found", file=sys.stderr)
        return 1
    writer = csv.writer(sys.stdout) if args.format == "csv" else None
    keyword_writer = _keyword_writer(args, model)
    if writer:
        writer.writerow(["path", "label", "score"])
    summary = BatchSummary("annotate")
    for path in missing:
        summary.add(path, missing_error(path))

    def annotate(todo: list[str]) -> Any:
        if args.engine == "ray" or args.address is not None:
            return _annotate_on_ray(todo, model, decoder, args)
        return annotate_files(
            todo, model, decoder, store_root=args.store, runtime=args.runtime,
            batch_size=args.batch_size, workers=args.workers, progress=False,
        )  # fmt: skip

    # a run that writes sidecars must see them changed (e.g. by `untag`) to write again
    sidecars = _sidecar_paths if args.write is not None else None
    inputs = [str(p) for p in args.paths]
    journaled = open_journal("annotate", args, inputs, sidecars, commit_every=args.chunk_size)
    # photos printed whose keyword writes may still run: (annotation, replayed, write)
    pending: deque[tuple[Any, bool, Future[Any] | None]] = deque()
    with journaled as journal, keyword_writer or nullcontext(), \
            _maybe_report(args.report, "phototag annotate") as report:  # fmt: skip

        def finish(result: Any, replayed: bool, write: Future[Any] | None) -> None:
            """Journal a photo once its output and keyword write are done; never twice."""
            done = write is None or write.result() is not None
            if done and not replayed:
                record_annotation(journal, result)
            summary.add(result.path, result.error, replayed=replayed, empty=not result.tags)
            if report is not None:
                report.add(result.path, result.tags, result.error)

        for path in missing if report is not None else ():
            report.add(path, error=missing_error(path))
        for result, replayed in resume_annotations(paths, journal, annotate):
            name = printable(result.path)
            if result.error is not None:
                report_skip(result.error)
            elif writer:
                writer.writerows((name, label, f"{score:.4f}") for label, score in result.tags)
            elif args.format == "json":
                tags = [{"label": label, "score": round(score, 6)} for label, score in result.tags]
                print(json_text({"path": result.path, "tags": tags}))
            else:
                keywords = ", ".join(f"{label} ({score:.2f})" for label, score in result.tags)
                print(f"{name}: {keywords or '-'}")
            sys.stdout.flush()
            write = None
            if keyword_writer is not None and result.error is None and not replayed:
                write = keyword_writer.submit(result.path, result.tags)
            pending.append((result, replayed, write))
            while pending and (len(pending) > _WRITES_IN_FLIGHT or _finished(pending[0][2])):
                finish(*pending.popleft())
        while pending:
            finish(*pending.popleft())
        if report is not None:
            report.summary = summary.lines()
    summary.print(journal)
    if summary.n_skipped:
        print(
            f"{summary.n_skipped} of {summary.files} photos could not be annotated", file=sys.stderr
        )
    if keyword_writer is not None:
        print(keyword_writer.summary(), file=sys.stderr)
        if keyword_writer.failed:
            return 1
    return summary.exit_status


#: Photos whose keyword writes may run at once while later photos are annotated.
_WRITES_IN_FLIGHT = 32


def _finished(write: Future[Any] | None) -> bool:
    return write is None or write.done()


def _annotate_on_ray(paths: list[str], model: Any, decoder: Any, args: argparse.Namespace) -> Any:
    """`phototag.engines.ray.annotate_files_ray` with the annotate options."""
    from phototag.engines.ray import ModelSource, annotate_files_ray
    from phototag.models.open_vocabulary import read_word_list

    words = read_word_list(args.vocabulary) if args.vocabulary is not None else None
    return annotate_files_ray(
        paths, ModelSource.of(args.model, words), decoder, encoders=model.required_inputs().sources,
        address=args.address, runtime=args.runtime, batch_size=args.batch_size, progress=False,
    )  # fmt: skip


def _sidecar_paths(photo: str) -> Any:
    from phototag.metadata.reading import sidecar_paths

    return sidecar_paths(photo)


def _maybe_report(path: Path | None, title: str) -> Any:
    """An `HtmlReport` writing to `path`, or a no-op context giving ``None``."""
    import contextlib

    from phototag.library.report import HtmlReport

    return HtmlReport(path, title=title) if path is not None else contextlib.nullcontext()


def _add_write_options(parser: argparse.ArgumentParser) -> None:
    """annotate --write xmp [--embed] [--dry-run]: keywords into metadata (photo-library.md)."""
    parser.add_argument(
        "--write",
        choices=("xmp",),
        help="write the keywords into XMP metadata: a sidecar photo.jpg.xmp (or the existing "
        "photo.xmp); your own keywords are kept, `phototag untag` removes phototag's",
    )
    parser.add_argument(
        "--embed",
        action="store_true",
        help="with --write: into the photo itself (JPEG, TIFF, PNG, WebP), through a verified "
        "temporary copy that replaces it atomically",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="with --write: show what would change, write nothing"
    )


def _keyword_writer(args: argparse.Namespace, model: Any) -> Any:
    """A `KeywordWriter` for ``--write xmp``, or None."""
    from phototag.errors import InvalidInputError

    if args.write is None:
        if args.embed or args.dry_run:
            raise InvalidInputError("--embed/--dry-run", "--write xmp with them", "no --write")
        return None
    from phototag.metadata import KeywordWriter, Provenance  # libexiv2: only when writing

    trained = getattr(model, "trained", model)
    name = getattr(trained, "name", "") if trained is not None else ""
    source = Path(args.model).name if Path(args.model).expanduser().is_dir() else args.model
    model_id = f"{name}:{source}" if name else str(source)
    if args.vocabulary is not None:
        model_id = f"vocabulary:{args.vocabulary.name}+{model_id}"
    return KeywordWriter(Provenance(model_id), embed=args.embed, dry_run=args.dry_run)


def _add_untag(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "untag",
        help="remove the keywords phototag wrote (and nothing else)",
        description="Remove every keyword phototag wrote into photos or their XMP sidecars, "
        "with its provenance; keywords people wrote stay. Folders are searched recursively.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="photos or folders")
    parser.add_argument("--dry-run", action="store_true", help="show what would be removed")
    parser.set_defaults(run=_run_untag)


def _run_untag(args: argparse.Namespace) -> int:
    from phototag.app.batch import find_photos
    from phototag.metadata import untag_files

    paths, missing = find_photos(args.paths)
    changed, failed = untag_files(paths, dry_run=args.dry_run)
    verb = "would untag" if args.dry_run else "untagged"
    print(f"{verb} {changed} files of {len(paths)} photos; {failed} failed", file=sys.stderr)
    return 1 if failed or missing else 0


def register(commands: argparse._SubParsersAction) -> None:
    _add_annotate(commands)
    _add_untag(commands)
