"""Writing keywords for many photos in a run: one line per file, a summary at the end."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from phototag.metadata.fields import MetadataError
from phototag.metadata.writing import KeywordChange, Provenance, untag, write_keywords


class KeywordWriter:
    """Writes each annotated photo's keywords (`write_keywords`) and reports on `stream`.

    Failures are reported and counted, never raised, so one bad file does not stop a
    run over a library.
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

    def write(self, path: str, tags: Sequence[tuple[str, float]]) -> KeywordChange | None:
        """Write one photo's keywords; None (and a reported error) if that failed."""
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
    """`untag` every photo of `paths`, reporting each change; (files changed, failures)."""
    stream = stream or sys.stdout
    changed = failed = 0
    for path in paths:
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
