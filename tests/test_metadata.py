"""Keywords in photo metadata, checked with an independent reader (ExifTool)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from phototag.metadata import (
    MetadataError,
    Provenance,
    read_keywords,
    sidecar_for_writing,
    untag,
    write_keywords,
)
from phototag.metadata import writing as writing_module

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
CONTAINERS = {
    "{http://purl.org/dc/elements/1.1/}subject": "Bag",
    "{http://ns.adobe.com/lightroom/1.0/}hierarchicalSubject": "Bag",
    "{http://www.digikam.org/ns/1.0/}TagsList": "Seq",
}
PROVENANCE = Provenance("tagprop:test", "2026-01-02T03:04:05+00:00")


@pytest.fixture(scope="session")
def exiftool() -> str:
    """The ExifTool binary (Debian's libimage-exiftool-perl, installed by setup.sh)."""
    found = shutil.which("exiftool")
    if found is None:
        message = "exiftool not found: run scripts/setup.sh (installs libimage-exiftool-perl)"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def exif(tool: str, *args: str | Path) -> list[dict]:
    out = subprocess.run([tool, "-j", "-struct", *map(str, args)], capture_output=True,
                         text=True, check=True)  # fmt: skip
    return json.loads(out.stdout)


def as_list(value) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


def set_tags(tool: str, path: Path, *assignments: str) -> None:
    subprocess.run([tool, "-q", "-overwrite_original", *assignments, str(path)], check=True)


def containers(xmp_text: str) -> dict[str, tuple[str, list[str]]]:
    """Per keyword field: its RDF container kind and items, from a raw XMP packet."""
    root = ET.fromstring(xmp_text[xmp_text.index("<x:xmpmeta"): xmp_text.rindex("</x:xmpmeta>")
                                  + len("</x:xmpmeta>")])  # fmt: skip
    found = {}
    for tag in CONTAINERS:
        for element in root.iter(tag):
            (container,) = list(element)
            kind = container.tag.removeprefix(RDF)
            found[tag] = (kind, [li.text for li in container.iter(f"{RDF}li")])
    return found


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    target = tmp_path / "photos" / "chelsea.jpg"
    target.parent.mkdir()
    shutil.copyfile(EXAMPLES / "chelsea.jpg", target)
    return target


@pytest.fixture
def tagged_photo(photo: Path, exiftool: str) -> Path:
    """A photo a person tagged in Lightroom/digiKam: flat, hierarchical and IPTC keywords."""
    set_tags(exiftool, photo, "-XMP-dc:Subject=Cat", "-XMP-dc:Subject=Beach",
             "-XMP-lr:HierarchicalSubject=Animals|Cat", "-XMP-lr:HierarchicalSubject=Places|Beach",
             "-XMP-digiKam:TagsList=Animals/Cat", "-XMP-digiKam:TagsList=Places/Beach",
             "-IPTC:Keywords=Cat", "-IPTC:Keywords=Beach",
             "-IPTC:CodedCharacterSet=UTF8")  # fmt: skip
    return photo


def test_sidecar_is_read_by_exiftool_with_lightroom_and_digikam_conventions(photo, exiftool):
    change = write_keywords(photo, [("cat", 0.91), ("grass", 0.52)], PROVENANCE)
    sidecar = photo.with_name("chelsea.jpg.xmp")
    assert change.target == sidecar and change.added == ("cat", "grass") and sidecar.is_file()
    assert sidecar_for_writing(photo) == sidecar
    (record,) = exif(exiftool, "-XMP:Subject", "-XMP-phototag:all", sidecar)
    assert record["Subject"] == ["cat", "grass"]
    assert record["AutoKeywords"] == [
        {"Date": "2026:01:02 03:04:05+00:00", "Label": "cat", "Model": "tagprop:test",
         "Score": 0.9100},
        {"Date": "2026:01:02 03:04:05+00:00", "Label": "grass", "Model": "tagprop:test",
         "Score": 0.5200},
    ]  # fmt: skip
    fields = containers(sidecar.read_text(encoding="utf-8"))
    assert fields == {tag: (kind, ["cat", "grass"]) for tag, kind in CONTAINERS.items()}
    assert "http://phototag.dev/ns/1.0/" in sidecar.read_text(encoding="utf-8")


def test_embedded_write_keeps_user_keywords_and_their_hierarchy(tagged_photo, exiftool):
    change = write_keywords(tagged_photo, [("cat", 0.9), ("grass", 0.5), ("BEACH", 0.4),
                                           ("Käse", 0.3)], PROVENANCE, embed=True)  # fmt: skip
    assert change.target == tagged_photo.resolve()
    assert change.added == ("grass", "Käse") and change.kept == ("cat", "BEACH")
    assert not tagged_photo.with_name("chelsea.jpg.xmp").exists()
    (record,) = exif(exiftool, "-XMP:Subject", "-XMP:HierarchicalSubject", "-XMP:TagsList",
                     "-IPTC:Keywords", tagged_photo)  # fmt: skip
    assert record["Subject"] == ["Cat", "Beach", "grass", "Käse"]
    assert record["HierarchicalSubject"] == ["Animals|Cat", "Places|Beach", "grass", "Käse"]
    assert record["TagsList"] == ["Animals/Cat", "Places/Beach", "grass", "Käse"]
    assert record["Keywords"] == ["Cat", "Beach", "grass", "Käse"]  # IPTC declared UTF-8
    raw = subprocess.run([exiftool, "-b", "-XMP", str(tagged_photo)], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    kinds = {tag: kind for tag, (kind, _) in containers(raw).items()}
    assert kinds == CONTAINERS
    keywords = read_keywords(tagged_photo)
    assert keywords.user == ("Cat", "Beach")
    assert [a.label for a in keywords.automatic] == ["grass", "Käse"]
    assert keywords.automatic[0].model == "tagprop:test" and keywords.automatic[0].score == 0.5


def test_untag_removes_exactly_phototag_keywords(tagged_photo, exiftool):
    fields = ("-XMP:Subject", "-XMP:HierarchicalSubject", "-XMP:TagsList", "-IPTC:Keywords")
    (before,) = exif(exiftool, *fields, tagged_photo)
    write_keywords(tagged_photo, [("grass", 0.5), ("sky", 0.3)], PROVENANCE, embed=True)
    write_keywords(tagged_photo, [("tree", 0.6)], PROVENANCE)  # and a sidecar
    assert untag(tagged_photo, dry_run=True)[0].removed == ("grass", "sky")
    changes = untag(tagged_photo)
    assert [(c.target.name, c.removed) for c in changes] == [
        ("chelsea.jpg", ("grass", "sky")),
        ("chelsea.jpg.xmp", ("tree",)),
    ]
    (after,) = exif(exiftool, *fields, tagged_photo)
    assert after == before
    (sidecar,) = exif(exiftool, "-XMP:Subject", "-XMP:HierarchicalSubject",
                      tagged_photo.with_name("chelsea.jpg.xmp"))  # fmt: skip
    assert sidecar["Subject"] == ["Cat", "Beach"]  # the user's, copied when it was created
    assert sidecar["HierarchicalSubject"] == ["Animals|Cat", "Places|Beach"]
    assert read_keywords(tagged_photo).automatic == ()
    assert untag(tagged_photo) == []


def test_untag_deletes_a_sidecar_that_held_only_phototag_keywords(photo):
    write_keywords(photo, [("grass", 0.5)], PROVENANCE)
    (change,) = untag(photo)
    assert change.deleted and not photo.with_name("chelsea.jpg.xmp").exists()
    assert list(photo.parent.iterdir()) == [photo]


def test_rewrite_replaces_earlier_suggestions_and_skips_unchanged(photo):
    write_keywords(photo, [("grass", 0.5), ("sky", 0.4)], PROVENANCE)
    sidecar = photo.with_name("chelsea.jpg.xmp")
    change = write_keywords(photo, [("sky", 0.6), ("tree", 0.2)], PROVENANCE)
    assert change.added == ("tree",) and change.removed == ("grass",)
    assert read_keywords(photo).keywords == ("sky", "tree")
    stamp = sidecar.stat().st_mtime_ns
    again = write_keywords(photo, [("sky", 0.61), ("tree", 0.2)], PROVENANCE)
    assert not again.changed and sidecar.stat().st_mtime_ns == stamp


def test_dry_run_changes_nothing(tagged_photo):
    before = tagged_photo.read_bytes()
    change = write_keywords(tagged_photo, [("grass", 0.5)], PROVENANCE, embed=True, dry_run=True)
    assert change.dry_run and change.added == ("grass",)
    assert "would change" in change.describe()
    write_keywords(tagged_photo, [("grass", 0.5)], PROVENANCE, dry_run=True)
    assert tagged_photo.read_bytes() == before
    assert sorted(p.name for p in tagged_photo.parent.iterdir()) == ["chelsea.jpg"]


@pytest.mark.parametrize("stage", ["apply", "verify"])
def test_failed_embedded_write_leaves_the_photo_byte_identical(tagged_photo, monkeypatch, stage):
    before = tagged_photo.read_bytes()
    tagged_photo.chmod(0o640)

    original_apply = writing_module._exiv2.apply_fields

    def fail(*args, **kwargs):
        if stage == "apply":  # fail after libexiv2 rewrote the photo (in memory)
            original_apply(*args, **kwargs)
        raise MetadataError("the temporary copy", "simulated failure")

    if stage == "verify":
        monkeypatch.setattr(writing_module, "_verify", fail)
    else:
        monkeypatch.setattr(writing_module._exiv2, "apply_fields", fail)
    with pytest.raises(MetadataError, match="simulated failure") as error:
        write_keywords(tagged_photo, [("grass", 0.5)], PROVENANCE, embed=True)
    assert str(error.value).startswith(f"{tagged_photo}: keywords not written")
    assert "The file is unchanged" in str(error.value)
    assert tagged_photo.read_bytes() == before
    assert oct(tagged_photo.stat().st_mode & 0o777) == oct(0o640)
    assert sorted(p.name for p in tagged_photo.parent.iterdir()) == ["chelsea.jpg"]


def test_embedded_write_keeps_permissions(photo):
    photo.chmod(0o640)
    write_keywords(photo, [("grass", 0.5)], PROVENANCE, embed=True)
    assert photo.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tiff"])
def test_embed_in_other_formats(tmp_path, exiftool, suffix):
    from PIL import Image

    path = tmp_path / f"photo{suffix}"
    Image.open(EXAMPLES / "coffee.jpg").save(path)
    write_keywords(path, [("coffee", 0.8), ("cup", 0.6)], PROVENANCE, embed=True)
    (record,) = exif(exiftool, "-XMP:Subject", path)
    assert record["Subject"] == ["coffee", "cup"]
    with Image.open(path) as image:
        assert image.size == (600, 400)


def test_heic_cannot_be_embedded_but_gets_a_sidecar(tmp_path):
    from PIL import Image
    from pillow_heif import register_heif_opener

    register_heif_opener()
    path = tmp_path / "photo.heic"
    Image.open(EXAMPLES / "coffee.jpg").save(path)
    before = path.read_bytes()
    with pytest.raises(MetadataError, match=r"photo\.heic: cannot embed .*photo\.heic\.xmp"):
        write_keywords(path, [("coffee", 0.8)], PROVENANCE, embed=True)
    assert path.read_bytes() == before
    assert write_keywords(path, [("coffee", 0.8)], PROVENANCE).target.name == "photo.heic.xmp"
    assert read_keywords(path).keywords == ("coffee",)


def test_reads_both_sidecar_names_and_writes_to_an_existing_photo_xmp(photo, exiftool):
    lightroom = photo.with_suffix(".xmp")
    subprocess.run([exiftool, "-q", "-o", str(lightroom), "-XMP-dc:Subject=Dog",
                    "-XMP-lr:HierarchicalSubject=Animals|Dog"], check=True)  # fmt: skip
    assert read_keywords(photo).user == ("Dog",)
    assert sidecar_for_writing(photo) == lightroom
    change = write_keywords(photo, [("dog", 0.9), ("grass", 0.5)], PROVENANCE)
    assert change.target == lightroom and change.added == ("grass",) and change.kept == ("dog",)
    (record,) = exif(exiftool, "-XMP:Subject", "-XMP:HierarchicalSubject", lightroom)
    assert record["Subject"] == ["Dog", "grass"]
    assert record["HierarchicalSubject"] == ["Animals|Dog", "grass"]
    darktable = photo.with_name("chelsea.jpg.xmp")
    subprocess.run([exiftool, "-q", "-o", str(darktable), "-XMP-dc:Subject=Pet"], check=True)
    assert read_keywords(photo).user == ("Pet", "Dog")  # photo.jpg.xmp is read first
    assert sidecar_for_writing(photo) == darktable


def test_latin1_iptc_keywords_are_read_and_kept_byte_for_byte(photo, exiftool):
    set_tags(exiftool, photo, "-charset", "iptc=latin", "-IPTC:Keywords=Café")
    change = write_keywords(photo, [("Käse", 0.5), ("tea", 0.4)], PROVENANCE, embed=True)
    assert change.added == ("Käse", "tea")
    (record,) = exif(exiftool, "-charset", "iptc=latin", "-IPTC:Keywords", "-XMP:Subject", photo)
    assert record["Keywords"] == ["Café", "tea"]  # no UTF-8 declared: ASCII only in IPTC
    assert record["Subject"] == ["Käse", "tea"]
    assert read_keywords(photo).user == ("Café",)


def test_unreadable_photo_is_named(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    with pytest.raises(MetadataError, match=r"broken\.jpg: cannot read its metadata"):
        read_keywords(broken)
    with pytest.raises(MetadataError, match="no such photo"):
        read_keywords(tmp_path / "missing.jpg")
