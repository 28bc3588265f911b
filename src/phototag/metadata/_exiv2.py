"""The only module that talks to libexiv2 (through python-exiv2): open, read, change.

python-exiv2 is used rather than pyexiv2 because pyexiv2 writes every XMP array as
``rdf:Seq`` (``dc:subject`` and ``lr:hierarchicalSubject`` are bags) and writes to
disk on each call; here all changes go to disk in one ``writeMetadata``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

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
# libexiv2 reports recoverable oddities of a file as warnings; phototag raises on errors
logging.getLogger("exiv2").setLevel(logging.ERROR)

_STRUCT_KEY = re.compile(rf"^{re.escape(AUTOMATIC)}\[(\d+)\]/{PREFIX}:(\w+)$")
_ARRAY_TYPES = {SUBJECT: exiv2.TypeId.xmpBag, HIERARCHICAL: exiv2.TypeId.xmpBag,
                DIGIKAM: exiv2.TypeId.xmpSeq}  # fmt: skip


def _message(error: Exception) -> str:
    """libexiv2's message, without the error-code tuple python-exiv2 wraps it in."""
    text = str(error.args[-1]) if error.args else str(error)
    return text.rstrip(".")


def open_image(path: Path) -> Any:
    """An exiv2 image with its metadata read; `MetadataError` if exiv2 cannot read it."""
    try:
        image = exiv2.ImageFactory.open(str(path))
        image.readMetadata()
    except exiv2.Exiv2Error as error:
        raise MetadataError(path, f"cannot read its metadata ({_message(error)})") from None
    return image


def open_bytes(data: bytes, path: Path) -> Any:
    """An exiv2 image over the bytes of `path` in memory (writes stay in memory: see
    `image_bytes`). Keep `data` alive while the image is used."""
    try:
        image = exiv2.ImageFactory.open(data)
        image.readMetadata()
    except exiv2.Exiv2Error as error:
        raise MetadataError(path, f"cannot read its metadata ({_message(error)})") from None
    return image


def new_sidecar(path: Path) -> Any:
    """A new, empty XMP sidecar in memory (to be saved as `path`)."""
    try:
        image = exiv2.ImageFactory.create(exiv2.ImageType.xmp)
        image.readMetadata()
    except exiv2.Exiv2Error as error:
        raise MetadataError(path, f"cannot create an XMP sidecar ({_message(error)})") from None
    return image


def image_bytes(image: Any) -> bytes:
    """The whole file of an in-memory image, after `apply_fields`."""
    with image.io().mmap() as view:
        return bytes(view)


def can_write_xmp(image: Any) -> bool:
    mode = image.checkMode(exiv2.MetadataId.mdXmp)
    return mode in (exiv2.AccessMode.amWrite, exiv2.AccessMode.amReadWrite)


def can_write_iptc(image: Any) -> bool:
    mode = image.checkMode(exiv2.MetadataId.mdIptc)
    return mode in (exiv2.AccessMode.amWrite, exiv2.AccessMode.amReadWrite)


def _iptc_text(datum: Any) -> str:
    """IPTC text: UTF-8 when it decodes as such, else Latin-1 (the pre-UTF-8 default)."""
    raw = datum.toString().encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def is_sidecar(image: Any) -> bool:
    return image.mimeType() == "application/rdf+xml"


def read_fields(image: Any) -> KeywordFields:
    """The keyword fields of an opened image or sidecar (whose IPTC, a copy libexiv2
    makes of its XMP, is ignored)."""
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
        iptc=tuple(iptc) if has_iptc else None,
        iptc_utf8=utf8,
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
    records (and the bytes of kept keywords, whatever their encoding) stay as they are."""
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


def apply_fields(image: Any, old: KeywordFields, new: KeywordFields) -> None:
    """Change the fields of `image` that differ between `old` and `new`, then write the
    file once. Raises `exiv2.Exiv2Error` on failure."""
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
    image.writeMetadata()


def xmp_is_empty(image: Any) -> bool:
    return image.xmpData().empty()


def describe_image(image: Any) -> tuple[str, int, int]:
    """MIME type and pixel size, to check that a rewritten photo is the same picture."""
    return image.mimeType(), image.pixelWidth(), image.pixelHeight()
