"""The only module that talks to libexiv2 (through python-exiv2): open, read, change.

python-exiv2 is used rather than pyexiv2 because pyexiv2 writes every XMP array as
``rdf:Seq`` (``dc:subject`` and ``lr:hierarchicalSubject`` are bags) and writes to
disk on each call; here all changes go to disk in one ``writeMetadata``.

libexiv2 reads what it can of a damaged file and only logs what it skipped (an XMP
packet that does not parse, an IPTC block that does not decode, an EXIF directory it
gave up on); writing such a file back would drop the skipped part. So every read
collects those messages and `open_image`/`open_sidecar` raise `MetadataError` for a
file phototag cannot read completely.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.parsers import expat

import exiv2

from phototag.metadata.fields import (
    AUTOMATIC,
    AUTOMATIC_FIELDS,
    DIGIKAM,
    HIERARCHICAL,
    IPTC_CHARSET,
    IPTC_KEYWORDS,
    IPTC_UTF8,
    NAMESPACE,
    PREFIX,
    SUBJECT,
    AutoKeyword,
    KeywordFields,
    MetadataError,
)

exiv2.XmpProperties.registerNs(NAMESPACE, PREFIX)

#: Held around every use of libexiv2: its XMP toolkit keeps global state that threads
#: must not use at once (concurrent writes failed with "XMP Toolkit error 101:
#: Unregistered schema namespace URI" about once in 3,000). Callers hold it over a
#: whole read or edit, and release it while the file is written and fsynced.
LOCK = threading.RLock()

_STRUCT_KEY = re.compile(rf"^{re.escape(AUTOMATIC)}\[(\d+)\]/{PREFIX}:(\w+)$")
_ARRAY_TYPES = {SUBJECT: exiv2.TypeId.xmpBag, HIERARCHICAL: exiv2.TypeId.xmpBag,
                DIGIKAM: exiv2.TypeId.xmpSeq}  # fmt: skip
_DECODE_FAILED = re.compile(r"failed to decode (xmp|iptc|exif)", re.IGNORECASE)
_XMP_ROOTS = ("adobe:ns:meta/ xmpmeta", "http://www.w3.org/1999/02/22-rdf-syntax-ns# RDF")
_SIDECAR_TYPE = "application/rdf+xml"
_FIX_SIDECAR = ("phototag leaves it unchanged: fix it in a text editor or an XMP tool (or "
                "remove it if it holds nothing you need), then run again")  # fmt: skip
_FIX_PHOTO = ("phototag leaves it unchanged: repair its metadata with another tool (for "
              "example ExifTool or digiKam), then run again")  # fmt: skip
_FIX_EXIF = ("phototag rewrites only files it can read completely, so the file is unchanged: "
             "leave out --embed to write a sidecar instead, or repair its metadata with "
             "another tool (for example ExifTool)")  # fmt: skip


class _Messages(logging.Filter):
    """libexiv2's warnings and errors (python-exiv2 logs them to the ``exiv2`` logger in the
    calling thread), collected per thread while phototag reads or writes a file; outside
    that, errors pass on to the log and warnings are dropped."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    @contextlib.contextmanager
    def collect(self) -> Iterator[list[logging.LogRecord]]:
        found: list[logging.LogRecord] = []
        outer = getattr(self._local, "found", None)
        self._local.found = found
        try:
            yield found
        finally:
            self._local.found = outer

    def filter(self, record: logging.LogRecord) -> bool:
        found = getattr(self._local, "found", None)
        if found is None:
            return record.levelno >= logging.ERROR
        found.append(record)
        return False


_MESSAGES = _Messages()
exiv2.LogMsg.setHandler(exiv2.pythonHandler)
exiv2.LogMsg.setLevel(exiv2.LogMsg.Level.warn)
logging.getLogger("exiv2").setLevel(logging.WARNING)
logging.getLogger("exiv2").addFilter(_MESSAGES)


def _message(error: Exception) -> str:
    """libexiv2's message, without the error-code tuple python-exiv2 wraps it in."""
    text = str(error.args[-1]) if error.args else str(error)
    return text.strip().rstrip(".")


def _text(record: logging.LogRecord) -> str:
    return record.getMessage().strip().rstrip(".")


def xmp_problem(packet: bytes) -> str | None:
    """Why `packet` is not a well-formed XMP packet, or None if it is.

    Parsed with expat, refusing any document type declaration before it is read: XMP
    never has one, and its entities could expand without bound ("billion laughs").
    """
    parser = expat.ParserCreate(namespace_separator=" ")
    roots: list[str] = []

    def refuse(*_: object) -> None:
        raise ValueError("it declares a document type (entities), which XMP never does")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = lambda name, _: roots.append(name) if not roots else None
    try:
        parser.Parse(packet.rstrip(b"\0 \t\r\n"), True)
    except expat.ExpatError as error:
        return f"its XMP does not parse as XML ({error})"
    except ValueError as error:
        return f"its XMP is refused: {error}"
    if not roots or roots[0] not in _XMP_ROOTS:
        found = f"<{roots[0].rsplit(' ', 1)[-1]}>" if roots else "no element"
        return f"its content is not XMP (XML with {found} where XMP has <x:xmpmeta>)"
    return None


def _libexiv2_name(path: Path) -> str | None:
    """`path` as libexiv2 can take it (a UTF-8 string), or None for a name that is not
    valid UTF-8 (its bytes are then read by Python and handed over in memory)."""
    name = os.fspath(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return name


def _read(path: Path, limit: int = -1) -> bytes:
    """The bytes of `path` (at most `limit`); `MetadataError` if it cannot be read."""
    try:
        with path.open("rb") as file:
            return file.read(limit)
    except OSError as error:
        raise MetadataError(path, f"cannot read it ({error.strerror})", "Check its permissions"
                            ) from None  # fmt: skip


def _open(
    path: Path, data: bytes | None, *, sidecar: bool = False
) -> tuple[Any, list[logging.LogRecord]]:
    """An exiv2 image over `data`, else over the file `path`, with its metadata read, and
    the messages libexiv2 logged meanwhile. Raises `MetadataError` in plain words."""
    name = _libexiv2_name(path) if data is None else None
    if data is None and name is None:
        data = _read(path)
    if not (data if data is not None else _read(path, 1)):
        raise MetadataError(path, "cannot read its metadata: the file is empty",
                            "phototag leaves it unchanged")  # fmt: skip
    image = None
    with _MESSAGES.collect() as messages:
        try:
            image = exiv2.ImageFactory.open(data if data is not None else name)
            image.readMetadata()
        except exiv2.Exiv2Error as error:
            raise _read_error(path, error, image, sidecar=sidecar) from None
    return image, messages


def _read_error(path: Path, error: Exception, image: Any, *, sidecar: bool) -> MetadataError:
    """A libexiv2 read error in words: what is wrong with which file."""
    code = error.args[0] if error.args else None
    detail = _message(error)
    if sidecar:
        return MetadataError(path, f"not a readable XMP sidecar: libexiv2 cannot read it as XMP "
                             f"({detail})", _FIX_SIDECAR)  # fmt: skip
    if code in (exiv2.ErrorCode.kerFileContainsUnknownImageType,
                exiv2.ErrorCode.kerMemoryContainsUnknownImageType):  # fmt: skip
        return MetadataError(path, "cannot read its metadata: not an image file libexiv2 "
                             "knows (unknown file type)",
                             "phototag leaves it unchanged")  # fmt: skip
    kind = image.mimeType() if image is not None else ""
    if code == exiv2.ErrorCode.kerNotAnImage and kind and "tiff" not in kind:
        return MetadataError(path, f"cannot read its metadata: its EXIF block is damaged "
                             f"(libexiv2: {detail})", _FIX_PHOTO)  # fmt: skip
    if code in (exiv2.ErrorCode.kerFileOpenFailed, exiv2.ErrorCode.kerDataSourceOpenFailed):
        return MetadataError(path, f"cannot open it ({detail})", "Check its permissions")
    return MetadataError(path, f"cannot read its metadata: the file is damaged or cut short "
                         f"(libexiv2: {detail})", _FIX_PHOTO)  # fmt: skip


def _parts_not_read(messages: list[logging.LogRecord]) -> dict[str, str]:
    """The metadata parts libexiv2 could not read completely ("xmp", "iptc", "exif": it
    failed to decode the part, or logged an error about it), each with libexiv2's most
    telling message about it (its first error, else its first warning)."""
    failed: set[str] = set()
    detail: dict[str, tuple[int, str]] = {}
    for record in messages:
        text = _text(record)
        if match := _DECODE_FAILED.search(text):
            part = match[1].lower()
        else:
            part = "xmp" if "XMP" in text else "iptc" if "IPTC" in text else "exif"
        if match or record.levelno >= logging.ERROR:
            failed.add(part)
        if part not in detail or record.levelno > detail[part][0]:
            detail[part] = (record.levelno, text)
    return {part: detail[part][1] for part in sorted(failed)}


def open_image(path: Path, data: bytes | None = None, *, whole: bool = False) -> Any:
    """A photo as an exiv2 image with its metadata read: over `data` (the file's bytes, in
    memory: writes stay there, see `image_bytes`) if given, else over the file itself.

    Raises `MetadataError` naming `path` when libexiv2 cannot read it, or when it cannot
    read the keywords completely (its XMP packet does not parse, its IPTC block does not
    decode); with `whole` (before rewriting the file) also for a damaged EXIF block.
    """
    image, messages = _open(path, data)
    parts = _parts_not_read(messages)
    packet = image.xmpPacket()
    problem = xmp_problem(packet.encode("utf-8", "surrogateescape")) if packet else None
    if problem is None and "xmp" in parts:
        problem = f"its XMP cannot be read (libexiv2: {parts['xmp']})"
    if problem is not None:
        raise MetadataError(path, f"cannot read its keywords: {problem}", _FIX_PHOTO)
    if "iptc" in parts:
        raise MetadataError(path, f"cannot read its keywords: its IPTC block is damaged "
                            f"(libexiv2: {parts['iptc']})", _FIX_PHOTO)  # fmt: skip
    if whole and "exif" in parts:
        raise MetadataError(path, f"its EXIF block is damaged (libexiv2: {parts['exif']})",
                            _FIX_EXIF)  # fmt: skip
    return image


def open_sidecar(path: Path, data: bytes | None = None) -> Any:
    """An XMP sidecar as an exiv2 image in memory, over `data` or the bytes of `path`.

    Raises `MetadataError` naming `path` unless the whole file is a well-formed XMP
    packet that libexiv2 reads completely; the XML is checked before libexiv2 sees it.
    """
    data = _read(path) if data is None else data
    if not data.strip():
        raise MetadataError(path, "not an XMP sidecar: the file is empty", _FIX_SIDECAR)
    problem = xmp_problem(data)
    if problem is not None:
        raise MetadataError(path, f"not a readable XMP sidecar: {problem}", _FIX_SIDECAR)
    image, messages = _open(path, data, sidecar=True)
    if image.mimeType() != _SIDECAR_TYPE:
        raise MetadataError(path, f"not an XMP sidecar: libexiv2 reads it as {image.mimeType()}",
                            _FIX_SIDECAR)  # fmt: skip
    parts = _parts_not_read(messages)
    if parts:
        detail = "; ".join(parts.values())
        raise MetadataError(path, f"not a readable XMP sidecar: libexiv2 cannot read all of "
                            f"it ({detail})", _FIX_SIDECAR)  # fmt: skip
    return image


def new_sidecar(path: Path, seed: Any = None) -> Any:
    """A new XMP sidecar in memory (to be saved as `path`): empty, or holding a copy of
    the XMP of the opened photo `seed`."""
    try:
        image = exiv2.ImageFactory.create(exiv2.ImageType.xmp)
        image.readMetadata()
        if seed is not None:
            image.setXmpData(seed.xmpData())
    except exiv2.Exiv2Error as error:
        raise MetadataError(path, f"cannot create an XMP sidecar ({_message(error)})") from None
    return image


def image_bytes(image: Any) -> bytes:
    """The whole file of an in-memory image, after `apply_fields`."""
    with image.io().mmap() as view:
        return bytes(view)


def _can_write(image: Any, kind: Any) -> bool:
    return image.checkMode(kind) in (exiv2.AccessMode.amWrite, exiv2.AccessMode.amReadWrite)


def can_write_xmp(image: Any) -> bool:
    return _can_write(image, exiv2.MetadataId.mdXmp)


def _holds_iptc(image: Any) -> bool:
    """Whether phototag writes IPTC keywords into `image`: a photo whose format has IPTC."""
    return not is_sidecar(image) and _can_write(image, exiv2.MetadataId.mdIptc)


def _iptc_text(datum: Any) -> str:
    """IPTC text: UTF-8 when it decodes as such, else Latin-1 (the pre-UTF-8 default)."""
    raw = datum.toString().encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def is_sidecar(image: Any) -> bool:
    return image.mimeType() == _SIDECAR_TYPE


def read_fields(image: Any) -> KeywordFields:
    """The keyword fields of an opened image or sidecar (whose IPTC, a copy libexiv2
    makes of its XMP, is ignored). A photo without IPTC keywords has ``iptc=()`` where
    its format can hold them, else None."""
    arrays: dict[str, tuple[str, ...]] = {}
    structs: dict[int, dict[str, str]] = {}
    for datum in image.xmpData():
        key = datum.key()
        if key in _ARRAY_TYPES:
            arrays[key] = tuple(datum.toString(i) for i in range(datum.count()))
        elif match := _STRUCT_KEY.match(key):
            structs.setdefault(int(match[1]), {})[match[2]] = datum.toString()
    iptc: list[str] = []
    has_iptc = utf8 = False
    for datum in () if is_sidecar(image) else image.iptcData():
        if datum.key() == IPTC_KEYWORDS:
            has_iptc = True
            iptc.append(_iptc_text(datum))
        elif datum.key() == IPTC_CHARSET:
            utf8 = datum.toString() == IPTC_UTF8
    automatic = []
    for _, item in sorted(structs.items()):
        if item.get("label"):
            try:
                score = float(item.get("score", "nan"))
            except ValueError:
                score = float("nan")
            automatic.append(
                AutoKeyword(item["label"], score, item.get("model", ""), item.get("date", ""))
            )
    return KeywordFields(
        subject=arrays.get(SUBJECT, ()),
        hierarchical=arrays.get(HIERARCHICAL),
        digikam=arrays.get(DIGIKAM),
        iptc=tuple(iptc) if has_iptc or _holds_iptc(image) else None,
        iptc_utf8=utf8 or (_holds_iptc(image) and image.iptcData().empty()),
        automatic=tuple(automatic),
    )


def _set_array(xmp: Any, key: str, values: tuple[str, ...] | None) -> None:
    if any(datum.key() == key for datum in xmp):
        del xmp[key]
    if values:
        value = exiv2.XmpArrayValue(_ARRAY_TYPES[key])
        for item in values:
            value.read(item)
        xmp[key] = value


def _set_automatic(xmp: Any, automatic: tuple[AutoKeyword, ...]) -> None:
    for key in [d.key() for d in xmp if d.key().startswith(AUTOMATIC)]:
        if any(d.key() == key for d in xmp):  # erasing an array erases its items too
            del xmp[key]
    if not automatic:
        return
    array = exiv2.XmpTextValue("")
    array.setXmpArrayType(exiv2.XmpValue.XmpArrayType.xaSeq)
    xmp.add(exiv2.XmpKey(AUTOMATIC), array)
    for i, item in enumerate(automatic, start=1):
        values = {"label": item.label, "score": f"{item.score:.4f}", "model": item.model,
                  "date": item.date}  # fmt: skip
        for name in AUTOMATIC_FIELDS:
            xmp[f"{AUTOMATIC}[{i}]/{PREFIX}:{name}"] = values[name]


def _edit_iptc(iptc: Any, old: tuple[str, ...], new: tuple[str, ...]) -> None:
    """Drop the IPTC keywords of `old` missing from `new`, append the new ones; other
    records (and the bytes of kept keywords, whatever their encoding) stay as they are.

    IPTC data started here is declared UTF-8; IPTC data left holding nothing but that
    declaration is removed, so that `untag` gives back a photo without IPTC."""
    if iptc.empty() and new:
        iptc[IPTC_CHARSET] = IPTC_UTF8
    remove = set(old) - set(new)
    position = iptc.begin()
    while position != iptc.end():
        if position.key() == IPTC_KEYWORDS and _iptc_text(position) in remove:
            position = iptc.erase(position)
        else:
            next(position)
    for term in new:
        if term not in old:
            iptc.add(exiv2.IptcKey(IPTC_KEYWORDS), exiv2.StringValue(term))
    if remove and all(d.key() == IPTC_CHARSET and d.toString() == IPTC_UTF8 for d in iptc):
        iptc.clear()


def apply_fields(image: Any, old: KeywordFields, new: KeywordFields) -> None:
    """Change the fields of `image` that differ between `old` and `new`, then write the
    file once. Raises `exiv2.Exiv2Error`, or `MetadataError` when libexiv2 reports an
    error while writing."""
    xmp = image.xmpData()
    for key, before, after in ((SUBJECT, old.subject, new.subject),
                               (HIERARCHICAL, old.hierarchical, new.hierarchical),
                               (DIGIKAM, old.digikam, new.digikam)):  # fmt: skip
        if before != after:
            _set_array(xmp, key, after)
    if old.automatic != new.automatic:
        _set_automatic(xmp, new.automatic)
    if is_sidecar(image):
        # libexiv2 keeps Exif/IPTC copies of a sidecar's XMP and copies them back into
        # the XMP on write, which would undo the changes above: drop the copies
        image.clearIptcData()
        image.clearExifData()
    elif old.iptc is not None and new.iptc is not None and old.iptc != new.iptc:
        _edit_iptc(image.iptcData(), old.iptc, new.iptc)
    if xmp.empty():  # the WebP writer would otherwise write back the old packet
        image.clearXmpPacket()
    with _MESSAGES.collect() as messages:
        image.writeMetadata()
    errors = [_text(m) for m in messages if m.levelno >= logging.ERROR]
    if errors:
        raise MetadataError("the rewritten copy", f"libexiv2 reported {errors[0]!r}")


def xmp_is_empty(image: Any) -> bool:
    return image.xmpData().empty()


def describe_image(image: Any) -> tuple[str, int, int]:
    """MIME type and pixel size, to check that a rewritten photo is the same picture."""
    return image.mimeType(), image.pixelWidth(), image.pixelHeight()
