"""A reader for the WordNet 3.0 database files (``index.*``, ``data.*``, ``*.exc``).

The format is documented in wndb(5WN). In short:

- ``data.POS``: one synset per line, starting at the byte offset that identifies it:
  ``offset lex_filenum ss_type w_cnt(hex) [word lex_id(hex)]... p_cnt
  [pointer_symbol offset pos source/target(hex)]... [frames] | gloss``.
- ``index.POS``: one lemma per line, sorted: ``lemma pos synset_cnt p_cnt
  [pointer_symbol]... sense_cnt tagsense_cnt [synset_offset]...``, offsets in sense
  order (most frequent first).
- ``POS.exc``: irregular inflections, ``inflected base [base...]``.
- ``cntlist.rev``: ``sense_key sense_number tag_count`` (SemCor sense frequencies).

Lines starting with two spaces are the licence header. Adjective satellites
(``ss_type`` ``s``) live in ``data.adj``; their words may carry a syntactic marker
such as ``(a)`` or ``(ip)``, which is dropped. Lemmas are lower-cased, with ``_``
between the words of a collocation, as in the index files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from phototag.errors import DatasetFormatError, InvalidInputError
from phototag.features.embeddings._errors import MissingDependencyError

POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
_SS_TYPE_FILE = {"n": "n", "v": "v", "a": "a", "s": "a", "r": "r"}
_SENSE_KEY_POS = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}
_MARKER = re.compile(r"\((?:a|p|ip)\)$")
SEARCH_PATH = (
    "/usr/share/wordnet",
    "/usr/local/share/wordnet",
    "/usr/local/WordNet-3.0/dict",
    "/usr/share/wordnet/dict",
    "/opt/homebrew/share/wordnet",
)
INSTALL_HINT = (
    "Install them with `sudo apt-get install wordnet-base` (Debian/Ubuntu), or set the "
    "environment variable WORDNET_DIR to a directory holding index.noun, data.noun, "
    "index.verb, data.verb, index.adj, data.adj, index.adv and data.adv"
)

# WordNet's own lemmatisation rules (morph.c): suffix -> replacement, per POS.
_DETACHMENT = {
    "n": (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
          ("men", "man"), ("ies", "y")),
    "v": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""),
          ("ing", "e"), ("ing", "")),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "r": (),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Pointer:
    """A relation from a synset (or one of its words) to another synset."""

    symbol: str  # "@" hypernym, "~" hyponym, "#p" part holonym, ... (see wninput(5WN))
    pos: str  # file POS of the target: n, v, a, r
    offset: int
    source: int  # word number in the source synset, 0 for a semantic (synset) pointer
    target: int


@dataclass(frozen=True, slots=True)
class Synset:
    """One line of a ``data.POS`` file."""

    pos: str  # ss_type: n, v, a, s (adjective satellite) or r
    offset: int
    lexfile: int
    lemmas: tuple[str, ...]  # lower-case, "_" between words, in synset order
    lex_ids: tuple[int, ...]
    pointers: tuple[Pointer, ...]
    gloss: str

    @property
    def key(self) -> tuple[str, int]:
        """``(file POS, offset)``: unique id of the synset in the database."""
        return _SS_TYPE_FILE[self.pos], self.offset

    def related(self, *symbols: str) -> list[tuple[str, int]]:
        """Keys of the synsets this one points to with any of `symbols`."""
        return [(p.pos, p.offset) for p in self.pointers if p.symbol in symbols]


def find_wordnet_dir(directory: str | Path | None = None) -> Path:
    """The WordNet database directory: `directory`, ``$WORDNET_DIR`` or a system path."""
    if directory is not None:
        candidates, origin = [Path(directory).expanduser()], "the given directory"
    elif os.environ.get("WORDNET_DIR"):
        candidates, origin = [Path(os.environ["WORDNET_DIR"]).expanduser()], "WORDNET_DIR"
    else:
        candidates, origin = [Path(p) for p in SEARCH_PATH], "the system paths"
    for candidate in candidates:
        if all((candidate / f"{kind}.{name}").is_file()
               for name in POS_FILES.values() for kind in ("index", "data")):  # fmt: skip
            return candidate
    searched = ", ".join(str(c) for c in candidates)
    raise MissingDependencyError(
        "wordnet",
        f"the WordNet 3.0 database files (looked in {origin}: {searched})",
        INSTALL_HINT + ".",
    )


def parse_data_line(line: str, path: str | Path = "data", line_number: int | None = None) -> Synset:
    """Parse one synset line of a ``data.POS`` file."""
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    try:
        offset, lexfile, pos = int(fields[0]), int(fields[1]), fields[2]
        n_words = int(fields[3], 16)
        words = fields[4 : 4 + 2 * n_words : 2]
        lex_ids = tuple(int(x, 16) for x in fields[5 : 5 + 2 * n_words : 2])
        at = 4 + 2 * n_words
        n_pointers = int(fields[at])
        pointers = []
        for i in range(at + 1, at + 1 + 4 * n_pointers, 4):
            symbol, target, target_pos, numbers = fields[i : i + 4]
            pointers.append(
                Pointer(
                    symbol,
                    _SS_TYPE_FILE[target_pos],
                    int(target),
                    int(numbers[:2], 16),
                    int(numbers[2:], 16),
                )  # fmt: skip
            )
        if pos not in _SS_TYPE_FILE or len(words) != n_words or len(lex_ids) != n_words:
            raise ValueError
    except (ValueError, IndexError, KeyError):
        where = line_number
        raise DatasetFormatError(path, f"not a WordNet synset line: {line[:80]!r}", where) from None
    lemmas = tuple(_MARKER.sub("", word).lower() for word in words)
    return Synset(pos, offset, lexfile, lemmas, lex_ids, tuple(pointers), gloss.strip())


class WordNetDatabase:
    """Read access to a WordNet 3.0 database directory.

    Index files are parsed on first use of their POS; single synsets are read by
    seeking to their byte offset (how the format is meant to be used), so looking a
    few words up is fast; `iter_synsets` streams a whole data file.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = find_wordnet_dir(directory)
        self._index: dict[str, dict[str, tuple[int, ...]]] = {}
        self._exceptions: dict[str, dict[str, tuple[str, ...]]] = {}
        self._synsets: dict[tuple[str, int], Synset] = {}

    def __repr__(self) -> str:
        return f"WordNetDatabase({str(self.directory)!r})"

    def path(self, kind: str, pos: str) -> Path:
        return self.directory / f"{kind}.{POS_FILES[_SS_TYPE_FILE[pos]]}"

    # ----------------------------------------------------------------- index files
    def index(self, pos: str) -> dict[str, tuple[int, ...]]:
        """Lemma -> synset offsets in sense order, for one POS (n, v, a, r)."""
        pos = _check_pos(pos)
        if pos not in self._index:
            path = self.path("index", pos)
            entries: dict[str, tuple[int, ...]] = {}
            with open(path, encoding="utf-8") as file:
                for number, line in enumerate(file, start=1):
                    if line.startswith("  ") or not line.strip():
                        continue
                    fields = line.split()
                    try:
                        n_synsets, n_pointers = int(fields[2]), int(fields[3])
                        offsets = fields[6 + n_pointers : 6 + n_pointers + n_synsets]
                        entries[fields[0]] = tuple(int(o) for o in offsets)
                        if len(offsets) != n_synsets:
                            raise ValueError
                    except (ValueError, IndexError):
                        raise DatasetFormatError(
                            path, f"not a WordNet index line: {line[:80]!r}", number
                        ) from None
            self._index[pos] = entries
        return self._index[pos]

    def exceptions(self, pos: str) -> dict[str, tuple[str, ...]]:
        """Irregular inflection -> base forms (from ``POS.exc``; empty if absent)."""
        pos = _check_pos(pos)
        if pos not in self._exceptions:
            path = self.directory / f"{POS_FILES[pos]}.exc"
            table: dict[str, tuple[str, ...]] = {}
            if path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    fields = line.split()
                    if len(fields) >= 2:
                        table.setdefault(fields[0], tuple(fields[1:]))
            self._exceptions[pos] = table
        return self._exceptions[pos]

    def sense_counts(self) -> dict[tuple[str, str, int], int]:
        """``(lemma, POS, sense number) -> SemCor tag count`` from ``cntlist.rev``.

        Empty when the file is absent (it is optional).
        """
        return _sense_counts(self.directory / "cntlist.rev")

    # ----------------------------------------------------------------- synsets
    def synset_at(self, pos: str, offset: int) -> Synset:
        """The synset at byte `offset` of the data file of `pos`."""
        key = (_SS_TYPE_FILE[_check_pos(pos, satellite=True)], offset)
        if key not in self._synsets:
            path = self.path("data", key[0])
            with open(path, "rb") as file:
                file.seek(offset)
                line = file.readline().decode("utf-8")
            synset = parse_data_line(line, path)
            if synset.offset != offset:
                raise DatasetFormatError(
                    path, f"no synset starts at byte offset {offset} (found {synset.offset})"
                )
            self._synsets[key] = synset
        return self._synsets[key]

    def synsets(self, lemma: str, pos: str | None = None) -> list[Synset]:
        """Synsets of `lemma` (exact index form) in sense order; all POS when None."""
        lemma = lemma.lower().replace(" ", "_")
        result: list[Synset] = []
        for p in [_check_pos(pos)] if pos else list(POS_FILES):
            result.extend(self.synset_at(p, o) for o in self.index(p).get(lemma, ()))
        return result

    def synset(self, name: str) -> Synset:
        """A synset by its conventional name ``lemma.pos.NN``, e.g. ``"dog.n.01"``."""
        try:
            lemma, pos, number = name.rsplit(".", 2)
            sense = int(number)
            pos = _check_pos(pos, satellite=True)
        except (ValueError, InvalidInputError):
            raise InvalidInputError(
                "synset name", "'lemma.pos.NN' such as 'dog.n.01'", repr(name)
            ) from None
        offsets = self.index(_SS_TYPE_FILE[pos]).get(lemma.lower(), ())
        if not 1 <= sense <= len(offsets):
            raise InvalidInputError(
                "synset name",
                f"a sense of {lemma!r} between 1 and {len(offsets)}"
                if offsets
                else f"a lemma of WordNet's {POS_FILES[_SS_TYPE_FILE[pos]]} index",
                repr(name),
            )
        return self.synset_at(pos, offsets[sense - 1])

    def name(self, synset: Synset) -> str:
        """Conventional name ``lemma.pos.NN`` of `synset` (first lemma, its sense number)."""
        lemma = synset.lemmas[0]
        offsets = self.index(synset.key[0]).get(lemma, ())
        number = offsets.index(synset.offset) + 1 if synset.offset in offsets else 0
        return f"{lemma}.{synset.pos}.{number:02d}"

    def hypernyms(self, synset: Synset) -> list[Synset]:
        """Direct hypernyms, including instance hypernyms (``@``, ``@i``)."""
        return [self.synset_at(p, o) for p, o in synset.related("@", "@i")]

    def hypernym_closure(self, synset: Synset) -> list[Synset]:
        """All ancestors of `synset`, nearest first (breadth-first, without repeats)."""
        seen = {synset.key}
        order: list[Synset] = []
        frontier = [synset]
        while frontier:
            following = []
            for current in frontier:
                for parent in self.hypernyms(current):
                    if parent.key not in seen:
                        seen.add(parent.key)
                        order.append(parent)
                        following.append(parent)
            frontier = following
        return order

    def iter_synsets(self, pos: str) -> Iterator[Synset]:
        """Every synset of one data file (n, v, a incl. satellites, r), in file order."""
        path = self.path("data", _check_pos(pos))
        with open(path, encoding="utf-8") as file:
            for number, line in enumerate(file, start=1):
                if not line.startswith("  ") and line.strip():
                    yield parse_data_line(line, path, number)

    # ------------------------------------------------------------------ morphology
    def morphy(self, word: str, pos: str | None = None) -> list[str]:
        """Base forms of `word` that are WordNet lemmas, using WordNet's own rules.

        The word itself comes first when it is a lemma; then exception-list bases
        (``mice -> mouse``), then suffix rules (``dogs -> dog``). POS order n, v, a, r.
        """
        word = word.lower().replace(" ", "_")
        forms: list[str] = []
        for p in [_check_pos(pos)] if pos else list(POS_FILES):
            index = self.index(p)
            candidates = [word, *self.exceptions(p).get(word, ())]
            candidates += [word[: -len(old)] + new
                           for old, new in _DETACHMENT[p] if word.endswith(old)]  # fmt: skip
            forms.extend(c for c in candidates if c in index and c not in forms)
        return forms


def _check_pos(pos: str, satellite: bool = False) -> str:
    allowed = ("n", "v", "a", "s", "r") if satellite else ("n", "v", "a", "r")
    if pos not in allowed:
        raise InvalidInputError("pos", f"one of {', '.join(allowed)}", repr(pos))
    return pos


@lru_cache(maxsize=4)
def _sense_counts(path: Path) -> dict[tuple[str, str, int], int]:
    counts: dict[tuple[str, str, int], int] = {}
    if not path.is_file():
        return counts
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                lemma, rest = fields[0].split("%", 1)
                key = (lemma.lower(), _SENSE_KEY_POS[rest[0]], int(fields[1]))
                counts[key] = counts.get(key, 0) + int(fields[2])
            except (ValueError, IndexError, KeyError):
                raise DatasetFormatError(
                    path, f"not a 'sense_key sense_number count' line: {line[:80]!r}", number
                ) from None
    return counts
