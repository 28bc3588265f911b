"""Writing phototag's keywords into sidecars or photos, and removing them (untag).

Every write goes to a temporary copy in the target's folder, is read back and
checked, and replaces the target with one ``os.replace``; on any failure the target
is untouched and the error names it. The target keeps its permission bits; its
modification time becomes the time of the write (backup and sync tools then notice
the change).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phototag.metadata import _exiv2
from phototag.metadata.fields import AutoKeyword, KeywordFields, MetadataError
from phototag.metadata.reading import read_holders, sidecar_for_writing, sidecar_paths


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
        return f"{verb} {text}" if self.changed else text


def write_keywords(
    path: str | os.PathLike[str],
    tags: Sequence[tuple[str, float]],
    provenance: Provenance,
    *,
    embed: bool = False,
    dry_run: bool = False,
) -> KeywordChange:
    """Write suggested ``(label, score)`` keywords of one photo, with their provenance.

    Written to the photo's XMP sidecar (see `sidecar_for_writing`), or with `embed`
    into the photo (JPEG, TIFF, PNG, WebP; HEIC and other read-only formats raise
    `MetadataError`). Keywords the photo already has (case-insensitive, any field,
    any sidecar) are never written again or changed. phototag's keywords from an
    earlier write to the same file are replaced by these. With `dry_run`, nothing is
    written and the returned change says what would be.
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
    wanted: dict[str, tuple[str, float]] = {}
    kept = []
    for label, score in tags:
        key = label.strip().casefold()
        if not key or key in wanted:
            continue
        if key in user:
            kept.append(label)
        else:
            wanted[key] = (label.strip(), float(score))
    present = {t.casefold() for t in fields.terms()}
    previous = {a.label.casefold(): a for a in fields.automatic}
    added = [label for key, (label, _) in wanted.items() if key not in present]
    removed = [a.label for key, a in previous.items() if key not in wanted]
    new_auto = [AutoKeyword(previous[k].label if k in previous else label, score,
                            provenance.model, provenance.date)
                for k, (label, score) in wanted.items()]  # fmt: skip
    change = KeywordChange(photo, target, tuple(added), tuple(removed), tuple(kept), dry_run)
    same_models = {(a.label, a.model) for a in fields.automatic} == {
        (a.label, a.model) for a in new_auto
    }
    if dry_run or (not change.changed and same_models):
        return change
    new = fields.edited(removed, added, new_auto)
    _commit(photo, target, new, embed=embed)
    return change


def untag(path: str | os.PathLike[str], *, dry_run: bool = False) -> list[KeywordChange]:
    """Remove every keyword phototag wrote (and its provenance) from a photo and its
    sidecars; nothing else changes. A sidecar left with no metadata at all is deleted.
    Returns one change per file that had phototag keywords."""
    photo = Path(path)
    changes = []
    for holder, fields in read_holders(photo).items():
        if not fields.automatic:
            continue
        ours = fields.automatic_labels()
        present = {t for t in (*fields.subject, *(fields.hierarchical or ()),
                               *(fields.digikam or ()), *(fields.iptc or ()))}  # fmt: skip
        removed = tuple(label for label in ours if label in present)
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
    exists = target.is_file()
    before = os.stat(target) if exists else None
    if embed:
        _check_writable(target)
    try:
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                        suffix=".phototag-tmp")  # fmt: skip
    except OSError as error:
        raise MetadataError(target, f"keywords not written: cannot create a temporary file "
                            f"next to it ({error.strerror})",
                            "Check that its folder is writable. The file is unchanged.",
                            ) from None  # fmt: skip
    os.close(handle)
    temporary = Path(name)
    try:
        # libexiv2 rewrites the file in memory (several times faster than on disk); the
        # result goes to the temporary file, which is read back from disk to verify it
        data = target.read_bytes() if exists else b""
        image = _exiv2.open_bytes(data, target) if exists else _exiv2.new_sidecar(target)
        old = _exiv2.read_fields(image)
        expected = _exiv2.describe_image(image) if embed else None
        _exiv2.apply_fields(image, old, new)
        if not embed and _exiv2.xmp_is_empty(image):  # nothing left: remove the sidecar
            _check_unchanged(target, before)
            temporary.unlink()
            target.unlink(missing_ok=True)
            return True
        temporary.write_bytes(_exiv2.image_bytes(image))
        del image, data
        _verify(temporary, new, expected)
        _check_unchanged(target, before)
        shutil.copymode(target if exists else photo, temporary)
        os.replace(temporary, target)
    except MetadataError as error:
        temporary.unlink(missing_ok=True)
        raise MetadataError(target, f"keywords not written: {error.problem}",
                            "The file is unchanged.") from None  # fmt: skip
    except Exception as error:  # exiv2, OS: anything, as long as the original is safe
        temporary.unlink(missing_ok=True)
        raise MetadataError(target, f"keywords not written: {error}",
                            "The file is unchanged.") from None  # fmt: skip
    return False


def _check_writable(target: Path) -> None:
    image = _exiv2.open_image(target)
    if not _exiv2.can_write_xmp(image):
        kind = image.mimeType()
        raise MetadataError(
            target,
            f"cannot embed keywords in this file type ({kind}): the metadata library "
            "can only read it",
            f"Leave out --embed to write the sidecar {sidecar_paths(target)[0].name} instead",
        )


def _verify(temporary: Path, expected: KeywordFields, picture: Any) -> None:
    """Read the written copy back: same keyword fields, and (photos) the same picture."""
    image = _exiv2.open_image(temporary)
    found = _exiv2.read_fields(image)
    keys = ("subject", "hierarchical", "digikam", "iptc")
    if any(getattr(found, k) != getattr(expected, k) for k in keys) or [
        a.label for a in found.automatic
    ] != [a.label for a in expected.automatic]:
        raise MetadataError(temporary, "reading the written copy back gave other keywords")
    if picture is not None and _exiv2.describe_image(image) != picture:
        raise MetadataError(temporary, "the written copy is no longer the same image")


def _check_unchanged(target: Path, before: os.stat_result | None) -> None:
    """Refuse to replace a file another program changed while we were writing."""
    now = os.stat(target) if target.exists() else None
    if (before is None) != (now is None) or (
        before is not None and now is not None
        and (before.st_mtime_ns, before.st_size) != (now.st_mtime_ns, now.st_size)
    ):  # fmt: skip
        raise MetadataError(target, "changed by another program while writing; run again")
