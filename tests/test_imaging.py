"""phototag.imaging: formats, orientation, modes, reduced-size decoding, errors, walking.

Every file is written at test time into tmp_path with Pillow/numpy.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import struct
import sys
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, JpegImagePlugin, features

from phototag import imaging
from phototag.errors import InvalidInputError, PhototagError
from phototag.imaging import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageHeader,
    ImageLoadError,
    file_digest,
    iter_image_files,
    load_image,
    load_rgb,
    read_header,
)

# A 3x2 grid of clearly different colours: asymmetric under every flip and rotation.
GRID = np.array(
    [
        [(230, 20, 20), (20, 200, 20), (20, 20, 230)],
        [(240, 240, 20), (230, 20, 230), (20, 230, 230)],
    ],
    dtype=np.uint8,
)
BLOCK = 16


def grid_image(block: int = BLOCK) -> np.ndarray:
    """GRID blown up to blocks of block x block pixels (48 x 32 for 16)."""
    return np.repeat(np.repeat(GRID, block, axis=0), block, axis=1)


def block_centres(array: np.ndarray, block: int = BLOCK) -> np.ndarray:
    return array[block // 2 :: block, block // 2 :: block].astype(int)


def save(path: Path, image: Image.Image, fmt: str | None = None, **options) -> Path:
    image.save(path, fmt, **options)
    return path


def heif_encoder_or_skip():
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif not installed")
    if not pillow_heif.libheif_info().get("encoders"):
        pytest.skip("this libheif build has no HEIF encoder, cannot write a test file")
    return pillow_heif


def write_heic(path: Path, image: Image.Image) -> Path:
    pillow_heif = heif_encoder_or_skip()
    pillow_heif.from_pillow(image).save(path, quality=95)
    return path


# --------------------------------------------------------------------------- formats


LOSSLESS = {
    "png": ("PNG", {}),
    "webp": ("WEBP", {"lossless": True}),
    "tiff": ("TIFF", {}),
    "tif": ("TIFF", {"compression": "tiff_lzw"}),
    "bmp": ("BMP", {}),
    "gif": ("GIF", {}),
}


@pytest.mark.parametrize("suffix", sorted(LOSSLESS))
def test_lossless_formats_round_trip_exactly(tmp_path, suffix):
    fmt, options = LOSSLESS[suffix]
    pixels = grid_image()
    path = save(tmp_path / f"grid.{suffix}", Image.fromarray(pixels), fmt, **options)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (48, 32)
    assert np.array_equal(np.asarray(image), pixels)


def test_jpeg_round_trips_closely(tmp_path):
    path = save(tmp_path / "grid.jpg", Image.fromarray(grid_image()), quality=95, subsampling=0)
    array = load_rgb(path)
    assert array.shape == (32, 48, 3) and array.dtype == np.uint8
    assert np.abs(block_centres(array) - GRID.astype(int)).max() <= 8


def test_heic_round_trips(tmp_path):
    path = write_heic(tmp_path / "grid.heic", Image.fromarray(grid_image()))
    array = load_rgb(path)
    assert array.shape == (32, 48, 3)
    assert np.abs(block_centres(array) - GRID.astype(int)).max() <= 40


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF codec")
def test_avif_round_trips(tmp_path):
    path = save(tmp_path / "grid.avif", Image.fromarray(grid_image()), quality=95)
    array = load_rgb(path)
    assert array.shape == (32, 48, 3)
    assert np.abs(block_centres(array) - GRID.astype(int)).max() <= 40


def test_content_decides_the_format_not_the_extension(tmp_path):
    path = save(tmp_path / "really_a_png.jpg", Image.fromarray(grid_image()), "PNG")
    assert np.array_equal(load_rgb(path), grid_image())


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = save(tmp_path / "anim.gif", frames[0], save_all=True, append_images=frames[1:])
    assert load_image(path).getpixel((4, 4)) == (255, 0, 0)


def test_multi_picture_jpeg_gives_the_primary_image(tmp_path):
    first = Image.fromarray(grid_image())
    path = save(
        tmp_path / "mpo.jpg", first, "MPO", save_all=True, append_images=[first.resize((8, 8))]
    )
    assert load_image(path).size == (48, 32)


def test_load_rgb_is_a_writable_contiguous_copy(tmp_path):
    path = save(tmp_path / "grid.png", Image.fromarray(grid_image()))
    array = load_rgb(path)
    assert array.flags.writeable and array.flags.c_contiguous
    array[0, 0] = 0  # must not raise


# --------------------------------------------------------------------------- orientation


def displayed(stored: np.ndarray, orientation: int) -> np.ndarray:
    """What a viewer shows for `stored` pixels with this EXIF Orientation (EXIF 2.32, 4.6.4A).

    Written from the spec's wording (exiftool's names), not from Pillow's table.
    """
    if orientation == 1:  # Horizontal (normal)
        return stored
    if orientation == 2:  # Mirror horizontal
        return np.fliplr(stored)
    if orientation == 3:  # Rotate 180
        return np.rot90(stored, 2)
    if orientation == 4:  # Mirror vertical
        return np.flipud(stored)
    if orientation == 5:  # Mirror horizontal and rotate 270 CW
        return np.rot90(np.fliplr(stored), 1)
    if orientation == 6:  # Rotate 90 CW
        return np.rot90(stored, -1)
    if orientation == 7:  # Mirror horizontal and rotate 90 CW
        return np.rot90(np.fliplr(stored), -1)
    if orientation == 8:  # Rotate 270 CW
        return np.rot90(stored, 1)
    raise ValueError(orientation)


def exif_with_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_in_jpeg(tmp_path, orientation):
    stored = grid_image()
    path = save(
        tmp_path / f"o{orientation}.jpg",
        Image.fromarray(stored),
        quality=95,
        subsampling=0,
        exif=exif_with_orientation(orientation).tobytes(),
    )
    expected = displayed(stored, orientation)
    array = load_rgb(path)
    assert array.shape == expected.shape
    assert np.abs(block_centres(array) - block_centres(expected)).max() <= 8


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_in_png_is_exact(tmp_path, orientation):
    stored = grid_image(block=2)
    exif = exif_with_orientation(orientation).tobytes()
    path = save(tmp_path / f"o{orientation}.png", Image.fromarray(stored), exif=exif)
    assert np.array_equal(load_rgb(path), displayed(stored, orientation))


@pytest.mark.parametrize("fmt, options", [("TIFF", {}), ("WEBP", {"lossless": True})])
@pytest.mark.parametrize("orientation", [5, 6])
def test_exif_orientation_in_tiff_and_webp(tmp_path, fmt, options, orientation):
    stored = grid_image(block=2)
    exif = exif_with_orientation(orientation)
    exif_option = exif if fmt == "TIFF" else exif.tobytes()
    path = save(tmp_path / "o.img", Image.fromarray(stored), fmt, exif=exif_option, **options)
    assert np.array_equal(load_rgb(path), displayed(stored, orientation))


def test_unreadable_exif_keeps_the_stored_orientation(tmp_path):
    stored = grid_image(block=2)
    path = save(tmp_path / "bad_exif.png", Image.fromarray(stored), exif=b"Exif\x00\x00garbage!")
    assert np.array_equal(load_rgb(path), stored)


# --------------------------------------------------------------------------- modes


def one_row(path: Path, image: Image.Image, fmt: str = "PNG", **options) -> list[tuple]:
    save(path, image, fmt, **options)
    array = load_rgb(path)
    assert array.shape == (image.height, image.width, 3)
    return [tuple(int(v) for v in pixel) for pixel in array[0]]


def test_rgba_is_composited_onto_white(tmp_path):
    image = Image.new("RGBA", (2, 1), (200, 100, 0, 64))
    image.putpixel((1, 0), (10, 20, 30, 0))
    # round(c * 64/255 + 255 * 191/255): 241, 216, 191; alpha 0 -> white
    assert one_row(tmp_path / "rgba.png", image) == [(241, 216, 191), (255, 255, 255)]


def test_alpha_compositing_formula_holds_for_every_value_pair(tmp_path):
    colour, alpha = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    rgba = np.stack([colour, 255 - colour, colour // 2, alpha], axis=-1).astype(np.uint8)
    path = save(tmp_path / "all.png", Image.fromarray(rgba))
    expected = rgba[..., :3].astype(int) * alpha[..., None] + 255 * (255 - alpha[..., None])
    expected = (expected + 127) // 255  # round half up of x / 255
    assert np.array_equal(load_rgb(path), expected)


def test_la_is_composited_onto_white(tmp_path):
    image = Image.merge("LA", [Image.new("L", (2, 1), 100), Image.new("L", (2, 1), 128)])
    image.putpixel((1, 0), (100, 255))
    # round(100 * 128/255 + 127) = 177
    assert one_row(tmp_path / "la.png", image) == [(177, 177, 177), (100, 100, 100)]


def test_palette_with_transparency_is_composited_onto_white(tmp_path):
    image = Image.new("P", (3, 1))
    image.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0] + [0] * (256 * 3 - 9))
    image.putdata([0, 1, 2])
    alpha_per_index = bytes([0, 128, 255])
    row = one_row(tmp_path / "p.png", image, transparency=alpha_per_index)
    assert row == [(255, 255, 255), (127, 127, 255), (0, 255, 0)]


def test_gif_transparent_index_becomes_white(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    image.putdata([0, 1])
    assert one_row(tmp_path / "t.gif", image, "GIF", transparency=0) == [
        (255, 255, 255),
        (0, 0, 255),
    ]


def test_rgb_colour_key_transparency_becomes_white(tmp_path):
    image = Image.new("RGB", (2, 1), (1, 2, 3))
    image.putpixel((1, 0), (9, 8, 7))
    row = one_row(tmp_path / "key.png", image, transparency=(1, 2, 3))
    assert row == [(255, 255, 255), (9, 8, 7)]


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_sixteen_bit_grey_keeps_the_high_byte(tmp_path, fmt):
    values = np.array([[0xABCD, 0x00FF, 0xFFFF, 0x0100]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    row = one_row(tmp_path / "g16.img", image, fmt)
    assert [pixel[0] for pixel in row] == [0xAB, 0x00, 0xFF, 0x01]
    assert all(pixel[0] == pixel[1] == pixel[2] for pixel in row)


def test_32_bit_integer_grey_is_clipped_to_16_bits_then_high_byte(tmp_path):
    image = Image.fromarray(np.array([[-5, 0x1234, 70000, 65535]], dtype=np.int32))
    assert image.mode == "I"
    assert [p[0] for p in one_row(tmp_path / "i32.tif", image, "TIFF")] == [0, 0x12, 255, 255]


def test_float_grey_is_stretched_over_its_actual_range(tmp_path):
    values = np.array([[0.0, 1.0, 4.0, 5.0, np.nan]], dtype=np.float32)
    image = Image.fromarray(values)
    assert image.mode == "F"
    # (v - 0) / (5 - 0) * 255 -> 0, 51, 204, 255; NaN -> 0
    assert [p[0] for p in one_row(tmp_path / "f.tif", image, "TIFF")] == [0, 51, 204, 255, 0]


def test_bilevel_and_grey(tmp_path):
    bilevel = Image.new("1", (2, 1), 0)
    bilevel.putpixel((1, 0), 1)
    assert one_row(tmp_path / "one.png", bilevel) == [(0, 0, 0), (255, 255, 255)]
    assert one_row(tmp_path / "one.bmp", bilevel, "BMP") == [(0, 0, 0), (255, 255, 255)]
    assert one_row(tmp_path / "grey.png", Image.new("L", (1, 1), 77)) == [(77, 77, 77)]


CMYK = (10, 200, 60, 100)
CMYK_AS_RGB = (149, 33, 119)  # round((255 - c) * (255 - k) / 255)


def test_cmyk_tiff_uses_the_documented_formula(tmp_path):
    row = one_row(tmp_path / "cmyk.tif", Image.new("CMYK", (1, 1), CMYK), "TIFF")
    assert row == [CMYK_AS_RGB]


def test_cmyk_jpeg_adobe_inverted(tmp_path):
    path = save(tmp_path / "cmyk.jpg", Image.new("CMYK", (16, 16), CMYK), quality=100)
    data = path.read_bytes()
    assert b"Adobe" in data  # APP14 marker: ink values are stored inverted (Adobe)
    pixel = load_rgb(path)[8, 8].astype(int)
    assert np.abs(pixel - np.array(CMYK_AS_RGB)).max() <= 1


# --------------------------------------------------------------------------- sizing


def gradient(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.jpg"
    gradient(4000, 3000).save(path, quality=85)
    return path


@pytest.fixture
def decode_spy(monkeypatch):
    """Records JPEG draft requests/results and the input size of every resize."""
    calls: dict[str, list] = {"draft": [], "resize": []}
    original_draft = JpegImagePlugin.JpegImageFile.draft
    original_resize = Image.Image.resize

    def draft(self, mode, size):
        result = original_draft(self, mode, size)
        calls["draft"].append((size, self.size, result))
        return result

    def resize(self, size, *args, **kwargs):
        calls["resize"].append((self.size, tuple(size)))
        return original_resize(self, size, *args, **kwargs)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", draft)
    monkeypatch.setattr(Image.Image, "resize", resize)
    return calls


def test_large_jpeg_is_decoded_at_reduced_size(big_jpeg, decode_spy):
    image = load_image(big_jpeg, min_side=260)
    assert image.size == (347, 260)  # 4000 * 260 / 3000 = 346.67, rounded
    [(requested, decoded, result)] = decode_spy["draft"]
    assert requested == (347, 260)
    assert decoded == (500, 375)  # 1/8 DCT scale: the smallest still >= 347 x 260
    assert result is not None
    assert decoded[1] <= 2 * 260
    assert decode_spy["resize"] == [((500, 375), (347, 260))]


def test_reduced_decoding_picks_the_smallest_scale_that_is_big_enough(big_jpeg, decode_spy):
    load_image(big_jpeg, max_side=1200)  # needs 1200 x 900: 1/2 gives 2000 x 1500, 1/4 too small
    assert decode_spy["draft"][0][1] == (2000, 1500)
    assert decode_spy["resize"] == [((2000, 1500), (1200, 900))]


def test_without_resampling_only_the_dct_scale_reduces(big_jpeg, tmp_path, decode_spy):
    image = load_image(big_jpeg, min_side=260, resample=False)
    assert image.size == (500, 375) and decode_spy["resize"] == []  # 1/8 scale, as decoded
    small = save(tmp_path / "small.png", gradient(400, 300))
    assert load_image(small, min_side=600, resample=False).size == (400, 300)  # no upscaling


def test_full_size_load_does_not_draft(big_jpeg, decode_spy):
    assert load_image(big_jpeg).size == (4000, 3000)
    assert decode_spy["draft"] == [] and decode_spy["resize"] == []


def test_reduced_decoding_respects_orientation(tmp_path, decode_spy):
    path = tmp_path / "rotated.jpg"
    gradient(1600, 1200).save(path, quality=85, exif=exif_with_orientation(6).tobytes())
    image = load_image(path, min_side=150)
    assert image.size == (150, 200)  # shown upright: 1200 wide, 1600 tall
    assert decode_spy["draft"][0][1] == (200, 150)  # decoded 1/8, still in stored orientation


@pytest.mark.parametrize(
    "kwargs, size",
    [
        ({}, (400, 300)),
        ({"min_side": 150}, (200, 150)),
        ({"min_side": 600}, (800, 600)),  # min_side scales up too
        ({"max_side": 200}, (200, 150)),
        ({"max_side": 1000}, (400, 300)),  # max_side never scales up
        ({"min_side": 300, "max_side": 350}, (350, 263)),  # cap wins: 300*350/400 = 262.5
        ({"min_side": 100, "max_side": 1000}, (133, 100)),
    ],
)
def test_sizing_rules(tmp_path, kwargs, size):
    path = save(tmp_path / "g.png", gradient(400, 300))
    assert load_image(path, **kwargs).size == size
    portrait = save(tmp_path / "p.png", gradient(300, 400))
    assert load_image(portrait, **kwargs).size == size[::-1]


def test_very_thin_image_is_not_a_bomb_and_keeps_at_least_one_pixel(tmp_path):
    path = save(tmp_path / "thin.png", Image.new("RGB", (1, 100_000), (5, 6, 7)))
    assert load_image(path).size == (1, 100_000)
    assert load_image(path, max_side=1000).size == (1, 1000)  # 0.01 rounds up to 1


@pytest.mark.parametrize("name", ["min_side", "max_side", "max_pixels"])
@pytest.mark.parametrize("value", [0, -3, 2.5, True, "224"])
def test_bad_size_arguments_are_rejected(tmp_path, name, value):
    path = save(tmp_path / "g.png", gradient(4, 3))
    with pytest.raises(InvalidInputError, match=name):
        load_image(path, **{name: value})


# --------------------------------------------------------------------------- errors


def assert_load_error(path, reason: str, **kwargs) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as caught:
        load_image(path, **kwargs)
    error = caught.value
    assert error.reason == reason, str(error)
    assert error.path == Path(path)
    assert str(path) in str(error)
    assert ImageLoadError.REASONS[reason][0] in str(error)
    assert isinstance(error, PhototagError) and isinstance(error, OSError)
    return error


def encoded(fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    gradient(120, 90).save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def jpeg_bytes() -> bytes:
    return encoded("JPEG", quality=90)


@pytest.mark.parametrize("keep", [2, 10, 100, 1 / 3, 1 / 2, -100, -2])
def test_truncated_jpeg(tmp_path, jpeg_bytes, keep):
    cut = int(len(jpeg_bytes) * keep) if isinstance(keep, float) else keep % len(jpeg_bytes)
    path = tmp_path / "cut.jpg"
    path.write_bytes(jpeg_bytes[:cut])
    assert_load_error(path, "truncated")


@pytest.mark.parametrize(
    "fmt, options",
    [
        ("PNG", {}),
        ("GIF", {}),
        ("WEBP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
        ("BMP", {}),
        ("JPEG", {"progressive": True}),
    ],
)
def test_truncated_other_formats(tmp_path, fmt, options):
    data = encoded(fmt, **options)
    path = tmp_path / "cut.img"
    path.write_bytes(data[: len(data) // 2])
    assert_load_error(path, "truncated")


def test_truncated_heic(tmp_path):
    data = write_heic(tmp_path / "whole.heic", gradient(64, 48)).read_bytes()
    path = tmp_path / "cut.heic"
    path.write_bytes(data[: len(data) - 40])
    assert_load_error(path, "truncated")


def test_flipped_bytes_in_a_png_are_corrupt(tmp_path):
    data = bytearray(encoded("PNG"))
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    path = tmp_path / "flipped.png"
    path.write_bytes(bytes(data))
    assert_load_error(path, "corrupt")


def test_damaged_jpeg_header_is_corrupt(tmp_path, jpeg_bytes):
    data = bytearray(jpeg_bytes)
    data[2:40] = b"\x00" * 38
    path = tmp_path / "header.jpg"
    path.write_bytes(bytes(data))
    assert_load_error(path, "corrupt")


@pytest.mark.parametrize("header_bytes", [2, 20, 200])
def test_random_bytes_after_a_jpeg_header_are_corrupt_not_truncated(
    tmp_path, jpeg_bytes, header_bytes
):
    random_tail = np.random.default_rng(header_bytes).bytes(5000)
    for tail in (random_tail, random_tail + b"\xff\xd9"):
        path = tmp_path / "noise.jpg"
        path.write_bytes(jpeg_bytes[:header_bytes] + tail.replace(b"\xff", b"\x00"))
        error = assert_load_error(path, "corrupt")
        assert "copy it again" not in str(error)


FUZZ_FORMATS = [
    ("JPEG", {}),
    ("PNG", {}),
    ("GIF", {}),
    ("WEBP", {}),
    ("TIFF", {"compression": "tiff_lzw"}),
    ("BMP", {}),
]


@pytest.mark.parametrize("fmt, options", FUZZ_FORMATS)
def test_damaged_files_give_an_image_or_image_load_error_only(tmp_path, fmt, options):
    """Damage a decoder cannot notice (flipped JPEG entropy bits) may still decode."""
    data = encoded(fmt, **options)
    rng = np.random.default_rng(len(data))
    path = tmp_path / "fuzz.img"
    for trial in range(25):
        damaged = bytearray(data)
        if trial % 3 == 0:
            damaged = damaged[: int(rng.integers(1, len(data)))]
        else:
            for position in rng.integers(0, len(data), size=int(rng.integers(1, 20))):
                damaged[position] = int(rng.integers(0, 256))
        path.write_bytes(bytes(damaged))
        try:
            image = load_image(path)
        except ImageLoadError as error:
            assert error.reason in ("truncated", "corrupt", "not_an_image", "too_large")
        else:
            assert image.mode == "RGB"


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert_load_error(path, "empty")


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("BMW and other cars\n" * 20)
    assert_load_error(path, "not_an_image")


def test_directory_passed_as_a_file(tmp_path):
    folder = tmp_path / "album.jpg"
    folder.mkdir()
    error = assert_load_error(folder, "not_a_file")
    assert "folder" in str(error)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert_load_error(fifo, "not_a_file")


def test_missing_file(tmp_path):
    assert_load_error(tmp_path / "nope.jpg", "missing")
    not_a_folder = save(tmp_path / "a.png", gradient(4, 3))
    assert_load_error(not_a_folder / "b.png", "missing")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="needs a non-root POSIX user (root reads files whatever their permissions)",
)
def test_unreadable_file(tmp_path):
    path = save(tmp_path / "secret.png", gradient(4, 3))
    path.chmod(0)
    try:
        assert_load_error(path, "permission_denied")
    finally:
        path.chmod(0o644)


def test_permission_error_maps_to_permission_denied(tmp_path, monkeypatch):
    """Root-proof companion of test_unreadable_file: the OS refuses the open."""
    path = save(tmp_path / "secret.png", gradient(4, 3))
    real_open = os.open

    def refusing_open(target, *args, **kwargs):
        if os.fspath(target) == os.fspath(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(target))
        return real_open(target, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    assert_load_error(path, "permission_denied")
    with pytest.raises(ImageLoadError, match="permission denied"):
        file_digest(path)


def test_loading_from_many_threads(tmp_path):
    paths = [save(tmp_path / f"{i}.png", gradient(60 + i, 40)) for i in range(16)]
    paths.append(tmp_path / "missing.jpg")

    def attempt(path):
        try:
            return load_image(path, min_side=20).size
        except ImageLoadError as error:
            return error.reason

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(attempt, paths * 4))
    widths = [(60 + i + 1) // 2 for i in range(16)]  # (60 + i) / 2, rounded half up
    assert results[:17] == [(width, 20) for width in widths] + ["missing"]
    assert results == results[:17] * 4


def png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (data for one row only)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" + b"\x00" * 3 * min(width, 1000))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_beyond_pillows_limit(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_declared_size(50_000, 50_000))
    error = assert_load_error(path, "too_large")
    assert "MAX_IMAGE_PIXELS" in str(error)


def test_decompression_bomb_at_our_limit_without_any_warning(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_declared_size(10_000, 10_000))  # Pillow would warn here
    assert DEFAULT_MAX_PIXELS > 100_000_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        error = assert_load_error(path, "too_large", max_pixels=50_000_000)
    assert "10000x10000" in str(error) and "50,000,000" in str(error)


def test_pixel_limit_is_configurable(tmp_path):
    path = save(tmp_path / "small.png", gradient(40, 30))
    assert_load_error(path, "too_large", max_pixels=1199)
    assert load_image(path, max_pixels=1200).size == (40, 30)
    assert load_image(path, max_pixels=None).size == (40, 30)


def test_heic_without_pillow_heif_is_unsupported(tmp_path, monkeypatch):
    path = write_heic(tmp_path / "x.heic", gradient(32, 24))
    monkeypatch.setattr(imaging, "_heif_state", {})
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import now fails
    error = assert_load_error(path, "unsupported")
    assert "pillow-heif" in str(error)


def test_image_load_error_survives_pickling():
    import pickle

    error = ImageLoadError("a/b.jpg", "truncated", "cut")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.reason, copy.detail, str(copy)) == (
        Path("a/b.jpg"),
        "truncated",
        "cut",
        str(error),
    )


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_no_file_handles_leak(tmp_path, jpeg_bytes):
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg_bytes)
    bad = [tmp_path / "cut.jpg", tmp_path / "text.jpg", tmp_path / "bomb.png"]
    bad[0].write_bytes(jpeg_bytes[:500])
    bad[1].write_text("hello")
    bad[2].write_bytes(png_with_declared_size(50_000, 50_000))
    load_image(good)  # warm up lazy imports
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(100):
        load_image(good, min_side=30)
        file_digest(good)
        for path in bad:
            with pytest.raises(ImageLoadError):
                load_image(path)
    assert len(os.listdir("/proc/self/fd")) == before


# --------------------------------------------------------------------------- walking


def make_tree(root: Path, files: list[str]) -> None:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


TREE = [
    "A.jpeg",
    "B.PNG",
    "a.jpg",
    "b.Jpg",
    "notes.txt",
    "noext",
    "README.md",
    ".hidden.jpg",
    ".hiddendir/x.jpg",
    "sub/c.webp",
    "sub/deeper/d.TIFF",
    "sub/deeper/e.bmp",
    "sub/.git/f.jpg",
    "sub.jpg",
    "z.heic",
]
EXPECTED = [
    "A.jpeg",
    "B.PNG",
    "a.jpg",
    "b.Jpg",
    "sub/c.webp",
    "sub/deeper/d.TIFF",
    "sub/deeper/e.bmp",
    "sub.jpg",
    "z.heic",
]


def relative(paths, root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_walk_skips_hidden_and_non_images_in_path_component_order(tmp_path):
    make_tree(tmp_path, TREE)
    found = list(iter_image_files([tmp_path]))
    assert relative(found, tmp_path) == EXPECTED
    assert found == sorted(found, key=lambda p: p.relative_to(tmp_path).parts)


def test_walk_non_recursive(tmp_path):
    make_tree(tmp_path, TREE)
    found = relative(iter_image_files(tmp_path, recursive=False), tmp_path)
    assert found == ["A.jpeg", "B.PNG", "a.jpg", "b.Jpg", "sub.jpg", "z.heic"]


def test_walk_accepts_a_single_path_and_keeps_argument_order(tmp_path):
    make_tree(tmp_path, TREE)
    assert relative(iter_image_files(str(tmp_path / "sub")), tmp_path) == EXPECTED[4:7]
    found = relative(iter_image_files([tmp_path / "sub", tmp_path]), tmp_path)
    assert found == EXPECTED[4:7] + EXPECTED[:4] + EXPECTED[7:]  # sub once, first


def test_walk_named_files(tmp_path):
    make_tree(tmp_path, TREE)
    named = [tmp_path / ".hidden.jpg", tmp_path / "notes.txt", tmp_path / "a.jpg"]
    assert relative(iter_image_files(named + [tmp_path / "a.jpg"]), tmp_path) == [
        ".hidden.jpg",
        "a.jpg",
    ]


def test_walk_missing_named_path_fails_at_the_call(tmp_path):
    with pytest.raises(ImageLoadError) as caught:
        iter_image_files([tmp_path, tmp_path / "typo"])  # no iteration needed
    assert caught.value.reason == "missing"
    assert "typo" in str(caught.value)


def test_walk_survives_symlink_loops_and_yields_each_real_file_once(tmp_path):
    root = tmp_path / "root"
    make_tree(root, ["a.jpg", "sub/b.png"])
    make_tree(tmp_path, ["outside/o.jpg"])
    os.symlink(root, root / "sub" / "loop")  # loop back to the top
    os.symlink("../a.jpg", root / "sub" / "same_as_a.jpg")  # same file, second path
    os.symlink(tmp_path / "outside", root / "linked_dir")  # followed
    os.symlink(tmp_path / "outside" / "o.jpg", root / "z_link.jpg")  # already seen by then
    os.symlink("nowhere.jpg", root / "broken.jpg")
    os.symlink("self.jpg", root / "self.jpg")  # a link to itself
    os.link(root / "a.jpg", root / "hard.jpg")  # hard link: same file
    assert relative(iter_image_files([root]), root) == ["a.jpg", "linked_dir/o.jpg", "sub/b.png"]


def test_walk_skips_unreadable_sub_folders_but_not_an_unreadable_named_folder(
    tmp_path, monkeypatch, caplog
):
    make_tree(tmp_path, ["a.jpg", "locked/b.jpg", "open/c.jpg"])
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level("WARNING", logger="phototag.imaging"):
        assert relative(iter_image_files(tmp_path), tmp_path) == ["a.jpg", "open/c.jpg"]
    assert "locked" in caplog.text
    with pytest.raises(ImageLoadError) as caught:
        list(iter_image_files(tmp_path / "locked"))
    assert caught.value.reason == "permission_denied"


def test_walk_order_is_case_sensitive_and_stable(tmp_path):
    names = ["b.jpg", "B.jpg", "a.JPG", "_.png", "10.png", "9.png", "Z/x.png", "a/x.png"]
    make_tree(tmp_path, names)
    first = relative(iter_image_files(tmp_path), tmp_path)
    assert first == ["10.png", "9.png", "B.jpg", "Z/x.png", "_.png", "a/x.png", "a.JPG", "b.jpg"]
    assert relative(iter_image_files(tmp_path), tmp_path) == first


def test_image_extensions_constant():
    assert {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic"} <= (
        IMAGE_EXTENSIONS
    )
    assert all(ext == ext.lower() and ext.startswith(".") for ext in IMAGE_EXTENSIONS)


# --------------------------------------------------------------------------- hashing


def test_file_digest_is_streamed_blake2b_256(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 3_000_001, dtype=np.uint8).tobytes()
    path = tmp_path / "blob.jpg"
    path.write_bytes(data)
    expected = hashlib.blake2b(data, digest_size=32).hexdigest()
    assert file_digest(path) == expected and len(expected) == 64
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert file_digest(empty) == hashlib.blake2b(b"", digest_size=32).hexdigest()


def test_file_digest_errors(tmp_path):
    with pytest.raises(ImageLoadError) as caught:
        file_digest(tmp_path / "missing.jpg")
    assert caught.value.reason == "missing"
    with pytest.raises(ImageLoadError) as caught:
        file_digest(tmp_path)
    assert caught.value.reason == "not_a_file"


def test_read_header_gives_format_and_size_without_decoding(tmp_path, jpeg_bytes, monkeypatch):
    progressive = save(tmp_path / "progressive.jpg", gradient(120, 90), "JPEG", progressive=True)
    bomb = save(tmp_path / "bomb.png", Image.new("1", (14_000, 14_000)), "PNG")
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image))
    baseline = tmp_path / "baseline.jpg"
    baseline.write_bytes(jpeg_bytes)
    assert read_header(baseline) == ImageHeader("JPEG", 120, 90, progressive=False)
    assert read_header(baseline).decodes_at_reduced_size
    assert not read_header(progressive).decodes_at_reduced_size
    assert read_header("upload.png", encoded("PNG")) == ImageHeader("PNG", 120, 90)
    assert decoded == []  # no pixel was decoded
    with pytest.raises(ImageLoadError) as caught:
        read_header(bomb)
    assert caught.value.reason == "too_large"
    with pytest.raises(ImageLoadError) as caught:
        read_header("upload.jpg", b"not an image")
    assert caught.value.reason == "not_an_image" and "upload.jpg" in str(caught.value)
