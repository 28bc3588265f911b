"""The keyword fields phototag reads and writes, and their conventions.

- ``dc:subject`` (``Xmp.dc.subject``): bag of flat keywords; every tool reads it.
- ``lr:hierarchicalSubject``: bag, levels joined by ``|`` (Lightroom, darktable).
- ``digiKam:TagsList``: seq, levels joined by ``/`` (digiKam).
- IPTC ``Keywords`` (``Iptc.Application2.Keywords``): repeatable, at most 64 bytes each.
- ``phototag:AutoKeywords``: seq of structs (label, score, model, date), the keywords
  phototag wrote, in the namespace ``http://phototag.dev/ns/1.0/``.

A hierarchical entry such as ``Places|Beach`` counts as the keyword ``Beach`` (its leaf).
phototag's own keywords are labels, plain (``cat``) or paths (``Animals|Pets|Cat``), and
each goes into every field: its leaf into ``dc:subject`` and IPTC, its path (a plain label
is its own path) into ``lr:hierarchicalSubject`` and, levels joined by ``/``, into
``digiKam:TagsList``.
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


def label_path(label: str) -> str:
    """`label` as a clean path: levels stripped, empty levels dropped (``a | |b`` -> ``a|b``)."""
    return "|".join(level.strip() for level in label.split("|") if level.strip())


def entry(label: str, key: str) -> str | None:
    """What phototag writes for `label` (see `label_path`) into the field `key`; None
    where that field cannot hold it (a level with ``/`` in ``digiKam:TagsList``)."""
    path = label_path(label)
    if key == HIERARCHICAL:
        return path
    if key == DIGIKAM:
        levels = path.split("|")
        return None if any("/" in level for level in levels) else "/".join(levels)
    return leaf(path, "|")


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

    ``None`` means the field is absent; for `iptc`, that the holder cannot hold IPTC
    (a sidecar, a WebP file). `iptc_utf8` says whether IPTC text may be UTF-8: the holder
    declares it so, or has no IPTC data yet (phototag then starts it declared UTF-8).
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
        """Terms not written by phototag (not the leaf of this holder's or `automatic`'s
        labels)."""
        ours = {leaf(x, "|").casefold() for x in (*self.automatic_labels(), *automatic)}
        return [t for t in self.terms() if t.casefold() not in ours]

    def holds(self, label: str) -> bool:
        """Whether any field holds phototag's entry for `label`."""
        return any(entry(label, key) in (values or ()) for key, values in (
            (SUBJECT, self.subject), (HIERARCHICAL, self.hierarchical),
            (DIGIKAM, self.digikam), (IPTC_KEYWORDS, self.iptc)))  # fmt: skip

    def edited(
        self, remove: Sequence[str], add: Sequence[str], automatic: Sequence[AutoKeyword]
    ) -> KeywordFields:
        """These fields with the entries of the labels `remove` dropped from every field
        and those of `add` appended to every field (see `entry`); other entries stay.

        IPTC changes only where the holder can hold it, and takes only keywords it can
        hold (ASCII unless UTF-8, see `iptc_utf8`; at most 64 bytes).
        """

        def fits_iptc(term: str) -> bool:
            data = term.encode("utf-8")
            return len(data) <= IPTC_MAX_BYTES and (self.iptc_utf8 or term.isascii())

        def edit(key: str, values: tuple[str, ...] | None) -> tuple[str, ...]:
            gone = {entry(label, key) for label in remove}
            kept = [v for v in values or () if v not in gone]
            extra = [e for label in add if (e := entry(label, key)) is not None
                     and (key != IPTC_KEYWORDS or fits_iptc(e))]  # fmt: skip
            return (*kept, *(e for e in dict.fromkeys(extra) if e not in kept))

        return replace(
            self,
            subject=edit(SUBJECT, self.subject),
            hierarchical=edit(HIERARCHICAL, self.hierarchical) or None,  # empty: absent
            digikam=edit(DIGIKAM, self.digikam) or None,
            iptc=None if self.iptc is None else edit(IPTC_KEYWORDS, self.iptc),
            automatic=tuple(automatic),
        )

    def seeded_sidecar(self) -> KeywordFields:
        """A new sidecar's fields: the user's keywords of this (embedded) holder, its
        IPTC-only ones added to ``dc:subject``, so tools that prefer the sidecar still see
        them; phototag's own entries are left out."""
        mine = self.edited(self.automatic_labels(), [], [])
        flat = {term.casefold() for term in mine.subject}
        extra = [term for term in mine.iptc or () if term.casefold() not in flat]
        return KeywordFields(subject=(*mine.subject, *extra), hierarchical=mine.hierarchical,
                             digikam=mine.digikam)  # fmt: skip
