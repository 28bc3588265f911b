"""Run journals: which files a batch run has finished, so a killed run resumes.

A journal is a small SQLite database (WAL mode) with one row per finished file: its
absolute path (as TEXT, or as its exact bytes, a BLOB, when the name is not valid
UTF-8), its size and modification time (nanoseconds) when it was processed, and its
result (any JSON value) or the error that stopped it. Records are committed in groups
of ``commit_every`` (1: each its own transaction) and when the journal closes, so a
process killed at any moment (``SIGKILL`` included) leaves every file recorded before
the last commit in the journal, and loses at most the ``commit_every - 1`` records since
(those files are done again); a power cut may lose the last few commits, never the
journal's consistency. A file whose size or modification time
changed since it was recorded counts as not done.

The journal also stores the *run key*: the JSON object of everything that decides the
results (inputs, model, decoder, options). Opening a journal with another key is
refused, so the results of one run are never replayed as another's. One process at a
time may hold a journal open.

A journal phototag cannot read (cut short, overwritten, not a database) raises
`phototag.fileio.DamagedFileError` naming it; a full disk or a folder that cannot be
written raises `phototag.fileio.StorageError`. Neither ever deletes or changes the file.

>>> with Journal("run.sqlite", {"model": "default"}) as journal:  # doctest: +SKIP
...     done = journal.completed(paths)          # path -> JournalEntry, unchanged files
...     for path in paths:
...         if path not in done:
...             journal.record(path, result={"tags": [["sky", 0.9]]})
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from phototag.cache import cache_dir
from phototag.errors import InvalidInputError, PhototagError
from phototag.fileio import DamagedFileError, is_damaged_database, storage_error
from phototag.filenames import from_database, json_text, to_database

__all__ = ["Journal", "JournalEntry", "JournalInUseError", "default_journal_path"]

#: Names that are not UTF-8, stored as BLOBs, left the format as it was: journals written
#: before read the same, and older versions read these (such rows just never match).
_SCHEMA = 1
_COLUMNS = {
    "meta": ("key", "value"),
    "files": ("path", "size", "mtime_ns", "companions", "result", "error"),
}


def canonical_json(value: Any) -> str:
    """`value` as JSON with sorted keys and no spaces: equal values, equal text (file names
    that are not UTF-8 included, as `phototag.library.report.json_text` writes them)."""
    return json_text(value, sort_keys=True, separators=(",", ":"))


def default_journal_path(command: str, run_key: Mapping[str, Any]) -> Path:
    """``<cache>/journals/<command>-<hash of the run key>.sqlite``: one journal per run."""
    digest = hashlib.sha256(canonical_json([command, run_key]).encode()).hexdigest()[:24]
    return cache_dir() / "journals" / f"{command}-{digest}.sqlite"


@dataclass(frozen=True)
class JournalEntry:
    """A finished file: its result (a JSON value) or the error that stopped it."""

    path: str
    result: Any = None
    error: str | None = None


class JournalInUseError(InvalidInputError):
    """Another process holds the journal (the same run is already going)."""


class Journal:
    """The finished files of one batch run, kept on disk as the run goes.

    `run_key` identifies the run; an existing journal with another key raises
    `InvalidInputError` unless ``restart=True``, which empties it first.
    `companions` names files that belong to a photo (its XMP sidecars, for a run that
    writes them): a change to them, like a change to the photo, makes it not done.
    `commit_every`: records per commit (`record`); the rest are committed on closing.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        run_key: Mapping[str, Any],
        *,
        restart: bool = False,
        companions: Callable[[str], Sequence[str | os.PathLike[str]]] | None = None,
        commit_every: int = 1,
    ) -> None:
        if commit_every < 1:
            raise InvalidInputError("commit_every", "a whole number >= 1", repr(commit_every))
        self.path = Path(path).expanduser()
        self.commit_every = commit_every
        self._uncommitted = 0
        self.run_key = dict(run_key)
        self.companions = companions
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = self._take_lock()
        except OSError as error:
            raise storage_error(self.path.parent, error) from None
        try:
            self._db = sqlite3.connect(self.path)
        except sqlite3.Error as error:
            self._lock.close()
            raise self._failure(error) from None
        try:
            self._prepare(restart)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening
    def _take_lock(self) -> IO[bytes]:
        lock = open(self.path.with_name(self.path.name + ".lock"), "ab")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise JournalInUseError(
                f"journal {self.path}",
                "a journal no other process is using",
                "one held by another phototag process",
                "Wait for that run to finish, or name another file with --journal.",
            ) from None
        return lock

    def _failure(self, error: sqlite3.Error) -> PhototagError:
        """`error` in words: a damaged journal (`DamagedFileError`), else a storage problem
        (`StorageError` naming the folder: full disk, read-only, cannot create)."""
        if is_damaged_database(error):
            return DamagedFileError(
                self.path,
                f"cannot be read as a phototag journal ({error})",
                "If phototag wrote it, delete it: it only lists the files a run finished, "
                "and the next run does them again. Otherwise name another file with --journal",
            )
        return storage_error(self.path.parent, error)

    @contextlib.contextmanager
    def _database(self) -> Iterator[sqlite3.Connection]:
        """The open database, its errors turned into `_failure`'s (the transaction undone)."""
        try:
            yield self._db
        except sqlite3.Error as error:
            with contextlib.suppress(sqlite3.Error):
                self._db.rollback()
            raise self._failure(error) from None

    def _prepare(self, restart: bool) -> None:
        with self._database() as db:
            foreign = self._foreign_tables(db)
            if foreign:  # never touch another program's database
                raise InvalidInputError(
                    f"journal {self.path}",
                    "a phototag journal",
                    f"another SQLite database (it holds {', '.join(foreign)})",
                    "Name another file with --journal; this one is left as it is.",
                )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across kills
            db.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
                "mtime_ns INTEGER NOT NULL, companions TEXT, result TEXT, error TEXT)"
            )
            meta = dict(db.execute("SELECT key, value FROM meta"))
            wanted = {"schema": str(_SCHEMA), "run": canonical_json(self.run_key)}
            if restart or not meta:
                db.execute("DELETE FROM files")
                db.execute("DELETE FROM meta")
                db.executemany("INSERT INTO meta VALUES (?, ?)", wanted.items())
            elif meta != wanted:
                raise InvalidInputError(
                    f"journal {self.path}",
                    "the journal of this run",
                    f"the journal of another run (it differs in: {self._differences(meta)})",
                    "Start it over with --restart, or name another file with --journal.",
                )
            db.commit()

    @staticmethod
    def _foreign_tables(db: sqlite3.Connection) -> list[str]:
        """The tables of `db` that a journal does not have (by name and columns)."""
        names = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        columns = {
            name: tuple(c for (c,) in db.execute("SELECT name FROM pragma_table_info(?)", (name,)))
            for (name,) in names
        }
        return sorted(name for name, found in columns.items() if _COLUMNS.get(name) != found)

    def _differences(self, meta: Mapping[str, str]) -> str:
        if meta.get("schema") != str(_SCHEMA):
            return "journal format"
        try:
            theirs = json.loads(meta.get("run", "{}"))
        except json.JSONDecodeError:
            return "run key"
        keys = sorted(set(theirs) | set(self.run_key))
        mine = self.run_key
        changed = [k for k in keys if canonical_json(theirs.get(k)) != canonical_json(mine.get(k))]
        return ", ".join(changed) or "run key"

    # ------------------------------------------------------------------ reading
    def completed(self, paths: Iterable[str | os.PathLike[str]]) -> dict[str, JournalEntry]:
        """The journal's entries for `paths` whose files are unchanged since recorded.

        Keys are the paths as given (as ``str``). Files that changed, vanished or were
        never recorded are absent: they still have to be done.
        """
        with self._database() as db:
            rows = {
                from_database(path): ((size, mtime, companions), result, error)
                for path, size, mtime, companions, result, error in db.execute(
                    "SELECT path, size, mtime_ns, companions, result, error FROM files"
                )
            }
        done: dict[str, JournalEntry] = {}
        for path in map(os.fspath, paths):
            key = os.path.abspath(path)
            stamp = self._stamp(key)
            row = rows.get(key)
            if row is None or stamp[0] < 0 or row[0] != stamp:
                continue
            result = json.loads(row[1]) if row[1] is not None else None
            error = from_database(row[2]) if row[2] is not None else None
            done[path] = JournalEntry(path, result, error)
        return done

    def __len__(self) -> int:
        with self._database() as db:
            return db.execute("SELECT COUNT(*) FROM files").fetchone()[0]

    # ------------------------------------------------------------------ writing
    def record(
        self, path: str | os.PathLike[str], result: Any = None, error: str | None = None
    ) -> None:
        """Mark `path` done with its `result` (a JSON value) or `error`; committed with
        the `commit_every`-th uncommitted record, by `commit`, or on closing.

        Call it after *everything* the run does to the file has succeeded (a keyword
        write included), so a resumed run never does any of it twice. The file's size
        and modification time are taken now, so a file the run itself rewrote (keywords
        embedded) counts as done, and one changed later as not done.
        """
        key = os.path.abspath(os.fspath(path))
        result_json = None if result is None else canonical_json(result)
        row = (
            to_database(key),
            *self._stamp(key),
            result_json,
            None if error is None else to_database(error),
        )
        with self._database() as db:
            db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", row)
        self._uncommitted += 1
        if self._uncommitted >= self.commit_every:
            self.commit()

    def commit(self) -> None:
        """Commit the records not committed yet."""
        with self._database() as db:
            db.commit()
        self._uncommitted = 0

    def _stamp(self, path: str) -> tuple[int, int, str | None]:
        """Size, modification time and the companions' ``[size, mtime]`` (or None) as JSON."""
        size, mtime = _size_and_mtime(path)
        if self.companions is None:
            return size, mtime, None
        others = [_size_and_mtime(os.fspath(p)) for p in self.companions(path)]
        return size, mtime, canonical_json([o if o[0] >= 0 else None for o in others])

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        """Commit what is recorded, close the database (checkpointing its WAL) and
        release the lock (both even when the commit fails, which then raises)."""
        try:
            if getattr(self, "_db", None) is not None and self._uncommitted:
                self.commit()
        finally:
            self._release()

    def _release(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
            self._db = None  # type: ignore[assignment]
        if not self._lock.closed:
            self._lock.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None:
            self.close()
            return
        with contextlib.suppress(PhototagError):  # the error in flight is the one to show
            self.close()


def _size_and_mtime(path: str) -> tuple[int, int]:
    try:
        info = os.stat(path)
    except OSError:
        return (-1, -1)
    return (info.st_size, info.st_mtime_ns)
