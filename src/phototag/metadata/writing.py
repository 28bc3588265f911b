"""Writing phototag's keywords into sidecars or photos, and removing them (untag).

Every write goes to a temporary copy in the target's folder (`phototag.fileio.atomic_write`:
``fsync``, ``os.replace``, ``fsync`` of the folder), is read back and checked before it
replaces the target; on any failure the target is untouched and the error names it.
Files phototag cannot read completely and read-only files are never written or deleted.
The target keeps its permission bits and owner; its modification time becomes the time
of the write (backup and sync tools then notice the change).
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from phototag.fileio import TEMPORARY_SUFFIX, StorageError, atomic_write, fsync_directory
from phototag.filenames import printable
from phototag.imaging import is_raw
from phototag.metadata import _exiv2
from phototag.metadata.fields import (
    AutoKeyword,
    KeywordFields,
    MetadataError,
    label_path,
    leaf,
)
from phototag.metadata.reading import read_holders, sidecar_for_writing, sidecar_paths

# the temporary files of `atomic_write` (".tmpXXXXXXXX.phototag-tmp") and of phototag
# before it (".photo.jpg.XXXXXXXX.phototag-tmp"); XXXXXXXX as `tempfile` makes them
_TEMPORARY = re.compile(rf"\.(?:tmp|.+\.)[a-z0-9_]{{8}}{re.escape(TEMPORARY_SUFFIX)}", re.DOTALL)


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Provenance:
    """Who suggested the keywords being written: a model id and the date (ISO 8601)."""

    model: str
    date: str = field(default_factory=_now)


@dataclass(frozen=True)
class KeywordChange:
    """What a write or untag did (or, with ``dry_run``, would do) to one file.

    Attributes:
        photo: the photo.
        target: the file written: the photo itself or its sidecar.
        added: keywords added to the target.
        removed: phototag keywords removed from the target.
        kept: suggestions not written because the photo already has them.
        dry_run: nothing was written.
        deleted: the target was a sidecar left empty, and was removed.
    """

    photo: Path
    target: Path
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    dry_run: bool = False
    deleted: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)

    def describe(self) -> str:
        """One line, e.g. ``photo.jpg.xmp: +beach +sea -sky``."""
        verb = "would change" if self.dry_run else "changed"
        edits = [f"+{a}" for a in self.added] + [f"-{r}" for r in self.removed]
        text = f"{self.target}: {' '.join(edits) if edits else 'unchanged'}"
        if self.kept:
            text += f" (already there: {', '.join(self.kept)})"
        if self.deleted:
            text += " (sidecar now empty: removed)"
        return printable(f"{verb} {text}" if self.changed else text)


def write_keywords(
    path: str | os.PathLike[str],
    tags: Sequence[tuple[str, float]],
    provenance: Provenance,
    *,
    embed: bool = False,
    dry_run: bool = False,
) -> KeywordChange:
    """Write suggested ``(label, score)`` keywords of one photo, with their provenance.

    A label is a keyword (``cat``) or a path (``Animals|Pets|Cat``); each goes into
    ``dc:subject``, ``lr:hierarchicalSubject``, ``digiKam:TagsList`` and (embedded, where
    the format has it) IPTC ``Keywords`` (see `fields.entry`). Written to the photo's XMP
    sidecar (see `sidecar_for_writing`; a new one starts with a copy of the photo's XMP),
    or with `embed` into the photo (JPEG, TIFF, PNG, WebP; HEIC and other read-only
    formats raise `MetadataError`). Keywords the photo already has (by leaf,
    case-insensitive, any field, any sidecar) are never written again or changed.
    phototag's keywords from an earlier write to the same file are replaced by these.
    With `dry_run`, nothing is written and the returned change says what would be.
    """
    photo = Path(path)
    holders = read_holders(photo)
    target = photo.resolve() if embed else sidecar_for_writing(photo)
    embedded = holders[photo]
    fields = holders.get(photo if embed else target)
    if fields is None:
        fields = embedded.seeded_sidecar()
    automatic = [a.label for h in holders.values() for a in h.automatic]
    user = {t.casefold() for h in holders.values() for t in h.user_terms(automatic)}
    wanted, kept = _wanted(tags, user)
    present = {t.casefold() for t in fields.terms()}
    previous = {leaf(a.label, "|").casefold(): a for a in fields.automatic}
    added = [label for key, (label, _) in wanted.items() if key not in present]
    removed = [a.label for key, a in previous.items() if key not in wanted]
    new_auto = [AutoKeyword(previous[k].label if _same(previous.get(k), label) else label,
                            score, provenance.model, provenance.date)
                for k, (label, score) in wanted.items()]  # fmt: skip
    labels = [a.label for a in new_auto]
    new = fields.edited([a.label for a in fields.automatic if a.label not in labels], labels,
                        new_auto)  # fmt: skip
    change = KeywordChange(photo, target, tuple(added), tuple(removed), tuple(kept), dry_run)
    same_models = {(a.label, a.model) for a in fields.automatic} == {
        (a.label, a.model) for a in new_auto
    }
    if dry_run or (not change.changed and same_models and _same_entries(fields, new)):
        return change
    _commit(photo, target, new, embed=embed)
    return change


def _wanted(
    tags: Sequence[tuple[str, float]], user: set[str]
) -> tuple[dict[str, tuple[str, float]], list[str]]:
    """The suggestions to write, keyed by their leaf (casefolded), as clean paths with
    their scores, and those not written because the user has them (`user`: casefolded)."""
    wanted: dict[str, tuple[str, float]] = {}
    kept = []
    for label, score in tags:
        path = label_path(label)
        key = leaf(path, "|").casefold()
        if not key or key in wanted:
            continue
        if key in user:
            kept.append(label)
        else:
            wanted[key] = (path, float(score))
    return wanted, kept


def _same(previous: AutoKeyword | None, label: str) -> bool:
    """Whether an earlier label is `label` spelt otherwise (so it is kept as it was)."""
    return previous is not None and previous.label.casefold() == label.casefold()


def _same_entries(old: KeywordFields, new: KeywordFields) -> bool:
    keys = ("subject", "hierarchical", "digikam", "iptc")
    return all(getattr(old, k) == getattr(new, k) for k in keys)


def untag(path: str | os.PathLike[str], *, dry_run: bool = False) -> list[KeywordChange]:
    """Remove every keyword phototag wrote (and its provenance) from a photo and its
    sidecars; nothing else changes. A sidecar that held nothing but phototag's entries
    (no other XMP property is left) is deleted. Returns one change per file that had
    phototag keywords; raises `MetadataError`, changing nothing, when one of the files
    cannot be read completely."""
    photo = Path(path)
    changes = []
    for holder, fields in read_holders(photo).items():
        if not fields.automatic:
            continue
        ours = fields.automatic_labels()
        removed = tuple(label for label in ours if fields.holds(label))
        embed = holder == photo
        target = photo.resolve() if embed else holder
        deleted = False
        if not dry_run:
            deleted = _commit(photo, target, fields.edited(ours, [], []), embed=embed)
        changes.append(KeywordChange(photo, target, removed=removed, dry_run=dry_run,
                                     deleted=deleted))  # fmt: skip
    return changes


# ------------------------------------------------------------------ atomic commit


def _commit(photo: Path, target: Path, new: KeywordFields, *, embed: bool) -> bool:
    """Write `new` to `target` through a verified temporary copy; True if a sidecar
    ended up empty and was deleted instead."""
    with _exiv2.LOCK:
        before, image = _open_target(target, photo, embed=embed)
    try:
        with _exiv2.LOCK:
            picture = _exiv2.describe_image(image) if embed else None
            _exiv2.apply_fields(image, _exiv2.read_fields(image), new)
            empty = not embed and _exiv2.xmp_is_empty(image)
            result = b"" if empty else _exiv2.image_bytes(image)
        if empty:  # nothing left: remove the sidecar
            _check_unchanged(target, before)
            target.unlink(missing_ok=True)
            fsync_directory(target.parent)
            return before is not None
        owner = before or os.stat(photo)
        mode = stat.S_IMODE(owner.st_mode) | (0 if before else stat.S_IWUSR)

        def write(file: BinaryIO) -> None:
            _write_verified(file, result, target, new, picture)
            _keep_owner(file, owner, target, required=before is not None)
            _check_unchanged(target, before)

        atomic_write(target, write, mode=mode)
    except MetadataError as error:
        raise MetadataError(target, f"keywords not written: {error.problem}",
                            error.fix or "The file is unchanged") from None  # fmt: skip
    except StorageError as error:
        raise MetadataError(target, f"keywords not written: {error}", "The file is unchanged"
                            ) from None  # fmt: skip
    except Exception as error:  # exiv2, OS: anything, as long as the original is safe
        raise MetadataError(target, f"keywords not written: {error}",
                            "The file is unchanged") from None  # fmt: skip
    return False


def _open_target(target: Path, photo: Path, *, embed: bool) -> tuple[os.stat_result | None, Any]:
    """`target`'s status (None: a new sidecar of `photo`) and its content as an exiv2
    image in memory (libexiv2 rewrites a file several times faster there than on disk).
    Raises `MetadataError` for a file phototag must not rewrite: read-only, not read
    completely, or (embedding) of a type libexiv2 cannot write."""
    before = _status(target)
    if before is None:
        return None, _exiv2.new_sidecar(target, _seed(photo))
    _check_not_read_only(target, before, embed=embed)
    try:
        data = target.read_bytes()
    except OSError as error:
        raise MetadataError(target, f"cannot read it ({error.strerror})") from None
    if not embed:
        return before, _exiv2.open_sidecar(target, data)
    if is_raw(target):
        raise MetadataError(
            target, "phototag does not write into camera RAW files",
            f"Leave out --embed: the sidecar {sidecar_paths(target)[0].name} is what "
            "darktable, digiKam and Lightroom read for RAW files",
        )  # fmt: skip
    image = _exiv2.open_image(target, data, whole=True)
    if not _exiv2.can_write_xmp(image):
        raise MetadataError(
            target,
            f"cannot embed keywords in this file type ({image.mimeType()}): the metadata "
            "library can only read it",
            f"Leave out --embed to write the sidecar {sidecar_paths(target)[0].name} instead",
        )
    return before, image


def _seed(photo: Path) -> Any:
    """`photo` opened to start its new sidecar with a copy of its XMP (rating, label,
    description...), or None (an empty sidecar) when its metadata cannot be read
    completely: a damaged part could hold XMP that the copy would miss."""
    try:
        return _exiv2.open_image(photo, whole=True)
    except MetadataError:
        return None


def _status(target: Path) -> os.stat_result | None:
    """`target`'s status (following a link), or None if there is no such file."""
    try:
        return os.stat(target)
    except FileNotFoundError:
        return None
    except OSError as error:  # a name too long, a loop of links, no permission
        raise MetadataError(target, f"cannot look at it ({error.strerror})") from None


def _check_not_read_only(target: Path, status: os.stat_result, *, embed: bool) -> None:
    """A file without its owner's write permission, or one this process may not write,
    is the user saying "do not touch": phototag never replaces it (even as root)."""
    if status.st_mode & stat.S_IWUSR and os.access(target, os.W_OK):
        return
    if embed:
        raise MetadataError(target, "read-only: phototag does not change read-only photos",
                            "Make it writable (chmod u+w) to let phototag change it; without "
                            "--embed, a sidecar is written instead")  # fmt: skip
    raise MetadataError(target, "read-only: phototag does not change read-only sidecars",
                        "Make it writable (chmod u+w) to let phototag change it")  # fmt: skip


def _write_verified(
    file: BinaryIO, data: bytes, target: Path, expected: KeywordFields, picture: Any
) -> None:
    """Write `data` to the temporary `file`, read it back and check it (`atomic_write`
    makes it durable before it replaces the target)."""
    file.write(data)
    file.flush()
    written = os.pread(file.fileno(), len(data) + 1, 0)
    if written != data:
        raise MetadataError(target, "reading the temporary copy back gave other bytes")
    _verify(target, written, expected, picture)


def _verify(target: Path, data: bytes, expected: KeywordFields, picture: Any) -> None:
    """The written copy of `target`: same keyword fields, and (photos) the same picture."""
    with _exiv2.LOCK:
        image = (_exiv2.open_image(target, data, whole=True) if picture is not None
                 else _exiv2.open_sidecar(target, data))  # fmt: skip
        found = _exiv2.read_fields(image)
        described = _exiv2.describe_image(image) if picture is not None else None
    keys = ("subject", "hierarchical", "digikam", "iptc")
    if any(getattr(found, k) != getattr(expected, k) for k in keys) or [
        a.label for a in found.automatic
    ] != [a.label for a in expected.automatic]:
        raise MetadataError(target, "reading the written copy back gave other keywords")
    if picture is not None and described != picture:
        raise MetadataError(target, "the written copy is no longer the same image")


def _keep_owner(file: BinaryIO, owner: os.stat_result, target: Path, *, required: bool) -> None:
    """Give the temporary file `owner`'s user and group, so that replacing `target` does
    not hand it to whoever runs phototag; where that is not allowed, a `required` owner
    (an existing target's) stops the write."""
    now = os.fstat(file.fileno())
    if (now.st_uid, now.st_gid) == (owner.st_uid, owner.st_gid):
        return
    try:
        os.fchown(file.fileno(), owner.st_uid, owner.st_gid)
    except OSError:
        if required:
            raise MetadataError(target, "it belongs to another user or group, and replacing "
                                "it would make it yours", "Run phototag as its owner"
                                ) from None  # fmt: skip


def _check_unchanged(target: Path, before: os.stat_result | None) -> None:
    """Refuse to replace a file another program changed while we were writing."""
    now = _status(target)
    if (before is None) != (now is None) or (
        before is not None and now is not None
        and (before.st_mtime_ns, before.st_size) != (now.st_mtime_ns, now.st_size)
    ):  # fmt: skip
        raise MetadataError(target, "changed by another program while writing; run again")


# ------------------------------------------------------------------ stale temporaries


def remove_stale_temporaries(folder: str | os.PathLike[str], *, older_than: float = 600.0
                             ) -> list[Path]:  # fmt: skip
    """Remove the temporary files a killed phototag run left in `folder`: regular files
    named as phototag names its temporaries (``.tmpXXXXXXXX.phototag-tmp``, and
    ``.photo.jpg.XXXXXXXX.phototag-tmp`` of earlier versions) and not modified for
    `older_than` seconds (a running write finishes well within that). Nothing else is
    touched; files that cannot be removed are left. Returns the removed files."""
    removed: list[Path] = []
    cutoff = time.time() - older_than
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not _TEMPORARY.fullmatch(entry.name):
            continue
        try:
            status = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(status.st_mode) and status.st_mtime < cutoff:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    if removed:
        fsync_directory(folder)
    return removed
