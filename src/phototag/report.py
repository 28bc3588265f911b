"""How a batch run shows its results: file names in any text, and one HTML page.

A file name on Linux is bytes and need not be valid UTF-8; Python hands such a name over
as a ``str`` whose undecodable bytes are surrogate escapes (`os.fsdecode`), which no
UTF-8 text can hold. `printable` shows each such byte as ``\\xNN`` (for terminals, CSV
and HTML); `json_text` writes it as a ``\\udcNN`` escape, which Python's `json.loads`
and `os.fsencode` turn back into the exact bytes (docs/batches.md, "File names").

The HTML page embeds every thumbnail as a small base64 JPEG (made with `phototag.imaging`),
has its style inline and no script at all (its Content-Security-Policy forbids
scripts and every outside resource), so it opens from anywhere, offline, and mails as
one file. Every text taken from the run (file names, keywords, error messages) is
HTML-escaped. Rows are spooled to a temporary file while the run goes, so memory stays
bounded on any library size; the page itself is written atomically at the end.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from phototag.fileio import atomic_write
from phototag.imaging import load_image

__all__ = ["HtmlReport", "json_text", "printable", "thumbnail_data_uri"]

_SURROGATE = re.compile("[\ud800-\udfff]")

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}
table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.4em;text-align:left;vertical-align:top}
td.thumb{width:1%}
img{display:block;border-radius:3px}
.path{font-family:monospace;word-break:break-all}
.tag{display:inline-block;background:#eef;border-radius:3px;padding:0 .3em;margin:.1em}
.score{color:#666;font-size:.85em}
.error{color:#a00}
ul.summary{list-style:none;padding:0}
"""
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def thumbnail_data_uri(path: str | os.PathLike[str], size: int = 160, quality: int = 80) -> str:
    """A ``data:image/jpeg;base64,...`` URI of the photo, longer side at most `size`.

    Raises `phototag.imaging.ImageLoadError` when the file cannot be decoded.
    """
    image = load_image(path, max_side=size)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def printable(text: str) -> str:
    """`text` with every byte of a file name that is not UTF-8 as ``\\xNN``, as UTF-8
    text can show it: ``"bad_\\udcff.jpg"`` (from ``b"bad_\\xff.jpg"``) becomes
    ``"bad_\\\\xff.jpg"``; valid text is returned unchanged."""
    if not _SURROGATE.search(text):
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte (not from a name)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def json_text(value: object, **options: Any) -> str:
    """``json.dumps(value, ensure_ascii=False, **options)`` that any file name survives:
    a surrogate escape becomes the JSON escape ``\\udcNN`` (plain ASCII), which
    `json.loads` reads back as the same ``str`` (and `os.fsencode` as the name's bytes)."""
    text = json.dumps(value, ensure_ascii=False, **options)
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def _escape(text: object) -> str:
    return html.escape(printable(str(text)), quote=True)


class HtmlReport:
    """Collects one row per photo and writes the page on `close`.

    >>> with HtmlReport("report.html", title="annotate ~/Pictures") as report:  # doctest: +SKIP
    ...     report.add("a.jpg", [("sky", 0.91)])
    ...     report.add("b.jpg", error="b.jpg: the file is empty (0 bytes)")
    ...     report.summary = ["2 photos, 1 tagged, 1 skipped"]
    """

    def __init__(
        self, path: str | os.PathLike[str], *, title: str = "phototag report", thumbnail: int = 160
    ) -> None:
        self.path = Path(path)
        self.title = title
        self.thumbnail = thumbnail
        self.summary: list[str] = []
        self.n_photos = 0
        self._rows: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self._failures: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115

    def add(
        self,
        path: str | os.PathLike[str],
        tags: Sequence[tuple[str, float]] = (),
        error: str | None = None,
    ) -> None:
        """One photo: its keywords best first, or the reason it was skipped."""
        name = _escape(os.fspath(path))
        if error is not None:
            self._failures.write(
                f'<tr><td class="path">{name}</td><td class="error">{_escape(error)}</td></tr>\n'
            )
            return
        self.n_photos += 1
        try:
            image = f'<img src="{thumbnail_data_uri(path, self.thumbnail)}" alt="{name}">'
        except OSError as problem:  # changed or vanished since it was annotated
            image = f'<span class="error">{_escape(problem)}</span>'
        keywords = "".join(
            f'<span class="tag">{_escape(label)} <span class="score">{score:.3f}</span></span> '
            for label, score in tags
        )
        self._rows.write(
            f'<tr><td class="thumb">{image}</td><td class="path">{name}</td>'
            f"<td>{keywords or '&ndash;'}</td></tr>\n"
        )

    def close(self) -> None:
        """Write the page (atomically) and drop the spooled rows."""
        if self._rows.closed:
            return
        try:
            atomic_write(self.path, self._write_page)
        finally:
            self._discard()

    def _discard(self) -> None:
        self._rows.close()
        self._failures.close()

    def _write_page(self, file: IO[bytes]) -> None:
        out = io.TextIOWrapper(file, encoding="utf-8", newline="\n")
        stamp = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        out.write(
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            f"<title>{_escape(self.title)}</title><style>{_STYLE}</style></head><body>\n"
            f"<h1>{_escape(self.title)}</h1>\n<p>written {_escape(stamp)}</p>\n"
        )
        if self.summary:
            items = "".join(f"<li>{_escape(line)}</li>" for line in self.summary)
            out.write(f'<ul class="summary">{items}</ul>\n')
        out.write(f"<h2>Keywords ({self.n_photos} photos)</h2>\n<table>\n")
        out.write("<tr><th></th><th>photo</th><th>keywords (score)</th></tr>\n")
        self._copy(self._rows, out)
        out.write("</table>\n")
        self._failures.seek(0)
        if self._failures.read(1):
            out.write("<h2>Skipped</h2>\n<table>\n<tr><th>photo</th><th>reason</th></tr>\n")
            self._copy(self._failures, out)
            out.write("</table>\n")
        out.write("</body></html>\n")
        out.flush()
        out.detach()

    @staticmethod
    def _copy(source: IO[str], target: IO[str]) -> None:
        source.seek(0)
        while block := source.read(1 << 16):
            target.write(block)

    def __enter__(self) -> HtmlReport:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._discard()
