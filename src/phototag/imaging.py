"""Opening image files: the only module of phototag that reads pixels from disk.

Everything that turns a file into pixels goes through :func:`load_image` (a Pillow
image) or :func:`load_rgb` (a numpy array), so every part of the project sees the
same pixels for the same file: EXIF orientation applied, every pixel mode turned
into 8-bit RGB by one documented rule, large JPEGs decoded at reduced size when a
smaller result was asked for, and every way a file can be unusable reported as one
:class:`ImageLoadError` that names the file and the reason.

:func:`iter_image_files` turns files and folders into the list of images to work on,
and :func:`file_digest` gives the content hash the feature store keys on.

The rules are written out in ``docs/imaging.md``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import os
import stat
import struct
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar, Final

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from phototag.errors import PhototagError, check_int

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageHeader",
    "ImageLoadError",
    "file_digest",
    "iter_image_files",
    "load_image",
    "load_rgb",
    "read_header",
]

_log = logging.getLogger(__name__)

#: File-name extensions (lower case, with the dot) that :func:`iter_image_files`
#: accepts; matching ignores case. What a file *is* is decided by its content, not
#: by its extension, so a PNG named ``x.jpg`` loads as a PNG.
IMAGE_EXTENSIONS: Final[frozenset[str]] = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".webp",
        ".tif",
        ".tiff",
        ".bmp",
        ".gif",
        ".heic",
        ".heif",
        ".hif",
        ".avif",
        *(".cr2", ".cr3", ".nef", ".arw", ".dng", ".raf", ".orf", ".rw2"),
    }
)
#: Camera RAW files, decoded by LibRaw (rawpy) whatever their content looks like (many
#: are TIFF inside, where Pillow would find only a small thumbnail).
RAW_EXTENSIONS: Final[frozenset[str]] = frozenset(
    {".cr2", ".cr3", ".nef", ".arw", ".dng", ".raf", ".orf", ".rw2"}
)

#: Default pixel limit (width x height) above which a file is refused as a possible
#: decompression bomb: Pillow's own error level, 2 x ``PIL.Image.MAX_IMAGE_PIXELS``
#: (about 179 megapixels; a 16-bit 179 MP image needs over 1 GB of memory).
DEFAULT_MAX_PIXELS: Final[int] = 178_956_970

# Resampling filter of the final exact resize. Fixed, so that the same file and size
# always give the same pixels (the feature store relies on it).
_RESAMPLE: Final = Image.Resampling.BICUBIC
# Let Pillow first shrink by an integer factor with a box filter while the remaining
# factor stays >= 3; indistinguishable from a full convolution, much faster.
_REDUCING_GAP: Final = 3.0

_BUILTIN_FORMATS: Final = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")
_ORIENTATION_SWAPS_AXES: Final = frozenset({5, 6, 7, 8})


class ImageLoadError(PhototagError, OSError):
    """A file that cannot be turned into pixels (or, for the walker and hasher, read).

    ``path`` is the file as given, ``reason`` one short code from :attr:`REASONS`,
    ``detail`` the underlying message (from the OS or the decoder) when there is
    one. The message reads ``"<path>: <what went wrong> (<detail>); <how to fix>"``.
    It is an ``OSError`` because, like ``FileNotFoundError`` or Pillow's own
    ``UnidentifiedImageError``, it is about a file; ``except OSError`` catches it.
    """

    #: reason code -> (what went wrong, how to fix it)
    REASONS: ClassVar[dict[str, tuple[str, str]]] = {
        "missing": ("no such file or folder", "check the path"),
        "not_a_file": (
            "not a regular file",
            "pass image files; walk folders with iter_image_files()",
        ),
        "permission_denied": ("permission denied", "make it readable for this user"),
        "unreadable": ("the operating system could not read it", "check the disk or share"),
        "empty": ("the file is empty (0 bytes)", "the copy or download probably failed"),
        "not_an_image": (
            "not a supported image (JPEG, PNG, WebP, TIFF, BMP, GIF, HEIC/HEIF, AVIF, camera RAW)",
            "convert it to one of these formats, or leave it out",
        ),
        "unsupported": (
            "a recognised image that this installation cannot decode",
            "see the detail for what is missing",
        ),
        "truncated": (
            "the file ends before the image data does",
            "the copy or download was probably cut short; copy it again",
        ),
        "corrupt": ("the image data is damaged", "restore the file from a good copy"),
        "too_large": (
            "too many pixels (possible decompression bomb)",
            "if you trust the file, pass a larger max_pixels",
        ),
    }

    def __init__(self, path: str | os.PathLike[str], reason: str, detail: str = "") -> None:
        if reason not in self.REASONS:
            raise ValueError(f"unknown ImageLoadError reason {reason!r}")
        self.path = Path(path)
        self.reason = reason
        self.detail = detail
        what, fix = self.REASONS[reason]
        message = f"{os.fspath(path)}: {what}"
        if detail:
            message += f" ({detail})"
        super().__init__(f"{message}; {fix}")

    def __reduce__(self):  # keep reason/detail when sent between processes
        return (type(self), (self.path, self.reason, self.detail))


# --------------------------------------------------------------------------- loading


def load_image(
    path: str | os.PathLike[str],
    *,
    min_side: int | None = None,
    max_side: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    resample: bool = True,
) -> Image.Image:
    """Decode one image file into an upright 8-bit RGB Pillow image.

    Sizing (aspect ratio always kept; both sides rounded half up, at least 1):

    - neither given: full size.
    - ``min_side=s``: the shorter side becomes exactly ``s``, scaling down *or up*;
      this is the "resize shorter side" step of model preprocessing.
    - ``max_side=m``: a cap; if the longer side exceeds ``m`` it becomes exactly
      ``m``. Never scales up on its own.
    - both: shorter side ``s`` unless the longer side would then exceed ``m``, in
      which case the longer side is ``m`` (torchvision's ``Resize(s, max_size=m)``).

    When the result is smaller than the file, JPEGs are decoded at 1/2, 1/4 or 1/8
    scale (the smallest DCT scale still at least the result size) before the final
    bicubic resize, which is most of the saving for 12-50 MP photos. ``resample=False``
    stops there: the result is then the cheapest decode at least the requested size (or
    the full size), for callers that resample anyway (one resampling instead of two).

    ``max_pixels`` refuses files whose declared width x height exceeds it before any
    pixel is decoded (``None``: no phototag limit; Pillow's process-wide
    ``PIL.Image.MAX_IMAGE_PIXELS`` check still applies).

    Raises :class:`ImageLoadError` for every problem with the file and
    :class:`~phototag.errors.InvalidInputError` for bad arguments.
    """
    min_side = None if min_side is None else check_int("min_side", min_side, 1)
    max_side = None if max_side is None else check_int("max_side", max_side, 1)
    max_pixels = None if max_pixels is None else check_int("max_pixels", max_pixels, 1)
    with _open_regular_file(path) as (f, size):
        head = _read_head(f, path, size)
        if is_raw(path):
            rgb = _load_raw(f, path, max_pixels)
            stored_size = rgb.size
            target = _target_size(rgb.size, min_side, max_side)
        else:
            with _quiet_pillow(), _open_with_pillow(f, path, head, size) as image:
                _check_pixel_count(path, image.size, max_pixels)
                target = _target_size(image.size, min_side, max_side)
                if target is not None and target[0] < image.size[0]:
                    image.draft("RGB", target)  # JPEG only; others ignore it
                stored_size = image.size
                _decode(image, f, path, head, size)
                _apply_exif_orientation(image)
                rgb = _to_rgb(image, path)
        if target is not None and resample:
            if rgb.size != stored_size and rgb.size == stored_size[::-1]:
                target = (target[1], target[0])  # orientation 5-8 swapped the axes
            if rgb.size != target:
                rgb = rgb.resize(target, _RESAMPLE, reducing_gap=_REDUCING_GAP)
    return rgb


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, read without decoding a pixel.

    ``format`` is Pillow's name for it (``"JPEG"``, ``"PNG"``, ``"HEIF"``, ...);
    ``progressive`` is True for a progressive (multi-scan) JPEG.
    """

    format: str
    width: int
    height: int
    progressive: bool = False

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decodes_at_reduced_size(self) -> bool:
        """Whether :func:`load_image` with a smaller target size decodes it at 1/2 to 1/8
        scale (baseline JPEG: libjpeg scales while decoding; everything else, progressive
        JPEGs included, is decoded at full size first)."""
        return self.format == "JPEG" and not self.progressive


def read_header(path: str | os.PathLike[str], data: bytes | None = None) -> ImageHeader:
    """The format and size of the image at `path` (or, given `data`, of these bytes,
    which `path` then only names in errors), from its header alone.

    Raises :class:`ImageLoadError` as :func:`load_image` would for a file it cannot
    identify; a file over Pillow's own pixel limit is ``too_large``.
    """
    if data is None:
        opened = _open_regular_file(path)
    else:
        opened = contextlib.nullcontext((io.BytesIO(data), len(data)))
    with opened as (f, size):
        head = _read_head(f, path, size)
        if is_raw(path):
            with _open_raw(f, path) as raw:
                return ImageHeader("RAW", raw.sizes.width, raw.sizes.height)
        with _quiet_pillow(), _open_with_pillow(f, path, head, size) as image:
            return ImageHeader(
                image.format or "unknown",
                *image.size,
                progressive=bool(image.info.get("progressive")),
            )


def load_rgb(
    path: str | os.PathLike[str],
    *,
    min_side: int | None = None,
    max_side: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """:func:`load_image` as a writable, C-contiguous ``uint8`` array of shape (H, W, 3)."""
    image = load_image(path, min_side=min_side, max_side=max_side, max_pixels=max_pixels)
    return np.array(image, dtype=np.uint8)


def _target_size(
    size: tuple[int, int], min_side: int | None, max_side: int | None
) -> tuple[int, int] | None:
    """Result size in the file's stored orientation, or None for "keep as is"."""
    width, height = size
    short, long = min(width, height), max(width, height)
    if min_side is not None and (max_side is None or long * min_side <= max_side * short):
        new_short, new_long = min_side, _scale_round(long, min_side, short)
    elif max_side is not None and (min_side is not None or long > max_side):
        new_short, new_long = _scale_round(short, max_side, long), max_side
    else:
        return None
    result = (new_short, new_long) if width <= height else (new_long, new_short)
    return None if result == size else result


def _scale_round(value: int, numerator: int, denominator: int) -> int:
    """round(value * numerator / denominator), half up, exactly, and at least 1."""
    return max(1, (2 * value * numerator + denominator) // (2 * denominator))


def _check_pixel_count(path: str | os.PathLike[str], size: tuple[int, int], limit: int | None):
    pixels = size[0] * size[1]
    if limit is not None and pixels > limit:
        raise ImageLoadError(
            path, "too_large", f"{size[0]}x{size[1]} = {pixels:,} pixels, limit {limit:,}"
        )


# --------------------------------------------------------------------------- file access


@contextlib.contextmanager
def _open_regular_file(path: str | os.PathLike[str]) -> Iterator[tuple[IO[bytes], int]]:
    """Open ``path`` for binary reading if it is a regular file; yield (file, size).

    Opens non-blocking so that a FIFO named by mistake is refused instead of hanging
    (no effect on regular files), and maps OS errors onto :class:`ImageLoadError`.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise _error_from_os(path, error) from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageLoadError(path, "not_a_file", _file_kind(info.st_mode))
        file = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with file:
        yield file, info.st_size


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "it is a folder"
    if stat.S_ISFIFO(mode):
        return "it is a FIFO"
    return "it is a device or socket"


def _error_from_os(path: str | os.PathLike[str], error: OSError) -> ImageLoadError:
    if isinstance(error, FileNotFoundError | NotADirectoryError):
        return ImageLoadError(path, "missing")
    if isinstance(error, IsADirectoryError):
        return ImageLoadError(path, "not_a_file", "it is a folder")
    if isinstance(error, PermissionError):
        return ImageLoadError(path, "permission_denied")
    return ImageLoadError(path, "unreadable", error.strerror or str(error))


def _read_head(f: IO[bytes], path: str | os.PathLike[str], size: int) -> bytes:
    """The first bytes of a file, which name its format; `ImageLoadError` if it is empty."""
    if size == 0:
        raise ImageLoadError(path, "empty")
    try:
        head = f.read(32)
        f.seek(0)
    except OSError as error:
        raise _error_from_os(path, error) from error
    return head


# --------------------------------------------------------------------------- decoding


def is_raw(path: str | os.PathLike[str]) -> bool:
    """Whether `path` names a camera RAW file (by its extension, `RAW_EXTENSIONS`)."""
    return os.path.splitext(os.fspath(path))[1].lower() in RAW_EXTENSIONS


@contextlib.contextmanager
def _open_raw(f: IO[bytes], path: str | os.PathLike[str]) -> Iterator[Any]:
    """The RAW file `f` opened by LibRaw (rawpy), errors as `ImageLoadError`."""
    try:
        import rawpy
    except ImportError:
        raise ImageLoadError(
            path, "unsupported", "camera RAW needs rawpy: pip install rawpy"
        ) from None
    try:
        with rawpy.imread(f) as raw:
            yield raw
    except rawpy.LibRawFileUnsupportedError as error:
        raise ImageLoadError(path, "not_an_image", f"LibRaw: {_text(error)}") from None
    except rawpy.NotSupportedError as error:
        raise ImageLoadError(path, "unsupported", f"LibRaw: {_text(error)}") from None
    except rawpy.LibRawIOError as error:
        raise ImageLoadError(path, "truncated", f"LibRaw: {_text(error)}") from None
    except rawpy.LibRawError as error:
        raise ImageLoadError(path, "corrupt", f"LibRaw: {_text(error)}") from None


def _text(error: Exception) -> str:
    """LibRaw's message (rawpy gives it as bytes)."""
    message = error.args[0] if error.args else error
    return message.decode(errors="replace") if isinstance(message, bytes) else str(message)


def _load_raw(f: IO[bytes], path: str | os.PathLike[str], max_pixels: int | None) -> Image.Image:
    """A camera RAW file developed by LibRaw: camera white balance, sRGB, 8 bits,
    upright (LibRaw applies the camera's orientation)."""
    with _open_raw(f, path) as raw:
        _check_pixel_count(path, (raw.sizes.width, raw.sizes.height), max_pixels)
        rgb = raw.postprocess(use_camera_wb=True, output_bps=8)
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB")


@contextlib.contextmanager
def _quiet_pillow() -> Iterator[None]:
    """Pillow's decompression-bomb warning (at half its error level; phototag applies its
    own limit) and its "corrupt EXIF" UserWarnings silenced: noise for our callers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        yield


_heif_lock = threading.Lock()
_heif_state: dict[str, bool] = {}  # "registered": whether pillow-heif's opener is in


def _heif_available() -> bool:
    """Register pillow-heif's Pillow opener on first need (once per process)."""
    if "registered" not in _heif_state:
        with _heif_lock:
            if "registered" not in _heif_state:
                try:
                    import pillow_heif
                except ImportError:
                    _heif_state["registered"] = False
                else:
                    pillow_heif.register_heif_opener()
                    _heif_state["registered"] = True
    return _heif_state["registered"]


_avif_state: dict[str, bool] = {}


def _avif_available() -> bool:
    if "available" not in _avif_state:
        try:
            _avif_state["available"] = bool(features.check_module("avif"))
        except ValueError:  # a Pillow that does not know AVIF at all
            _avif_state["available"] = False
    return _avif_state["available"]


def _formats_for(head: bytes) -> tuple[str, ...]:
    if head[4:8] != b"ftyp":
        return _BUILTIN_FORMATS
    # ISO base media file (HEIC/HEIF/AVIF): Pillow's AVIF first, then pillow-heif.
    extra = (("AVIF",) if _avif_available() else ()) + (("HEIF",) if _heif_available() else ())
    return _BUILTIN_FORMATS + extra


def _open_with_pillow(
    f: IO[bytes], path: str | os.PathLike[str], head: bytes, size: int
) -> Image.Image:
    """Identify the file and read its header (no pixels yet)."""
    try:
        return Image.open(f, formats=_formats_for(head))
    except Image.DecompressionBombError as error:
        raise _bomb_error(path, error) from error
    except UnidentifiedImageError as error:
        raise _unidentified_error(f, path, head, size) from error
    except MemoryError:
        raise
    except Exception as error:  # any decoder failure on a bad file, whatever its type
        raise _decode_error(f, path, head, size, error) from error


def _decode(
    image: Image.Image, f: IO[bytes], path: str | os.PathLike[str], head: bytes, size: int
) -> None:
    """Decode every pixel now, so that truncation and damage surface here."""
    try:
        image.load()
    except Image.DecompressionBombError as error:
        raise _bomb_error(path, error) from error
    except MemoryError:
        raise
    except Exception as error:
        raise _decode_error(f, path, head, size, error) from error


def _apply_exif_orientation(image: Image.Image) -> None:
    """Rotate/flip per the EXIF Orientation tag; unreadable EXIF means "as stored"."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except MemoryError:
        raise
    except Exception as error:  # broken EXIF must not cost the user the photo
        _log.debug("ignoring unreadable EXIF orientation: %s", error)


def _bomb_error(path: str | os.PathLike[str], error: Exception) -> ImageLoadError:
    return ImageLoadError(
        path,
        "too_large",
        f"{error} This is Pillow's own process-wide limit, 2 x PIL.Image.MAX_IMAGE_PIXELS; "
        "raise that too",
    )


def _sniff(head: bytes) -> str | None:
    """Format named by the file's magic bytes, for error reporting only."""
    if head.startswith(b"\xff\xd8"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 18:
        dib_header_size = struct.unpack_from("<I", head, 14)[0]
        if dib_header_size in (12, 16, 40, 52, 56, 64, 108, 124):
            return "BMP"
    if head[4:8] == b"ftyp":
        return "AVIF" if head[8:12] in (b"avif", b"avis") else "HEIF"
    return None


def _unidentified_error(
    f: IO[bytes], path: str | os.PathLike[str], head: bytes, size: int
) -> ImageLoadError:
    kind = _sniff(head)
    if kind is None:
        return ImageLoadError(path, "not_an_image")
    if kind == "HEIF" and not _heif_available():
        return ImageLoadError(path, "unsupported", "HEIC/HEIF needs the pillow-heif package")
    if kind == "AVIF" and not _avif_available():
        return ImageLoadError(path, "unsupported", "this Pillow was built without AVIF")
    if _looks_truncated(f, kind, head, size):
        return ImageLoadError(path, "truncated", f"{kind} header incomplete")
    return ImageLoadError(path, "corrupt", f"{kind} header cannot be read")


def _decode_error(
    f: IO[bytes], path: str | os.PathLike[str], head: bytes, size: int, error: Exception
) -> ImageLoadError:
    if isinstance(error, OSError) and error.errno is not None:  # a real read error
        return _error_from_os(path, error)
    detail = str(error) or type(error).__name__
    kind = _sniff(head)
    if kind is None:  # e.g. a text file starting with "BM" that Pillow's BMP plugin tried
        return ImageLoadError(path, "not_an_image", detail)
    if (
        isinstance(error, EOFError)
        or "truncated" in detail.lower()
        or _looks_truncated(f, kind, head, size)
    ):
        return ImageLoadError(path, "truncated", detail)
    return ImageLoadError(path, "corrupt", detail)


def _looks_truncated(f: IO[bytes], kind: str, head: bytes, size: int) -> bool:
    """Cheap structural check: does the file stop before its format says it ends?"""
    try:
        if kind == "WEBP":
            return struct.unpack_from("<I", head, 4)[0] + 8 > size
        if kind == "BMP":
            declared = struct.unpack_from("<I", head, 2)[0]
            return declared > size
        if kind == "TIFF":
            if len(head) < 16:
                return True
            order = "<" if head[:2] == b"II" else ">"
            if head[2:4] in (b"+\x00", b"\x00+"):  # BigTIFF
                return struct.unpack_from(order + "Q", head, 8)[0] >= size
            return struct.unpack_from(order + "I", head, 4)[0] >= size
        if kind in ("HEIF", "AVIF"):
            return _isobmff_truncated(f, size)
        if kind == "JPEG":
            return _jpeg_truncated(f, size)
        f.seek(max(0, size - 64))
        tail = f.read(64)
        if kind == "PNG":
            return b"IEND" not in tail[-16:]
        if kind == "GIF":
            return b";" not in tail[-4:]
    except (OSError, struct.error):
        return True
    return False


_JPEG_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7


def _jpeg_truncated(f: IO[bytes], size: int) -> bool:
    """Walk the JPEG's segments: truncated if one runs past the end or the scan data
    has no end marker; bytes where a marker must be mean damage, not truncation."""
    position = 2
    for _ in range(10_000):
        f.seek(position)
        header = f.read(4)
        if len(header) < 2:
            return True
        if header[0] != 0xFF:
            return False
        marker = header[1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == 0xD9:  # end of image
            return False
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        if len(header) < 4:
            return True
        end = position + 2 + struct.unpack_from(">H", header, 2)[0]
        if end > size:
            return True
        if marker == 0xDA:  # start of scan: entropy-coded data runs to the end marker
            f.seek(max(end, size - 64))
            return b"\xff\xd9" not in f.read(64)
        position = end
    return False


def _isobmff_truncated(f: IO[bytes], size: int) -> bool:
    position = 0
    for _ in range(10_000):
        if position >= size:
            return position > size
        f.seek(position)
        header = f.read(16)
        if len(header) < 8:
            return True
        box_size = struct.unpack_from(">I", header)[0]
        if box_size == 1:
            if len(header) < 16:
                return True
            box_size = struct.unpack_from(">Q", header, 8)[0]
        elif box_size == 0:  # box runs to the end of the file
            return False
        if box_size < 8:
            return False  # not a box structure we understand: call it corrupt
        position += box_size
    return False


# --------------------------------------------------------------------------- modes

_SIXTEEN_BIT_MODES: Final = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_TO_STRAIGHT_ALPHA: Final = {"RGBa": "RGBA", "La": "LA", "PA": "RGBA"}


def _to_rgb(image: Image.Image, path: str | os.PathLike[str]) -> Image.Image:
    """Every pixel mode to 8-bit RGB; the table is in docs/imaging.md."""
    mode = image.mode
    if mode in ("P", "L", "RGB") and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"  # palette / colour-key transparency
    if mode in _TO_STRAIGHT_ALPHA:
        image = image.convert(_TO_STRAIGHT_ALPHA[mode])
        mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("RGBA", "LA"):
        return _flatten_on_white(image)
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image)
        if values.dtype.kind != "u":
            values = np.clip(values, 0, 65535)
        return Image.fromarray((values >> 8).astype(np.uint8)).convert("RGB")
    if mode == "F":
        return Image.fromarray(_stretch_to_uint8(np.asarray(image))).convert("RGB")
    try:
        return image.convert("RGB")  # 1, L, P, CMYK, YCbCr, RGBX, LAB, HSV
    except (ValueError, OSError) as error:
        raise ImageLoadError(path, "unsupported", f"pixel mode {mode!r}: {error}") from error


def _flatten_on_white(image: Image.Image) -> Image.Image:
    """Composite onto white: out = round(c * a/255 + 255 * (1 - a/255))."""
    colour_mode = "RGB" if image.mode == "RGBA" else "L"
    background = Image.new(colour_mode, image.size, "white")
    background.paste(image.convert(colour_mode), mask=image.getchannel("A"))
    return background if colour_mode == "RGB" else background.convert("RGB")


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Float pixels: map the finite min..max linearly onto 0..255 (rounded half up).

    NaN and -inf become 0, +inf 255; a constant image becomes 0.
    """
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    out = np.zeros(values.shape, dtype=np.float64)
    if finite.any():
        low, high = values[finite].min(), values[finite].max()
        if high > low:
            out[finite] = (values[finite] - low) * (255.0 / (high - low))
    out[values == np.inf] = 255.0
    return np.floor(np.clip(out, 0.0, 255.0) + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------- walking


def iter_image_files(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    recursive: bool = True,
) -> Iterator[Path]:
    """Yield the image files named by ``paths`` (files and folders), in a stable order.

    - Arguments are taken in the order given; a single path may be passed bare.
    - A folder yields its images sorted by name (case-sensitive, code-point order:
      ``B.jpg`` before ``a.jpg``), descending into sub-folders at their place in that
      order, i.e. sorted by path components. ``recursive=False`` stays in the folder.
    - Inside folders, hidden entries (name starting with ``.``) are skipped, files
      and folders alike, and so is every file whose extension is not in
      :data:`IMAGE_EXTENSIONS` (case-insensitive) or that is not a regular file.
    - A file named explicitly is yielded if its extension is an image extension,
      even when hidden; otherwise it is skipped silently (so shell globs work).
    - Symbolic links are followed. Every real folder and every real file (same
      device and inode: symlinks, hard links, overlapping arguments) is visited
      once, under the first path in output order; this also ends symlink loops.
    - Paths are yielded as reached from the arguments (not resolved).
    - A named path that does not exist or cannot be read raises
      :class:`ImageLoadError` immediately, at the call; unreadable entries *below*
      a named folder are logged as warnings and skipped.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    roots: list[tuple[Path, os.stat_result]] = []
    for raw in paths:
        root = Path(raw)
        try:
            roots.append((root, root.stat()))
        except OSError as error:
            raise _error_from_os(root, error) from error
    return _walk(roots, recursive)


def _walk(roots: list[tuple[Path, os.stat_result]], recursive: bool) -> Iterator[Path]:
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    for root, info in roots:
        if stat.S_ISREG(info.st_mode):
            if _has_image_extension(root.name) and _first_visit(info, seen_files):
                yield root
            continue
        if not stat.S_ISDIR(info.st_mode) or not _first_visit(info, seen_dirs):
            continue
        try:
            children = _list_dir(root, include_dirs=recursive)
        except OSError as error:
            raise _error_from_os(root, error) from error
        # Depth first; children pushed in reverse so they pop in name order.
        stack = children[::-1]
        while stack:
            path, info, is_dir = stack.pop()
            if not is_dir:
                if _first_visit(info, seen_files):
                    yield path
                continue
            if not _first_visit(info, seen_dirs):
                continue  # reached before, through another path or a symlink loop
            try:
                children = _list_dir(path, include_dirs=True)
            except OSError as error:
                _log.warning("skipping unreadable folder %s: %s", path, error)
                continue
            stack.extend(children[::-1])


def _list_dir(path: Path, include_dirs: bool) -> list[tuple[Path, os.stat_result, bool]]:
    children = []
    with os.scandir(path) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()  # follows symlinks
                if not is_dir and not _has_image_extension(name):
                    continue
                if is_dir and not include_dirs:
                    continue
                info = entry.stat()  # follows symlinks
            except OSError as error:  # broken link, link loop, vanished entry
                if error.errno not in (errno.ENOENT, errno.ELOOP):
                    _log.warning("skipping %s: %s", entry.path, error)
                continue
            if is_dir or stat.S_ISREG(info.st_mode):
                children.append((path / name, info, is_dir))
    children.sort(key=lambda child: child[0].name)
    return children


def _has_image_extension(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _first_visit(info: os.stat_result, seen: set[tuple[int, int]]) -> bool:
    key = (info.st_dev, info.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return True


# --------------------------------------------------------------------------- hashing


def file_digest(path: str | os.PathLike[str]) -> str:
    """BLAKE2b-256 of the file's bytes as 64 hex digits (streamed, any file size).

    The feature store's content key: the same bytes give the same key wherever the
    file lives or whatever it is called. Raises :class:`ImageLoadError` (reasons
    ``missing``, ``not_a_file``, ``permission_denied``, ``unreadable``).
    """
    with _open_regular_file(path) as (f, _size):
        try:
            digest = hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=32))
        except OSError as error:
            raise _error_from_os(path, error) from error
    return digest.hexdigest()
