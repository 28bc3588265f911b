"""Camera RAW files: found by the walker, developed by LibRaw (rawpy), annotated, and
given a sidecar; phototag never writes into them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile  # comes with scikit-image

from phototag.app.cli import main
from phototag.imaging import ImageLoadError, is_raw, iter_image_files, load_image, read_header

H, W = 64, 96


def write_dng(path: Path) -> Path:
    """A small uncompressed DNG (RGGB mosaic, 12 bits): red on the left, blue on the right."""
    raw = np.zeros((H, W), np.uint16)
    raw[0::2, 0::2], raw[0::2, 1::2], raw[1::2, 0::2], raw[1::2, 1::2] = 3000, 1500, 1500, 600
    right = raw[:, W // 2 :]
    right[0::2, 0::2], right[1::2, 1::2] = 600, 3000
    identity = (10000, 10000, 0, 10000, 0, 10000, 0, 10000, 10000, 10000,
                0, 10000, 0, 10000, 0, 10000, 10000, 10000)  # fmt: skip
    tags = [(50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
            (50708, "s", 0, "phototag test", True),  # UniqueCameraModel
            (33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True),  # CFA
            (50717, "I", 1, 4095, True),  # WhiteLevel
            (50721, "2i", 9, identity, True), (50778, "H", 1, 21, True)]  # fmt: skip
    tifffile.imwrite(path, raw, photometric=32803, extratags=tags, subfiletype=0)
    return path


@pytest.fixture
def dng(tmp_path):
    return write_dng(tmp_path / "shot.DNG")


def test_a_raw_file_is_developed_upright_in_colour(dng):
    image = load_image(dng)
    assert image.size == (W, H) and image.mode == "RGB"
    pixels = np.asarray(image, dtype=np.float32)
    left, right = pixels[:, :20].mean(axis=(0, 1)), pixels[:, -20:].mean(axis=(0, 1))
    assert left[0] > left[2] and right[2] > right[0]  # red left, blue right
    assert load_image(dng, min_side=32).size == (48, 32)
    assert read_header(dng).format == "RAW" and read_header(dng).pixels == W * H


def test_raw_files_are_found_and_bad_ones_named(dng, tmp_path):
    for name in ("a.cr2", "b.CR3", "c.nef", "d.arw", "e.raf", "f.orf", "g.rw2"):
        (tmp_path / name).write_bytes(b"not a raw file " * 64)
        assert is_raw(name)
    found = {p.name for p in iter_image_files([tmp_path])}
    assert {"shot.DNG", "a.cr2", "c.nef"} <= found
    cut = tmp_path / "cut.dng"
    cut.write_bytes(dng.read_bytes()[: dng.stat().st_size // 2])
    with pytest.raises(ImageLoadError, match="cut.dng: the file ends before"):
        load_image(cut)
    with pytest.raises(ImageLoadError, match="c.nef: not a supported image"):
        load_image(tmp_path / "c.nef")
    with pytest.raises(ImageLoadError, match="too many pixels"):
        load_image(dng, max_pixels=100)


def test_annotate_writes_a_sidecar_and_never_the_raw_file(dng, tmp_path, capsys):
    before = hashlib.sha256(dng.read_bytes()).hexdigest()
    options = ["--runtime", "torch", "--workers", "0", "--store", str(tmp_path / "store")]
    options += ["--top-k", "3"]  # a synthetic scene: the default model may write nothing
    assert main(["annotate", str(dng), "--format", "json", "--write", "xmp", *options]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert record["tags"]
    assert (tmp_path / "shot.DNG.xmp").is_file()
    assert main(["annotate", str(dng), "--write", "xmp", "--embed", "--restart",
                 *options]) == 1  # fmt: skip
    assert "does not write into camera RAW files" in capsys.readouterr().err
    assert hashlib.sha256(dng.read_bytes()).hexdigest() == before
