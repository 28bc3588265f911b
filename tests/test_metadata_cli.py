"""`phototag annotate --write xmp` and `phototag untag` on real photo files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from phototag.app.cli import main
from phototag.metadata import read_keywords

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("coffee.jpg", "chelsea.jpg"):
        shutil.copyfile(EXAMPLES / name, folder / name)
    return folder


def annotate(photos, model, tmp_path, *extra):
    return main(["annotate", str(photos), "--model", model, "--top-k", "2", "--workers", "0",
                 "--store", str(tmp_path / "store"), *extra])  # fmt: skip


def test_annotate_writes_sidecars_then_untag_removes_them(photos, prior_model, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    assert annotate(photos, prior_model, tmp_path, "--write", "xmp", "--dry-run") == 0
    err = capsys.readouterr().err
    assert f"would change {photos / 'chelsea.jpg.xmp'}: +sky +sea" in err
    assert "keywords: would change 2 files, 0 unchanged, 0 failed" in err
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before
    assert annotate(photos, prior_model, tmp_path, "--write", "xmp") == 0
    assert "keywords: changed 2 files" in capsys.readouterr().err
    assert sorted(p.name for p in photos.iterdir()) == [
        "chelsea.jpg", "chelsea.jpg.xmp", "coffee.jpg", "coffee.jpg.xmp"
    ]
    keywords = read_keywords(photos / "coffee.jpg")
    assert keywords.user == () and [a.label for a in keywords.automatic] == ["sky", "sea"]
    assert keywords.automatic[0].model == "prior:model"
    assert {p.name: p.read_bytes() for p in photos.glob("*.jpg")} == before  # photos untouched
    assert main(["untag", str(photos), "--dry-run"]) == 0
    assert len(list(photos.iterdir())) == 4
    assert main(["untag", str(photos)]) == 0
    out = capsys.readouterr()
    assert "untagged 2 files of 2 photos; 0 failed" in out.err
    assert sorted(p.name for p in photos.iterdir()) == ["chelsea.jpg", "coffee.jpg"]


def test_annotate_embed(photos, prior_model, tmp_path, capsys):
    assert annotate(photos, prior_model, tmp_path, "--write", "xmp", "--embed") == 0
    assert read_keywords(photos / "chelsea.jpg").sources == (photos / "chelsea.jpg",)
    assert [a.label for a in read_keywords(photos / "chelsea.jpg").automatic] == ["sky", "sea"]


def test_embed_and_dry_run_need_write(photos, prior_model, tmp_path, capsys):
    assert annotate(photos, prior_model, tmp_path, "--embed") == 1
    assert "--embed/--dry-run: expected --write xmp with them" in capsys.readouterr().err


def test_a_photo_that_cannot_be_written_fails_the_run_and_is_named(
    photos, prior_model, tmp_path, capsys
):
    from PIL import Image
    from pillow_heif import register_heif_opener

    register_heif_opener()
    Image.open(EXAMPLES / "coffee.jpg").save(photos / "phone.heic")
    assert annotate(photos, prior_model, tmp_path, "--write", "xmp", "--embed") == 1
    err = capsys.readouterr().err
    assert f"keywords not written: {photos / 'phone.heic'}: cannot embed" in err
    assert "keywords: changed 2 files, 0 unchanged, 1 failed" in err
