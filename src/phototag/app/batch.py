"""Batch runs that survive being killed: journal, progress bar, end-of-run summary.

`phototag annotate` and `phototag features` go through here. Files a run's journal
(`phototag.library.journal`) already holds are not processed again: an annotation is replayed
from the journal in its place, so the output of a resumed run is the output of an
uninterrupted one. Both commands exit 0 only when every file was processed
(`BatchSummary.exit_status`). docs/batches.md describes the behaviour for users.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phototag.filenames import printable
from phototag.library.journal import Journal, default_journal_path

if TYPE_CHECKING:  # the command line is parsed before these heavier modules load
    from tqdm import tqdm

    from phototag.library.annotation import FileAnnotation

#: Options that change how results are shown or how fast they come, not what they are.
PRESENTATION_OPTIONS = frozenset(
    {"run", "command", "paths", "dataset", "format", "journal", "restart", "report",
     "workers", "batch_size", "chunk_size", "engine", "address"}
)  # fmt: skip
#: Folders named by their path alone (their content changes as the run goes).
PATH_ONLY_OPTIONS = frozenset({"store"})


def add_batch_options(parser: argparse.ArgumentParser, report: bool = False) -> None:
    """`--journal`, `--restart`, `--chunk-size` (and `--report` when asked)."""
    parser.add_argument(
        "--journal", type=Path, metavar="FILE",
        help="where this run records finished files, to resume after a crash or kill "
        "(default: one journal per run in the cache folder; see docs/batches.md)",
    )  # fmt: skip
    parser.add_argument(
        "--restart", "--no-resume", dest="restart", action="store_true",
        help="ignore what the journal holds and do every file again",
    )  # fmt: skip
    parser.add_argument(
        "--chunk-size", type=_positive_int, default=256, metavar="N",
        help="photos journaled together: a kill loses the record of at most the last N "
        "finished ones, which are done again (default: 256)",
    )  # fmt: skip
    if report:
        parser.add_argument(
            "--report", type=Path, metavar="FILE",
            help="also write an HTML page with thumbnails, keywords, scores and failures",
        )  # fmt: skip


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def run_key(command: str, args: argparse.Namespace, inputs: Sequence[str]) -> dict[str, Any]:
    """Everything that decides a run's results: its inputs and the options that matter.

    Options named in `PRESENTATION_OPTIONS` are left out; paths become absolute and carry
    the size and modification time of the file (or of the files in the folder) they
    name (a shipped model's too), so a retrained model or edited word list starts a new
    journal.
    """
    from phototag import __version__

    key: dict[str, Any] = {"command": command, "version": __version__}
    key["inputs"] = [_absolute(item) for item in inputs]
    for name, value in sorted(vars(args).items()):
        if name in PATH_ONLY_OPTIONS and value is not None:
            key[name] = os.path.abspath(value)
        elif name == "model" and value is not None:
            key[name] = _fingerprint(str(_model_directory(value)))  # a shipped model's too
        elif name not in PRESENTATION_OPTIONS:
            key[name] = _fingerprint(value)
    return key


def _model_directory(model: str) -> str | Path:
    """What `--model` names on disk (as given when it names nothing, for `load_model` to
    report)."""
    from phototag.errors import InvalidInputError
    from phototag.pretrained import model_directory

    try:
        return model_directory(model)
    except InvalidInputError:
        return model


def _absolute(item: str) -> str:
    name, sep, rest = item.partition(":")  # dataset specs are NAME:PATH[?options]
    if sep and not os.path.exists(item):
        return f"{name}:{os.path.abspath(rest)}" if rest else item
    return os.path.abspath(item)


def _fingerprint(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_fingerprint(v) for v in value]
    if not isinstance(value, str | os.PathLike) or not os.path.exists(value):
        return os.fspath(value) if isinstance(value, os.PathLike) else value
    path = Path(value).resolve()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    stamps = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return {"path": str(path), "files": stamps}


def open_journal(
    command: str,
    args: argparse.Namespace,
    inputs: Sequence[str],
    companions: Callable[[str], Sequence[str | os.PathLike[str]]] | None = None,
    commit_every: int = 1,
) -> Journal:
    """The run's journal: ``--journal FILE`` or the default one for this run key.

    `companions`: files whose changes also undo a photo's entry; `commit_every`: records
    per commit (see `Journal`).
    """
    key = run_key(command, args, inputs)
    path = args.journal if args.journal is not None else default_journal_path(command, key)
    return Journal(path, key, restart=args.restart, companions=companions,
                   commit_every=commit_every)  # fmt: skip


def find_photos(paths: Sequence[Path]) -> tuple[list[str], list[str]]:
    """The image files under `paths` (`iter_image_files`) and the named paths that do not
    exist (each reported on stderr as skipped; the run goes on without them)."""
    from phototag.imaging import iter_image_files

    missing = [str(p) for p in paths if not p.exists()]
    for path in missing:
        report_skip(missing_error(path))
    return [str(p) for p in iter_image_files([p for p in paths if p.exists()])], missing


def report_skip(error: str | None) -> None:
    """The ``skipped: ...`` line of a file a batch could not process (`error`; None: it
    was processed, nothing to say), on stderr."""
    if error is not None:
        print(f"skipped: {printable(error)}", file=sys.stderr)


def missing_error(path: str) -> str:
    """The error of a named path that does not exist."""
    return f"{path}: no such file or folder"


def progress_bar(total: int, initial: int, desc: str, unit: str = "photo") -> tqdm:
    """A tqdm bar on stderr with rate and ETA; shown only when stderr is a terminal."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr,
        disable=not sys.stderr.isatty(), dynamic_ncols=True,
    )  # fmt: skip


# ------------------------------------------------------------------------ annotate
def annotation_record(result: FileAnnotation) -> dict[str, Any]:
    """What the journal keeps of an annotation (`Journal.record` keywords)."""
    if result.error is not None:
        return {"error": result.error}
    return {"result": {"tags": [[label, score] for label, score in result.tags]}}


def resume_annotations(
    paths: Sequence[str | os.PathLike[str]],
    journal: Journal,
    annotate: Callable[[list[str]], Iterable[FileAnnotation]],
) -> Iterator[tuple[FileAnnotation, bool]]:
    """``(annotation, replayed)`` per path, in order; only unjournaled paths are annotated.

    `annotate` receives the paths still to do and must yield one annotation per path in
    that order (`phototag.library.annotation.annotate_files` does). Journaled paths come back
    from the journal with ``replayed=True``. Recording fresh results is the caller's
    job (`record_annotation`), after it has done everything else with them.
    """
    from phototag.library.annotation import FileAnnotation

    names = [os.fspath(p) for p in paths]
    done = journal.completed(names)
    todo = [p for p in names if p not in done]
    fresh = iter(annotate(todo)) if todo else iter(())
    bar = progress_bar(len(names), len(done), "annotating")
    try:
        for path in names:
            entry = done.get(path)
            if entry is not None:
                pairs = (entry.result or {}).get("tags", ())
                tags = tuple((str(label), float(score)) for label, score in pairs)
                yield FileAnnotation(path, tags, entry.error), True
                continue
            result = next(fresh)
            if result.path != path:
                raise RuntimeError(f"annotations out of order: {result.path} for {path}")
            yield result, False
            bar.update(1)
    finally:
        bar.close()
        close = getattr(fresh, "close", None)
        if close is not None:  # stop a pipeline's threads now, not when collected
            close()


def record_annotation(journal: Journal, result: FileAnnotation) -> None:
    """Journal a fresh annotation: call it once everything done with it succeeded."""
    journal.record(result.path, **annotation_record(result))


# ------------------------------------------------------------------------- summary
def skip_reason(message: str) -> str:
    """The short reason of an error message (``"truncated"`` style texts are grouped)."""
    from phototag.imaging import ImageLoadError

    for what, _ in ImageLoadError.REASONS.values():
        if f": {what}" in message:
            return what
    head, sep, rest = message.partition(": ")
    reason = rest if sep else head
    return reason.split(" (")[0].split(";")[0].strip() or "unknown error"


@dataclass
class BatchSummary:
    """Counts of one run, printed at its end: files, done, skipped by reason, resumed."""

    command: str
    done_word: str = "tagged"
    files: int = 0
    done: int = 0
    empty: int = 0
    resumed: int = 0
    skipped: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, path: str, error: str | None, *, replayed: bool = False, empty: bool = False):
        """Count one file: done (possibly with an empty result) or skipped with `error`."""
        self.files += 1
        self.resumed += replayed
        if error is not None:
            self.skipped[skip_reason(error)].append(path)
        elif empty:
            self.empty += 1
        else:
            self.done += 1

    @property
    def n_skipped(self) -> int:
        return sum(len(paths) for paths in self.skipped.values())

    def lines(self, journal: Journal | None = None) -> list[str]:
        """The summary as text lines (the first one says it all)."""
        parts = [f"{self.files} photos", f"{self.done} {self.done_word}"]
        if self.empty:
            parts.append(f"{self.empty} without keywords")
        parts.append(f"{self.n_skipped} skipped")
        parts.append(f"{self.resumed} resumed from journal")
        if journal is not None and self.resumed:
            parts[-1] += f" {journal.path}"
        lines = [f"{self.command}: " + ", ".join(parts)]
        by_count = Counter({reason: len(paths) for reason, paths in self.skipped.items()})
        for reason, count in by_count.most_common():
            examples = ", ".join(self.skipped[reason][:3]) + (", ..." if count > 3 else "")
            lines.append(f"  skipped {count}: {reason} ({examples})")
        return [printable(line) for line in lines]

    @property
    def exit_status(self) -> int:
        """The rule of every batch command: 0 when every file was processed (keywords
        found or not), 1 when any was skipped or failed, or when there was no file."""
        return 1 if self.n_skipped or not self.files else 0

    def print(self, journal: Journal | None = None) -> None:
        for line in self.lines(journal):
            print(line, file=sys.stderr)
