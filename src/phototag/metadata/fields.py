"""The keyword fields phototag reads and writes, and their conventions.

- ``dc:subject`` (``Xmp.dc.subject``): bag of flat keywords; every tool reads it.
- ``lr:hierarchicalSubject``: bag, levels joined by ``|`` (Lightroom, darktable).
- ``digiKam:TagsList``: seq, levels joined by ``/`` (digiKam).
- IPTC ``Keywords`` (``Iptc.Application2.Keywords``): repeatable, at most 64 bytes each.
- ``phototag:AutoKeywords``: seq of structs (label, score, model, date), the keywords
  phototag wrote, in the namespace ``http://phototag.dev/ns/1.0/``.

A hierarchical entry such as ``Places|Beach`` counts as the keyword ``Beach`` (its leaf).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from phototag.errors import PhototagError
from phototag.filenames import printable

NAMESPACE = "http://phototag.dev/ns/1.0/"
PREFIX = "phototag"

SUBJECT = "Xmp.dc.subject"
HIERARCHICAL = "Xmp.lr.hierarchicalSubject"
DIGIKAM = "Xmp.digiKam.TagsList"
IPTC_KEYWORDS = "Iptc.Application2.Keywords"
IPTC_CHARSET = "Iptc.Envelope.CharacterSet"
IPTC_UTF8 = "\x1b%G"
IPTC_MAX_BYTES = 64
AUTOMATIC = f"Xmp.{PREFIX}.AutoKeywords"
AUTOMATIC_FIELDS = ("label", "score", "model", "date")

# separator between hierarchy levels, per hierarchical field
SEPARATORS = {HIERARCHICAL: "|", DIGIKAM: "/"}


class MetadataError(PhototagError, OSError):
    """Keywords could not be read from or written to a photo; names the file (printable,
    see `printable`) and the fix. `path` is the file's real name."""

    def __init__(self, path: str | Path, problem: str, fix: str = "") -> None:
        self.path = Path(path)
        self.problem = problem
        self.fix = fix
        message = f"{path}: {problem}"
        if fix:
            message += f". {fix}"
        super().__init__(printable(message))


@dataclass(frozen=True)
class AutoKeyword:
    """A keyword phototag wrote, with where it came from."""

    label: str
    score: float
    model: str
    date: str


def leaf(term: str, separator: str) -> str:
    """The last level of a hierarchical keyword (``Places|Beach`` -> ``Beach``)."""
    return term.rsplit(separator, 1)[-1].strip()


def unique_casefold(terms: Iterable[str]) -> list[str]:
    """`terms` without blanks and case-insensitive repeats, first spelling kept."""
    seen: set[str] = set()
    out = []
    for term in terms:
        key = term.strip().casefold()
        if key and key not in seen:
            seen.add(key)
            out.append(term.strip())
    return out


@dataclass(frozen=True)
class KeywordFields:
    """The keyword fields of one metadata holder: a photo's own metadata or a sidecar.

    ``None`` means the field is absent (phototag adds to a hierarchical field or to
    IPTC only when the holder already uses it); `iptc_utf8` says whether the holder
    declares its IPTC text as UTF-8.
    """

    subject: tuple[str, ...] = ()
    hierarchical: tuple[str, ...] | None = None
    digikam: tuple[str, ...] | None = None
    iptc: tuple[str, ...] | None = None
    iptc_utf8: bool = False
    automatic: tuple[AutoKeyword, ...] = field(default=())

    def terms(self) -> list[str]:
        """Every keyword of every field as leaf terms, case-insensitively unique."""
        terms = list(self.subject)
        terms += [leaf(t, "|") for t in self.hierarchical or ()]
        terms += [leaf(t, "/") for t in self.digikam or ()]
        terms += list(self.iptc or ())
        return unique_casefold(terms)

    def automatic_labels(self) -> list[str]:
        return [a.label for a in self.automatic]

    def user_terms(self, automatic: Iterable[str] = ()) -> list[str]:
        """Terms not written by phototag (not in this holder's or `automatic`'s labels)."""
        ours = {x.casefold() for x in (*self.automatic_labels(), *automatic)}
        return [t for t in self.terms() if t.casefold() not in ours]

    def edited(
        self, remove: Sequence[str], add: Sequence[str], automatic: Sequence[AutoKeyword]
    ) -> KeywordFields:
        """These fields with the exact entries `remove` dropped and `add` appended.

        Hierarchical fields and IPTC change only where present; IPTC takes only
        keywords it can hold (ASCII unless declared UTF-8, at most 64 bytes).
        """
        gone = set(remove)

        def edit(values: tuple[str, ...], extra: Sequence[str]) -> tuple[str, ...]:
            kept = [v for v in values if v not in gone]
            return (*kept, *(a for a in extra if a not in kept))

        def fits_iptc(term: str) -> bool:
            data = term.encode("utf-8")
            return len(data) <= IPTC_MAX_BYTES and (self.iptc_utf8 or term.isascii())

        def optional(values: tuple[str, ...] | None, extra: Sequence[str]):
            return None if values is None else edit(values, extra)

        return replace(
            self,
            subject=edit(self.subject, add),
            hierarchical=optional(self.hierarchical, add),
            digikam=optional(self.digikam, add),
            iptc=optional(self.iptc, [a for a in add if fits_iptc(a)]),
            automatic=tuple(automatic),
        )

    def seeded_sidecar(self) -> KeywordFields:
        """A new sidecar's fields: the user's keywords of this (embedded) holder, so tools
        that prefer the sidecar still see them; phototag's own entries are left out."""
        ours = set(self.automatic_labels())
        iptc_extra = [t for t in self.iptc or () if t.casefold() not in
                      {s.casefold() for s in self.subject}]  # fmt: skip

        def mine(values: tuple[str, ...] | None) -> tuple[str, ...] | None:
            return None if values is None else tuple(v for v in values if v not in ours)

        return KeywordFields(
            subject=tuple(v for v in (*self.subject, *iptc_extra) if v not in ours),
            hierarchical=mine(self.hierarchical),
            digikam=mine(self.digikam),
        )
