"""Writing keywords for many photos in a run: one line per file, a summary at the end."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

from phototag.filenames import printable
from phototag.metadata.fields import MetadataError
from phototag.metadata.writing import (
    KeywordChange,
    Provenance,
    remove_stale_temporaries,
    untag,
    write_keywords,
)


class _StaleTemporaries:
    """Removes the temporaries of killed runs (`remove_stale_temporaries`) from each
    folder once, before phototag first writes there, and says so on `stream`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.done: set[Path] = set()

    def clean(self, folders: Iterable[Path]) -> None:
        for folder in folders:
            if folder not in self.done:
                self.done.add(folder)
                for path in remove_stale_temporaries(folder):
                    print(printable(f"removed {path}: a temporary file left by an interrupted "
                                    "phototag run"), file=self.stream)  # fmt: skip


def _folders(path: str, embed: bool) -> list[Path]:
    """The folders a write for photo `path` puts temporaries in: the photo's (sidecars),
    and with `embed` the one of the file a link points to."""
    photo = Path(path)
    return [photo.parent, photo.resolve().parent] if embed else [photo.parent]


class KeywordWriter:
    """Writes each annotated photo's keywords (`write_keywords`) and reports on `stream`.

    Failures are reported and counted, never raised, so one bad file does not stop a
    run over a library. Before the first write into a folder, temporary files a killed
    run left there are removed.
    """

    def __init__(
        self,
        provenance: Provenance,
        *,
        embed: bool = False,
        dry_run: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.provenance = provenance
        self.embed = embed
        self.dry_run = dry_run
        self.stream = stream or sys.stderr
        self.written = self.unchanged = self.failed = 0
        self._stale = _StaleTemporaries(self.stream)

    def write(self, path: str, tags: Sequence[tuple[str, float]]) -> KeywordChange | None:
        """Write one photo's keywords; None (and a reported error) if that failed."""
        if not self.dry_run:
            self._stale.clean(_folders(path, self.embed))
        try:
            change = write_keywords(path, tags, self.provenance, embed=self.embed,
                                    dry_run=self.dry_run)  # fmt: skip
        except MetadataError as error:
            self.failed += 1
            print(f"keywords not written: {error}", file=self.stream)
            return None
        if change.changed:
            self.written += 1
            print(change.describe(), file=self.stream)
        else:
            self.unchanged += 1
        return change

    def summary(self) -> str:
        verb = "would change" if self.dry_run else "changed"
        return (f"keywords: {verb} {self.written} files, {self.unchanged} unchanged, "
                f"{self.failed} failed")  # fmt: skip


def untag_files(paths: Sequence[str], *, dry_run: bool = False,
                stream: TextIO | None = None) -> tuple[int, int]:  # fmt: skip
    """`untag` every photo of `paths`, reporting each change; (files changed, failures).
    Temporary files a killed run left in the photos' folders are removed first."""
    stream = stream or sys.stdout
    stale = _StaleTemporaries(sys.stderr)
    changed = failed = 0
    for path in paths:
        if not dry_run:
            stale.clean(_folders(path, embed=True))
        try:
            changes = untag(path, dry_run=dry_run)
        except MetadataError as error:
            failed += 1
            print(f"not untagged: {error}", file=sys.stderr)
            continue
        for change in changes:
            changed += 1
            print(change.describe(), file=stream)
    return changed, failed
