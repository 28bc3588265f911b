"""The keywords in a photo's metadata, for the service: read them, write decisions into them.

Reading and writing go through `phototag.metadata`, the reader and the verified atomic
writer of ``phototag annotate --write xmp``: a decision is written into the photo's XMP
sidecar with phototag's provenance, so ``phototag untag`` takes it out again, and a
keyword the user wrote themselves is never removed. Those functions work on file
names; `PhotoFile.checked` makes sure, right before each use, that the name still leads
to the file the service opened inside its folder and that no existing sidecar leads out.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from phototag.app.web.files import Opened
from phototag.app.web.security import RequestRefused
from phototag.metadata import (
    KeywordChange,
    MetadataError,
    PhotoKeywords,
    Provenance,
    read_keywords,
    sidecar_for_writing,
    sidecar_paths,
    write_keywords,
)
from phototag.metadata.fields import label_path, leaf
from phototag.metadata.reading import read_holders

#: The score written for a keyword the user typed (it has none from the model).
ADDED_SCORE = 1.0


def keyword_key(label: str) -> str:
    """How keywords are compared: by leaf, case-insensitively (as the metadata writer)."""
    return leaf(label_path(label), "|").casefold()


@dataclass(frozen=True)
class PhotoFile:
    """A photo by its real name inside the folder `root`, and how replies call it."""

    root: Path
    path: Path
    name: str

    @classmethod
    def checked(cls, root: Path, opened: Opened, name: str) -> PhotoFile:
        """The photo `opened` (inside `root`) by its name; 409 if that name now leads to
        another file, 403 if the photo or an existing sidecar of it leads out of `root`."""
        photo = cls(root, root / os.fsdecode(opened.path), name)
        try:
            same = os.path.samestat(os.stat(photo.path), os.fstat(opened.fd))
        except OSError:
            same = False
        if not same:
            raise RequestRefused.folder_changed(name)
        photo.check_inside()
        return photo

    def check_inside(self) -> None:
        """403 unless the photo and its existing sidecars resolve to files inside `root`;
        409 if a link on the way changes while it is resolved."""
        for path in (self.path, *sidecar_paths(self.path)):
            if not (path == self.path or os.path.lexists(path)):
                continue
            try:
                resolved = path.resolve()
            except OSError:  # a link removed between reading and following it
                raise RequestRefused.folder_changed(self.shown(path)) from None
            if not resolved.is_relative_to(self.root):
                raise RequestRefused(403, f"{self.shown(path)}: outside the served folder")

    def shown(self, path: str | os.PathLike[str]) -> str:
        """`path` (the photo or a sidecar) as replies name it: never a server path."""
        names = dict(zip(sidecar_paths(self.path), map(str, sidecar_paths(self.name)), strict=True))
        names[self.path] = self.name
        return names.get(Path(path), Path(path).name)

    @contextmanager
    def reported(self) -> Iterator[None]:
        """A `MetadataError` (or an `OSError` around it) as a 422 that names the file as
        the client knows it, never by its server path."""
        try:
            yield
        except MetadataError as error:
            problem = error.problem.replace(f"{self.root}{os.sep}", "")
            fix = f". {error.fix}" if error.fix else ""
            raise RequestRefused(422, f"{self.shown(error.path)}: {problem}{fix}") from None
        except OSError as error:
            name = self.shown(error.filename or self.path)
            why = error.strerror or "cannot be read"
            raise RequestRefused(422, f"{name}: its keywords cannot be read ({why})") from None

    def keywords(self) -> PhotoKeywords:
        """The photo's keywords (`read_keywords`); 422 if they cannot be read completely."""
        with self.reported():
            return read_keywords(self.path)

    def apply(
        self, decisions: Sequence[tuple[str, str, float | None]], provenance: Provenance
    ) -> KeywordChange | None:
        """Write ``(label, decision, score)`` decisions into the photo's sidecar.

        phototag's keywords already in the sidecar stay unless rejected; accepted ones
        are added (the writer leaves out those the photo already has). None when the
        sidecar's keywords would not change. 422, the files unchanged, when the photo
        or a sidecar cannot be read completely or the write fails.
        """
        with self.reported():
            target = sidecar_for_writing(self.path)
            holder = read_holders(self.path).get(target)
            earlier = holder.automatic if holder else ()
            ours = {keyword_key(a.label): (a.label, a.score) for a in earlier}
            wanted = dict(ours)
            for label, decision, score in decisions:
                key = keyword_key(label)
                if decision == "rejected":
                    wanted.pop(key, None)
                else:
                    wanted.setdefault(key, (label, ADDED_SCORE if score is None else score))
            if wanted.keys() == ours.keys():
                return None
            self.check_inside()
            return write_keywords(self.path, list(wanted.values()), provenance)


def all_keywords(keywords: PhotoKeywords | None, accepted: Iterable[str] = ()) -> set[str]:
    """The comparison keys (`keyword_key`) of a photo's keywords and of `accepted` labels."""
    terms = [*(keywords.keywords if keywords else ()), *accepted]
    return {keyword_key(t) for t in terms}
