"""A corpus of hostile files and folders, for the promises phototag makes about user files.

`make_corpus(folder, photo)` fills `folder` with every kind of file a real photo library
can hold that a tool may choke on: empty, truncated, random and mislabelled files,
decompression bombs, odd pixel modes, multi-frame files, broken EXIF, malformed and
malicious sidecars, odd names (not UTF-8, 250 characters, newlines), symlink loops,
read-only and unreadable files. Each `Entry` says what it is and whether phototag may
change it: only a photo it can read completely, with metadata it can read completely,
that the user may write.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Root reads and writes whatever the permission bits say; with these capabilities dropped
# it is held to them like any user, so read-only and unreadable files mean what they say.
WITHOUT_ROOT_OVERRIDE = [
    "setpriv",
    "--bounding-set",
    "-dac_override,-dac_read_search,-fowner",
    "--inh-caps",
    "-dac_override,-dac_read_search,-fowner",
]

XMP_TEMPLATE = (
    "<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>"
    "<x:xmpmeta xmlns:x='adobe:ns:meta/'>"
    "<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
    "<rdf:Description rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/'"
    " xmlns:xmp='http://ns.adobe.com/xap/1.0/'>"
    "<xmp:Rating>4</xmp:Rating><dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>"
    "</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end='w'?>"
)

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    + "]><x:xmpmeta xmlns:x='adobe:ns:meta/'>"
    "<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
    "<rdf:Description rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/'>"
    "<dc:subject><rdf:Bag><rdf:li>Anna</rdf:li><rdf:li>&lol9;</rdf:li></rdf:Bag>"
    "</dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>"
)


def xmp_with(*keywords: str) -> str:
    """A well-formed XMP sidecar holding `keywords` and a star rating."""
    return XMP_TEMPLATE.format(items="".join(f"<rdf:li>{k}</rdf:li>" for k in keywords))


@dataclass(frozen=True)
class Entry:
    """One file or folder of the corpus.

    Attributes:
        name: path relative to the corpus folder (may hold undecodable bytes, as
            `os.fsdecode` gives them).
        kind: what it is, in words.
        writable: phototag may change it (by a verified keyword write) or, for a photo,
            add a sidecar next to it; every other entry must stay byte for byte.
        photo: a file the walker yields as a photo (its name has an image extension
            and it is a regular file), so the run must either annotate it or report it.
        decodable: a photo phototag can read completely, so the run annotates it.
        user_keywords: keywords the user wrote into this file, which must survive
            every write.
    """

    name: str
    kind: str
    writable: bool = False
    photo: bool = True
    decodable: bool = True
    user_keywords: tuple[str, ...] = ()


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _gradient(width: int = 96, height: int = 64) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1))


def _jpeg_with_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    """`jpeg` with an APPn segment inserted right after its start-of-image marker."""
    segment = bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + segment + jpeg[2:]


def _huge_jpeg_header(jpeg: bytes) -> bytes:
    """`jpeg` whose frame header claims 65000 x 65000 pixels."""
    data = bytearray(jpeg)
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (65000).to_bytes(2, "big") * 2
    return bytes(data)


def _iptc_keywords_jpeg(jpeg: bytes, keywords: tuple[str, ...]) -> bytes:
    """`jpeg` with IPTC keywords in a Photoshop APP13 block, built byte by byte."""
    records = b"\x1c\x01\x5a\x00\x03\x1b%G"  # envelope: coded character set UTF-8
    for word in keywords:
        text = word.encode()
        records += b"\x1c\x02\x19" + len(text).to_bytes(2, "big") + text
    if len(records) % 2:
        records += b"\x00"
    resource = b"8BIM\x04\x04\x00\x00" + len(records).to_bytes(4, "big") + records
    return _jpeg_with_segment(jpeg, 0xED, b"Photoshop 3.0\x00" + resource)


def _write(folder: Path, name: str, data: bytes | str) -> None:
    path = os.path.join(os.fsencode(folder), os.fsencode(name))
    with open(path, "wb") as file:
        file.write(data.encode() if isinstance(data, str) else data)


def make_corpus(folder: Path, photo: Path) -> list[Entry]:
    """Fill `folder` with the hostile corpus built around the real JPEG `photo`."""
    folder.mkdir(parents=True, exist_ok=True)
    real = photo.read_bytes()
    rng = np.random.default_rng(11)
    noise = rng.bytes(20_000)
    entries: list[Entry] = []

    def add(name: str, data: bytes | str, kind: str, **fields) -> None:
        _write(folder, name, data)
        entries.append(Entry(name, kind, **fields))

    # photos phototag can read: it may annotate them and write keywords
    add("good.jpg", real, "a real photo", writable=True)
    add(
        "tiny_1x1.png", _encode(Image.new("RGB", (1, 1), "red"), "PNG"), "1x1 pixels", writable=True
    )
    grey16 = Image.fromarray((np.arange(64 * 48, dtype=np.uint16) * 20).reshape(48, 64))
    add("grey16.png", _encode(grey16, "PNG"), "16-bit greyscale", writable=True)
    add("cmyk.jpg", _encode(_gradient().convert("CMYK"), "JPEG"), "CMYK JPEG", writable=True)
    palette = _gradient().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    add(
        "palette_alpha.png",
        _encode(palette, "PNG", transparency=0),
        "palette with transparency",
        writable=True,
    )
    frames = [_gradient(), _gradient().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    add(
        "animated.gif",
        _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        "animated GIF",
        writable=True,
    )
    add(
        "multipage.tif",
        _encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        "multi-page TIFF",
        writable=True,
    )
    add("png_inside.jpg", _encode(_gradient(), "PNG"), "PNG with a .jpg extension", writable=True)
    add(
        "iptc_keywords.jpg",
        _iptc_keywords_jpeg(real, ("Anna", "Tom & Jerry")),
        "IPTC keywords of the user",
        writable=True,
        user_keywords=("Anna", "Tom & Jerry"),
    )
    add(
        "user_sidecar.jpg",
        real,
        "a photo whose sidecar holds the user's keywords",
        writable=True,
    )
    add(
        "user_sidecar.jpg.xmp",
        xmp_with("Anna", "Holiday"),
        "the user's sidecar",
        writable=True,
        photo=False,
        user_keywords=("Anna", "Holiday"),
    )
    add("bad_\udcff.jpg", real, "a name that is not valid UTF-8", writable=True)
    add("l" * 246 + ".jpg", real, "a 250-character name", writable=True)
    add("-rf.jpg", real, "a name that looks like an option", writable=True)
    add(
        "new\nline & 'quote'.jpg",
        real,
        "a newline, ampersand and quotes in the name",
        writable=True,
    )
    add("ünïcødé 写真.jpg", real, "a Unicode name", writable=True)
    (folder / "nested" / "deeper").mkdir(parents=True)
    add("nested/deeper/photo.jpg", real, "a photo two folders down", writable=True)

    # photos with metadata phototag cannot read completely: reported, never changed
    add(
        "broken_exif.jpg",
        _jpeg_with_segment(real, 0xE1, b"Exif\x00\x00" + noise[:300]),
        "an EXIF block of random bytes",
    )
    xmp_header = b"http://ns.adobe.com/xap/1.0/\x00"
    add(
        "broken_embedded_xmp.jpg",
        _jpeg_with_segment(real, 0xE1, xmp_header + b"<x:xmpmeta><rdf:RDF><dc:subject>"),
        "an embedded XMP packet that does not parse",
    )
    for name, sidecar, kind in (
        ("amp_sidecar.jpg", xmp_with("Anna", "Tom & Jerry"), "an unescaped & in a keyword"),
        ("laughs_sidecar.jpg", BILLION_LAUGHS, "an entity-expansion (billion laughs) sidecar"),
        ("binary_sidecar.jpg", noise[:4000], "a sidecar of random bytes"),
        ("empty_sidecar.jpg", b"", "an empty sidecar"),
        ("cut_sidecar.jpg", xmp_with("Anna", "Holiday")[:200], "a sidecar cut short"),
    ):
        add(name, real, f"a photo with {kind}")
        add(name + ".xmp", sidecar, kind, photo=False)

    # files that are not complete images: reported, never changed
    def add_broken(name: str, data: bytes | str, kind: str) -> None:
        add(name, data, kind, decodable=False)

    add_broken("empty.jpg", b"", "an empty file")
    for cut in (100, len(real) // 2, len(real) - 2):
        add_broken(f"cut_at_{cut}.jpg", real[:cut], f"a JPEG truncated after {cut} bytes")
    add_broken("random.jpg", noise, "random bytes")
    add_broken("noise_after_header.jpg", real[:600] + noise, "random bytes after a JPEG header")
    add_broken("text.jpg", "this is not a photo\n" * 50, "a text file named .jpg")
    add_broken("huge_header.jpg", _huge_jpeg_header(real), "a JPEG header claiming 65000x65000")
    bomb = _encode(Image.new("1", (14_000, 14_000)), "PNG")
    add_broken("bomb.png", bomb, "a decompression bomb (196 megapixels in a small PNG)")
    png = bytearray(_encode(_gradient(), "PNG"))
    png[len(png) // 2 : len(png) // 2 + 8] = bytes(b ^ 0xFF for b in png[len(png) // 2 :][:8])
    add_broken("flipped.png", bytes(png), "a PNG with damaged pixel data")
    tiff = _encode(_gradient(), "TIFF")
    add_broken("cut.tif", tiff[: len(tiff) // 2], "a truncated TIFF")
    webp = _encode(_gradient(), "WEBP")
    add_broken("cut.webp", webp[: len(webp) // 2], "a truncated WebP")
    add_broken("fake.heic", b"\x00\x00\x00\x18ftypheic" + noise[:500], "an HEIC header over noise")

    # read-only and unreadable files: never changed
    add("readonly.jpg", real, "a read-only photo")
    add(
        "readonly_sidecar.jpg",
        real,
        "a photo whose sidecar is read-only (the photo itself may get keywords)",
        writable=True,
    )
    add(
        "readonly_sidecar.jpg.xmp",
        xmp_with("Anna"),
        "a read-only sidecar",
        photo=False,
        user_keywords=("Anna",),
    )
    add("unreadable.jpg", real, "a photo without read permission", decodable=False)
    for name in ("readonly.jpg", "readonly_sidecar.jpg.xmp"):
        os.chmod(folder / name, 0o444)
    os.chmod(folder / "unreadable.jpg", 0o000)

    # things that are not regular files
    (folder / "folder.jpg").mkdir()
    entries.append(Entry("folder.jpg", "a folder with an image extension", photo=False))
    os.mkfifo(folder / "pipe.jpg")
    entries.append(Entry("pipe.jpg", "a named pipe with an image extension", photo=False))
    os.symlink("nowhere.jpg", folder / "dangling.jpg")
    entries.append(Entry("dangling.jpg", "a symlink to nothing", photo=False))
    os.symlink("..", folder / "nested" / "loop")
    entries.append(Entry("nested/loop", "a symlink loop", photo=False))
    return entries


def as_a_user() -> list[str]:
    """The command prefix that holds a child process to permission bits: none for a
    normal user, `WITHOUT_ROOT_OVERRIDE` for root (the test skips without setpriv)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root needs setpriv (util-linux) to drop the permission override")
    return WITHOUT_ROOT_OVERRIDE


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """sha256 and permission bits of every regular file under `folder` (links not
    followed), keyed by path relative to `folder` as `os.fsdecode` gives it."""
    files: dict[str, tuple[str, int]] = {}
    root = os.fsencode(folder)
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                continue
            digest = ""
            if info.st_mode & stat.S_IRUSR:
                with open(path, "rb") as file:
                    digest = hashlib.file_digest(file, "sha256").hexdigest()
            files[os.fsdecode(os.path.relpath(path, root))] = (digest, stat.S_IMODE(info.st_mode))
    return files
