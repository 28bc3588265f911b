"""Reading photos for the service: never outside their folder, never too many pixels.

- Paths in the API are text with ``/`` between folders in which ``%XX`` stands for one
  byte of a file name: ``%25`` a percent sign, ``%5C`` a backslash, ``%FF`` a byte that
  is not UTF-8. Every name on disk has exactly one such text form (`encode_name`), and
  `decode_path` turns it back into the name's bytes.
- `open_beneath` opens a path inside a folder one component at a time, each relative
  to the folder opened before it and with ``O_NOFOLLOW``: a symlink is read and its
  target walked the same way, refused if it leads out. Checking and opening are one
  step, so a folder swapped for a symlink while a request runs cannot lead outside.
  Decoders then read the open file through ``/dev/fd/N`` (Linux, macOS), never by its
  name.
- `check_pixels` refuses an image that would be decoded at full size with more pixels
  than the service allows (baseline JPEGs are decoded at reduced size).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from phototag.app.web.security import RequestRefused
from phototag.imaging import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageLoadError, read_header

#: Symlinks followed in one path before it is refused as a loop (Linux's own limit).
MAX_SYMLINKS = 40
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


def encode_name(raw: bytes) -> str:
    """The API text of a path's bytes (``%XX`` for ``%``, ``\\`` and bytes not UTF-8)."""
    out = []
    for char in raw.decode("utf-8", "surrogateescape"):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8
            out.append(f"%{code - 0xDC00:02X}")
        elif char in "%\\":
            out.append(f"%{code:02X}")
        else:
            out.append(char)
    return "".join(out)


def shown(text: str) -> str:
    """A path from a request as messages quote it: repr, at most 120 characters."""
    return repr(text) if len(text) <= 120 else repr(text[:120]) + "..."


def decode_path(text: str) -> bytes:
    """The bytes of an API path; 400 for an absolute, malformed or non-Unicode one."""

    def refused(why: str) -> RequestRefused:
        return RequestRefused(400, f"{shown(text)}: {why}")

    if "\\" in text:
        raise refused("use '/' between folders (a backslash in a name is written %5C)")
    raw = bytearray()
    for i, piece in enumerate(_ESCAPE.split(text)):  # text, hex digits, text, ...
        if i % 2:
            raw.append(int(piece, 16))
            continue
        if "%" in piece:
            raise refused("'%' starts an escape such as %25 (a percent sign)")
        try:
            raw += piece.encode("utf-8")
        except UnicodeEncodeError:
            raise refused("not valid Unicode text") from None
    if b"\x00" in raw:
        raise refused("a path cannot contain a NUL character")
    if raw.startswith(b"/") or re.match(rb"[A-Za-z]:/", raw):
        raise refused("expected a path relative to the folder")
    return bytes(raw)


def is_image_name(raw: bytes) -> bool:
    return os.path.splitext(raw)[1].decode("latin-1").lower() in IMAGE_EXTENSIONS


@dataclass(frozen=True)
class Opened:
    """An open file or folder inside a served root; close it (or use ``with``)."""

    fd: int
    #: The path reached, relative to the root (symlinks followed; ``b""`` is the root).
    path: bytes
    is_dir: bool

    @property
    def fd_path(self) -> str:
        """A name that opens this very file again, whatever happens to its path."""
        return f"/dev/fd/{self.fd}"

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Opened:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_beneath(root: Path, relative: bytes, name: str) -> Opened:
    """Open `relative` inside the resolved folder `root` without ever leaving it.

    ``..`` goes back to the folder held one level up, never above `root`; a symlink is
    followed only while its target stays inside. `name` is how messages call the path.
    Raises `RequestRefused`: 403 for a way out, 404 for a missing entry or a loop, 400
    for something neither a regular file nor a folder.
    """
    outside = RequestRefused(403, f"{name}: outside the served folder")
    try:
        stack = [(os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), b"")]
    except OSError:
        raise RequestRefused(404, "the served folder is no longer there") from None
    pending = _parts(relative)[::-1]
    links = 0
    try:
        while pending:
            part = pending.pop()
            if part == b"..":
                if len(stack) == 1:
                    raise outside
                os.close(stack.pop()[0])
                continue
            try:
                fd = os.open(part, _FLAGS, dir_fd=stack[-1][0])
            except OSError as error:
                target = _link_target(part, stack[-1][0], error, name)
                links += 1
                if links > MAX_SYMLINKS:
                    raise RequestRefused(404, f"{name}: too many symbolic links") from None
                if target is None:  # changed from a link to something else: look again
                    pending.append(part)
                    continue
                if target.startswith(b"/"):
                    target = _below(root, target)
                    if target is None:
                        raise outside from None
                    while len(stack) > 1:
                        os.close(stack.pop()[0])
                pending.extend(_parts(target)[::-1])
                continue
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                stack.append((fd, part))
                continue
            if pending or not stat.S_ISREG(mode):
                os.close(fd)
                if pending:
                    raise RequestRefused(404, f"{name}: no such file or folder")
                raise RequestRefused(400, f"{name}: neither a photo nor a folder")
            return Opened(fd, b"/".join([n for _, n in stack[1:]] + [part]), is_dir=False)
        return Opened(os.dup(stack[-1][0]), b"/".join(n for _, n in stack[1:]), is_dir=True)
    finally:
        for fd, _ in stack:
            os.close(fd)


def _parts(path: bytes) -> list[bytes]:
    return [part for part in path.split(b"/") if part not in (b"", b".")]


def _link_target(part: bytes, folder: int, error: OSError, name: str) -> bytes | None:
    """The target of the symlink `part`; None if it is no longer one; else `error` as 4xx."""
    try:
        return os.readlink(part, dir_fd=folder)
    except OSError as again:
        if again.errno == errno.EINVAL and error.errno in (errno.ELOOP, errno.EMLINK):
            return None
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        raise RequestRefused(404, f"{name}: no such file or folder") from None
    if error.errno in (errno.EACCES, errno.EPERM):
        raise RequestRefused(403, f"{name}: the service may not read it") from None
    if error.errno == errno.ENAMETOOLONG:
        raise RequestRefused(400, f"{name}: a name in it is too long") from None
    raise RequestRefused(404, f"{name}: cannot be opened ({os.strerror(error.errno or 0)})")


def _below(root: Path, target: bytes) -> bytes | None:
    """An absolute symlink target as a path relative to `root`, or None if not below it."""
    prefix = _parts(os.fsencode(root))
    parts = _parts(target)
    return b"/".join(parts[len(prefix) :]) if parts[: len(prefix)] == prefix else None


# ---------------------------------------------------------------------------- pixels
def check_pixels(path: str, name: str, max_pixels: int, data: bytes | None = None) -> None:
    """Refuse (413) an image too large to decode; unreadable ones are left to the decoder.

    `path` is the file (or, with `data`, names these bytes). Baseline JPEGs are decoded
    at reduced size (libjpeg scales while decoding), so they may have up to
    `phototag.imaging.DEFAULT_MAX_PIXELS`; every other image, progressive JPEGs
    included, is decoded at full size first and may have at most `max_pixels`.
    """
    most = _megapixels(DEFAULT_MAX_PIXELS)
    try:
        header = read_header(path, data)
    except ImageLoadError as error:
        if error.reason == "too_large":
            raise RequestRefused(
                413, f"{name}: more pixels than phototag decodes ({most}); make it smaller"
            ) from None
        return  # load_image says what is wrong with it
    pixels = header.pixels
    if header.decodes_at_reduced_size and pixels > DEFAULT_MAX_PIXELS:
        raise RequestRefused(
            413, f"{name}: {_megapixels(pixels)} is more than phototag decodes ({most}); "
            "make it smaller",
        )  # fmt: skip
    if not header.decodes_at_reduced_size and pixels > max_pixels:
        raise RequestRefused(
            413, f"{name}: a {header.format} of {header.width}x{header.height} "
            f"({_megapixels(pixels)}) is decoded at full size, and this service decodes at "
            f"most {_megapixels(max_pixels)} at full size (baseline JPEGs are decoded at "
            "reduced size and may be larger); make it smaller, or start the service with a "
            "larger --max-megapixels",
        )  # fmt: skip


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} megapixels"
