"""Accept/reject decisions on suggested keywords, and training on them.

`phototag serve` records every decision a user makes on a suggested keyword in one
SQLite file (``feedback.sqlite`` in the service's data folder, see
:func:`default_data_dir`); :func:`merge_feedback` turns those decisions into labels of
a training set, which is what ``phototag train --feedback DB`` does:

- a photo of the dataset (matched by its resolved file path) gains every keyword
  accepted for it and loses every keyword rejected for it;
- a photo that is not in the dataset (an upload, or a folder photo outside it) whose
  file still exists joins the training split with its accepted keywords;
- an accepted keyword the vocabulary does not have yet is added to it.

For each photo and keyword only the latest decision counts.

The database is SQLite in WAL mode with ``synchronous=FULL``, so a committed decision
survives a crash or a power cut. A full disk or an unwritable folder is one
`StorageError` naming the folder (the decision is not recorded, earlier ones are kept);
a file that is not a readable SQLite database is a `DamagedFileError` naming it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from phototag.data import AnnotationSet, Vocabulary
from phototag.errors import InvalidInputError, PhototagError
from phototag.fileio import DamagedFileError, is_damaged_database, storage_error
from phototag.filenames import from_database, to_database

DATABASE_FILE = "feedback.sqlite"
ACCEPTED: Literal["accepted"] = "accepted"
REJECTED: Literal["rejected"] = "rejected"
Verdict = Literal["accepted", "rejected"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS photos (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,      -- absolute, resolved path (a BLOB if not UTF-8)
    name TEXT NOT NULL,             -- what the user sees: upload file name or folder path
    source TEXT NOT NULL CHECK (source IN ('upload', 'folder')),
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    photo_id INTEGER NOT NULL REFERENCES photos(id),
    label TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('accepted', 'rejected')),
    score REAL,                     -- the suggestion's score, NULL for a tag the user added
    model TEXT NOT NULL,            -- which model suggested it
    decided_at REAL NOT NULL,
    PRIMARY KEY (photo_id, label)
);
"""


def default_data_dir() -> Path:
    """Where `phototag serve` keeps uploads and decisions unless told otherwise.

    ``$PHOTOTAG_DATA`` if set, else ``$XDG_DATA_HOME/phototag``, else
    ``~/.local/share/phototag`` (user data, unlike the cache: never delete it blindly).
    """
    override = os.environ.get("PHOTOTAG_DATA")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "phototag"


@dataclass(frozen=True)
class Photo:
    """A photo the service has shown suggestions for."""

    id: int
    path: str
    name: str
    source: str


@dataclass(frozen=True)
class Decision:
    """The latest decision on one keyword of one photo."""

    photo_id: int
    label: str
    decision: Verdict
    score: float | None
    model: str
    decided_at: float


class FeedbackStore:
    """The decisions database (SQLite, WAL mode; safe for several threads and processes).

    Every call opens its own short-lived connection, so one store object can be shared
    by a thread pool.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with self._guard():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """A full disk, an unwritable folder or a damaged database as one clear error."""
        try:
            yield
        except PhototagError:
            raise
        except (OSError, sqlite3.Error) as error:
            if is_damaged_database(error):
                raise DamagedFileError(
                    self.path, f"not a readable decisions database ({error})",
                    "It holds the decisions made in `phototag serve`: restore it from a "
                    "backup, or move it aside to start a new one",
                ) from None  # fmt: skip
            if isinstance(error, OSError | sqlite3.OperationalError):
                raise storage_error(self.path.parent, error) from None
            raise

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._guard():
            db = sqlite3.connect(self.path, timeout=30.0)
            try:
                db.execute("PRAGMA foreign_keys=ON")
                db.execute("PRAGMA synchronous=FULL")
                with db:  # one transaction: committed on success, rolled back on error
                    yield db
            finally:
                db.close()

    def add_photo(self, path: str | Path, name: str, source: str) -> Photo:
        """The photo at `path`, registered on first sight (same path, same id)."""
        resolved = to_database(str(Path(path).resolve()))
        with self._connect() as db:
            db.execute(
                "INSERT INTO photos (path, name, source, added_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(path) DO NOTHING",
                (resolved, name, source, time.time()),
            )
            row = db.execute(
                "SELECT id, path, name, source FROM photos WHERE path = ?", (resolved,)
            ).fetchone()
        return _photo(row)

    def photo(self, photo_id: int) -> Photo | None:
        """The registered photo `photo_id`, or None."""
        with self._connect() as db:
            row = db.execute(
                "SELECT id, path, name, source FROM photos WHERE id = ?", (photo_id,)
            ).fetchone()
        return _photo(row) if row else None

    def decide(
        self, photo_id: int, label: str, decision: Verdict, score: float | None, model: str
    ) -> Decision:
        """Record `decision` on `label` for the photo, replacing an earlier one."""
        label = label.strip()
        if not label:
            raise InvalidInputError("label", "a non-empty keyword", repr(label))
        if decision not in (ACCEPTED, REJECTED):
            raise InvalidInputError("decision", "'accepted' or 'rejected'", repr(decision))
        now = time.time()
        with self._connect() as db:
            db.execute(
                "INSERT INTO decisions (photo_id, label, decision, score, model, decided_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(photo_id, label) DO UPDATE SET "
                "decision = excluded.decision, score = excluded.score, "
                "model = excluded.model, decided_at = excluded.decided_at",
                (photo_id, label, decision, score, model, now),
            )
        return Decision(photo_id, label, decision, score, model, now)

    def decisions(self, photo_id: int | None = None) -> list[Decision]:
        """Latest decisions, of one photo or of all, oldest first."""
        query = "SELECT photo_id, label, decision, score, model, decided_at FROM decisions"
        arguments: tuple[int, ...] = ()
        if photo_id is not None:
            query += " WHERE photo_id = ?"
            arguments = (photo_id,)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY decided_at, rowid", arguments).fetchall()
        return [Decision(*row) for row in rows]

    def photos_with_decisions(self) -> dict[str, dict[str, Verdict]]:
        """``{photo path: {label: decision}}`` for every photo with at least one decision."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT p.path, d.label, d.decision FROM decisions d "
                "JOIN photos p ON p.id = d.photo_id ORDER BY p.id, d.label"
            ).fetchall()
        result: dict[str, dict[str, Verdict]] = {}
        for path, label, decision in rows:
            result.setdefault(from_database(path), {})[label] = decision
        return result


def _photo(row: tuple) -> Photo:
    photo_id, path, name, source = row
    return Photo(photo_id, from_database(path), name, source)


@dataclass
class FeedbackReport:
    """What :func:`merge_feedback` changed."""

    photos_matched: int = 0
    photos_added: int = 0
    labels_added: int = 0
    labels_removed: int = 0
    new_labels: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"{self.photos_matched} dataset photos corrected ({self.labels_added} keywords "
            f"added, {self.labels_removed} removed), {self.photos_added} photos added"
        )
        if self.new_labels:
            text += f", {len(self.new_labels)} new keywords ({', '.join(self.new_labels[:10])}"
            text += ", ...)" if len(self.new_labels) > 10 else ")"
        return text


def merge_feedback(
    data: AnnotationSet, database: str | Path, split: str = "train"
) -> tuple[AnnotationSet, FeedbackReport]:
    """`data` with the decisions of `database` applied (rules in the module docstring).

    Photos that are not in `data` join split `split`. Raises `InvalidInputError` when
    `database` is missing or `data` has no image files to match, `DamagedFileError` when
    `database` is not a decisions database.
    """
    database = Path(database)
    if not database.is_file():
        raise InvalidInputError(
            "--feedback", "the decisions database of `phototag serve`", f"{database} (no such "
            "file)", f"It is {DATABASE_FILE} in the service's data folder.",
        )  # fmt: skip
    if data.image_paths is None:
        raise InvalidInputError(
            "--feedback", "a dataset with image files to match decisions to",
            f"{data.name} (labels only)",
        )  # fmt: skip
    decided = FeedbackStore(database).photos_with_decisions()
    report = FeedbackReport()
    vocabulary = _with_new_labels(data.vocabulary, decided, report)
    widen = sp.csr_matrix((data.n_items, len(vocabulary) - data.n_labels), dtype=bool)
    labels = sp.hstack([data.labels, widen], format="lil")
    row_of = {os.path.realpath(p): i for i, p in enumerate(data.image_paths)}
    extra: list[tuple[str, list[str]]] = []
    for path, verdicts in decided.items():
        row = row_of.get(path)
        if row is not None:
            _apply(labels, row, verdicts, vocabulary, report)
            continue
        accepted = sorted(label for label, v in verdicts.items() if v == ACCEPTED)
        if not accepted:
            continue  # nothing to learn from rejections alone on a photo outside the data
        if not os.path.isfile(path):
            report.skipped.append(f"{path}: file no longer exists")
        elif data.features:
            report.skipped.append(f"{path}: the dataset has precomputed features")
        else:
            extra.append((path, accepted))
    merged = _append(data, vocabulary, labels.tocsr(), extra, split)
    report.photos_added = len(extra)
    return merged, report


def _with_new_labels(
    vocabulary: Vocabulary, decided: dict[str, dict[str, Verdict]], report: FeedbackReport
) -> Vocabulary:
    new = {
        label: None
        for verdicts in decided.values()
        for label, verdict in verdicts.items()
        if verdict == ACCEPTED and label not in vocabulary
    }
    report.new_labels = list(new)
    return Vocabulary([*vocabulary, *new]) if new else vocabulary


def _apply(
    labels: sp.lil_matrix,
    row: int,
    verdicts: dict[str, Verdict],
    vocabulary: Vocabulary,
    report: FeedbackReport,
) -> None:
    report.photos_matched += 1
    for label, verdict in verdicts.items():
        if verdict == REJECTED and label not in vocabulary:
            continue
        column = vocabulary.index(label)
        wanted = verdict == ACCEPTED
        if bool(labels[row, column]) != wanted:
            labels[row, column] = wanted
            if wanted:
                report.labels_added += 1
            else:
                report.labels_removed += 1


def _append(
    data: AnnotationSet,
    vocabulary: Vocabulary,
    labels: sp.csr_matrix,
    extra: Sequence[tuple[str, list[str]]],
    split: str,
) -> AnnotationSet:
    n = data.n_items
    rows = [vocabulary.indices(accepted) for _, accepted in extra]
    added = sp.csr_matrix(
        (
            np.ones(sum(map(len, rows)), dtype=bool),
            np.concatenate([np.asarray(r, dtype=np.int64) for r in rows]) if rows else [],
            np.cumsum([0] + [len(r) for r in rows]),
        ),
        shape=(len(extra), len(vocabulary)),
    )
    splits = dict(data.splits)
    if extra:
        splits[split] = np.concatenate([splits.get(split, []), np.arange(n, n + len(extra))])
    tags = data.user_tags
    if tags is not None and extra:
        tags = sp.vstack([tags, sp.csr_matrix((len(extra), tags.shape[1]), dtype=tags.dtype)])
    notes = list(data.notes)
    metadata = dict(data.metadata)
    if extra and metadata:
        notes.append(
            f"feedback: per-item metadata ({', '.join(metadata)}) left out: "
            f"{len(extra)} photos from outside the dataset were added"
        )
        metadata = {}
    return AnnotationSet(
        name=data.name,
        item_ids=[*data.item_ids, *(f"feedback:{path}" for path, _ in extra)],
        vocabulary=vocabulary,
        labels=sp.vstack([labels, added], format="csr"),
        image_paths=[*data.image_paths, *(path for path, _ in extra)],  # type: ignore[misc]
        tag_vocabulary=data.tag_vocabulary,
        user_tags=tags,
        features=dict(data.features),
        metadata=metadata,
        splits=splits,
        notes=notes,
    )
