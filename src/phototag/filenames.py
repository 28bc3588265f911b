"""File names in text: a name on Linux is bytes and need not be valid UTF-8.

Python hands such a name over as a ``str`` whose undecodable bytes are surrogate escapes
(`os.fsdecode`), which no UTF-8 text can hold. `printable` shows each such byte as
``\\xNN`` (terminals, CSV, HTML, error messages); `json_text` writes it as the JSON
escape ``\\udcNN``, which `json.loads` and `os.fsencode` turn back into the exact bytes
(docs/batches.md, "File names"). `to_database` keeps such a name in SQLite as its exact
bytes, `from_database` gives it back.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

__all__ = ["from_database", "json_text", "printable", "to_database"]

_SURROGATE = re.compile("[\ud800-\udfff]")


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


def to_database(name: str) -> str | bytes:
    """`name` as an SQLite value: TEXT when it is valid UTF-8, else its exact bytes (a
    BLOB), so a file name that is not UTF-8 is kept losslessly."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name)
    return name


def from_database(value: str | bytes) -> str:
    """A `to_database` value back as the ``str`` Python names the file by."""
    return os.fsdecode(value) if isinstance(value, bytes) else value
