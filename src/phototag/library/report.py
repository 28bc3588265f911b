"""A batch run as one self-contained HTML page: thumbnails, keywords, scores, failures.

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
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from phototag.fileio import atomic_write
from phototag.filenames import printable
from phototag.imaging import load_image

__all__ = ["HtmlReport", "thumbnail_data_uri"]

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
