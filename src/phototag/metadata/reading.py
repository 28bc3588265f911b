"""Reading a photo's keywords from its own metadata and its XMP sidecars.

Sidecars: ``photo.jpg.xmp`` (darktable, digiKam's default) and ``photo.xmp``
(Lightroom, digiKam's "compatible" option). Keywords from all of them are merged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from phototag.metadata import _exiv2
from phototag.metadata.fields import (
    AutoKeyword,
    KeywordFields,
    MetadataError,
    leaf,
    unique_casefold,
)

#: The longest file name (bytes) of the file systems photos live on (ext4, APFS, NTFS).
NAME_MAX = 255


def sidecar_paths(photo: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The two sidecar names a photo can have: ``photo.jpg.xmp`` then ``photo.xmp``."""
    photo = Path(photo)
    return photo.with_name(photo.name + ".xmp"), photo.with_suffix(".xmp")


def sidecar_for_writing(photo: str | os.PathLike[str]) -> Path:
    """The sidecar phototag writes: an existing one (``photo.jpg.xmp`` first), else a new
    ``photo.jpg.xmp``, the name darktable and digiKam read by default (``photo.xmp``, the
    Lightroom name, where that name would be longer than a file name can be)."""
    candidates = sidecar_paths(photo)
    fits = [p for p in candidates if len(os.fsencode(p.name)) <= NAME_MAX]
    return next((p for p in candidates if os.path.isfile(p)), fits[0] if fits else candidates[0])


def read_holders(photo: str | os.PathLike[str]) -> dict[Path, KeywordFields]:
    """Keyword fields per metadata holder: the photo itself, then each existing sidecar.

    Raises `MetadataError` if the photo or a sidecar exists but its keywords cannot be
    read completely (see `_exiv2.open_image` and `_exiv2.open_sidecar`).
    """
    photo = Path(photo)
    if not photo.is_file():
        raise MetadataError(photo, "no such photo", "Check the path.")
    with _exiv2.LOCK:
        holders = {photo: _exiv2.read_fields(_exiv2.open_image(photo))}
        for sidecar in dict.fromkeys(sidecar_paths(photo)):
            # os.path.isfile: a name too long to exist (a 252-byte photo name + ".xmp")
            if os.path.isfile(sidecar) and sidecar != photo:
                holders[sidecar] = _exiv2.read_fields(_exiv2.open_sidecar(sidecar))
    return holders


@dataclass(frozen=True)
class PhotoKeywords:
    """A photo's keywords: the ones people wrote and the ones phototag wrote.

    Attributes:
        path: the photo.
        user: keywords not written by phototag, as leaf terms (``Places|Beach`` is
            ``Beach``), case-insensitively unique, first spelling kept.
        automatic: phototag's keywords with their provenance; a label can be a path
            (``Animals|Pets|Cat``).
        sources: the files that were read (the photo, then its sidecars).
    """

    path: Path
    user: tuple[str, ...]
    automatic: tuple[AutoKeyword, ...]
    sources: tuple[Path, ...]

    @property
    def keywords(self) -> tuple[str, ...]:
        """All keywords as leaf terms, the user's first."""
        return tuple(unique_casefold([*self.user, *(leaf(a.label, "|") for a in self.automatic)]))


def keywords_of(photo: Path, holders: dict[Path, KeywordFields]) -> PhotoKeywords:
    """Merge the holders of `read_holders` into one `PhotoKeywords`."""
    automatic = [a for fields in holders.values() for a in fields.automatic]
    ours = [a.label for a in automatic]
    user = unique_casefold(t for fields in holders.values() for t in fields.user_terms(ours))
    seen: set[str] = set()
    unique_automatic = []
    for item in automatic:
        if item.label.casefold() not in seen:
            seen.add(item.label.casefold())
            unique_automatic.append(item)
    return PhotoKeywords(photo, tuple(user), tuple(unique_automatic), tuple(holders))


def read_keywords(photo: str | os.PathLike[str]) -> PhotoKeywords:
    """The keywords of `photo` from its XMP (``dc:subject``, ``lr:hierarchicalSubject``,
    ``digiKam:TagsList``), IPTC ``Keywords`` and XMP sidecars.

    Raises `MetadataError` (naming the file, what is wrong and what to do) when a file
    cannot be read completely: a sidecar that is not well-formed XMP, an XMP packet that
    does not parse, an IPTC block that does not decode.
    """
    photo = Path(photo)
    return keywords_of(photo, read_holders(photo))
