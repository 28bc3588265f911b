"""Writing keywords for many photos in a run: one line per file, a summary at the end."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
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


def _shared_files(path: str, embed: bool) -> set[str]:
    """Keys two writes share when they may change the same file: the real folder and
    name stem of the photo (``photo.xmp`` is the sidecar of every ``photo.*``), case-
    folded, and with `embed` those of the file a link leads to."""
    photo = Path(path)
    try:
        places = [photo.parent.resolve() / photo.name] + ([photo.resolve()] if embed else [])
    except (OSError, RuntimeError):  # a folder changing meanwhile, a loop of links
        places = [photo]  # the write itself reports what is wrong
    return {os.fsdecode(place.with_suffix("")).casefold() for place in places}


class KeywordWriter:
    """Writes each annotated photo's keywords (`write_keywords`) and reports on `stream`.

    Failures are reported and counted, never raised, so one bad file does not stop a
    run over a library. Before the first write into a folder, temporary files a killed
    run left there are removed. `submit` writes on `threads` threads, so that the
    writes of several photos wait for the disk (each one's fsyncs) at once; close the
    writer (or use it as a context manager) to wait for them.
    """

    def __init__(
        self,
        provenance: Provenance,
        *,
        embed: bool = False,
        dry_run: bool = False,
        stream: TextIO | None = None,
        threads: int = 4,
    ) -> None:
        self.provenance = provenance
        self.embed = embed
        self.dry_run = dry_run
        self.stream = stream or sys.stderr
        self.written = self.unchanged = self.failed = 0
        self._stale = _StaleTemporaries(self.stream)
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # the counters and the stream
        self._latest: dict[str, Future[KeywordChange | None]] = {}  # by `_shared_files`

    def write(self, path: str, tags: Sequence[tuple[str, float]]) -> KeywordChange | None:
        """Write one photo's keywords; None (and a reported error) if that failed."""
        if not self.dry_run:
            self._stale.clean(_folders(path, self.embed))
        return self._write(path, tags)

    def submit(self, path: str, tags: Sequence[tuple[str, float]]) -> Future[KeywordChange | None]:
        """`write` on one of the writer's threads. Writes that may change the same file
        (a shared ``photo.xmp``, two links to one photo) run one after the other, in
        the order they were submitted."""
        if not self.dry_run:  # here, before any write into a new folder starts
            with self._lock:
                self._stale.clean(_folders(path, self.embed))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="phototag-write")
        keys = _shared_files(path, self.embed)
        earlier = {f for k in keys if (f := self._latest.get(k)) is not None}
        future = self._pool.submit(self._write_after, earlier, path, tags)
        if len(self._latest) > 64 * self._threads:  # forget the writes that are over
            self._latest = {k: f for k, f in self._latest.items() if not f.done()}
        self._latest.update(dict.fromkeys(keys, future))
        return future

    def close(self) -> None:
        """Wait for the submitted writes."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._latest.clear()

    def __enter__(self) -> KeywordWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _write_after(
        self,
        earlier: set[Future[KeywordChange | None]],
        path: str,
        tags: Sequence[tuple[str, float]],
    ) -> KeywordChange | None:
        for future in earlier:  # submitted before, so already running on another thread
            future.exception()  # waits; its failure is its own caller's
        return self._write(path, tags)

    def _write(self, path: str, tags: Sequence[tuple[str, float]]) -> KeywordChange | None:
        try:
            change = write_keywords(path, tags, self.provenance, embed=self.embed,
                                    dry_run=self.dry_run)  # fmt: skip
        except MetadataError as error:
            with self._lock:
                self.failed += 1
                self.stream.write(f"keywords not written: {error}\n")
            return None
        with self._lock:
            if change.changed:
                self.written += 1
                self.stream.write(change.describe() + "\n")
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
