"""phototag's keywords go into every keyword field (issue 14): dc:subject (leaves),
lr:hierarchicalSubject (``|`` paths), digiKam:TagsList (``/`` paths) and, embedded, IPTC
Keywords, as read by ExifTool; a new sidecar starts from the photo's own XMP; `untag`
takes exactly phototag's entries back out of every field."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from test_metadata import EXAMPLES, PROVENANCE, exif, exiftool, photo, set_tags, tagged_photo  # noqa: F401
from test_metadata_safety import DAMAGED_EXIF, XMP_ID, segment, subject, with_segments, xmp

from phototag.metadata import KeywordFields, read_keywords, untag, write_keywords

FIELDS = ("-XMP:Subject", "-XMP:HierarchicalSubject", "-XMP:TagsList", "-IPTC:Keywords")
OWN = ("-XMP:Rating", "-XMP:Label", "-XMP:Description")
TAGS = [("Animals|Pets|Cat", 0.9), ("Käse", 0.5)]


def record(tool: str, path: Path, *tags: str) -> dict:
    """ExifTool's reading of `tags` of `path`, without the file name."""
    (found,) = exif(tool, *tags, path)
    found.pop("SourceFile")
    return found


def test_a_sidecar_of_a_photo_without_metadata_holds_every_xmp_field(photo, exiftool):  # noqa: F811
    before = photo.read_bytes()
    write_keywords(photo, TAGS, PROVENANCE)
    sidecar = photo.with_name("chelsea.jpg.xmp")
    assert record(exiftool, sidecar, *FIELDS) == {
        "Subject": ["Cat", "Käse"],
        "HierarchicalSubject": ["Animals|Pets|Cat", "Käse"],
        "TagsList": ["Animals/Pets/Cat", "Käse"],
    }
    assert read_keywords(photo).keywords == ("Cat", "Käse")
    (change,) = untag(photo)
    assert change.removed == ("Animals|Pets|Cat", "Käse") and change.deleted
    assert list(photo.parent.iterdir()) == [photo] and photo.read_bytes() == before


def test_a_new_sidecar_starts_from_the_photos_xmp_and_untag_keeps_it(photo, exiftool):  # noqa: F811
    set_tags(exiftool, photo, "-XMP-xmp:Rating=4", "-XMP-xmp:Label=Red",
             "-XMP-dc:Description=Chelsea on the sofa", "-XMP-dc:Subject=Anna")  # fmt: skip
    before = photo.read_bytes()
    own = {"Rating": 4, "Label": "Red", "Description": "Chelsea on the sofa"}
    write_keywords(photo, TAGS, PROVENANCE)
    sidecar = photo.with_name("chelsea.jpg.xmp")
    assert record(exiftool, sidecar, *FIELDS, *OWN) == {
        "Subject": ["Anna", "Cat", "Käse"],
        "HierarchicalSubject": ["Animals|Pets|Cat", "Käse"],
        "TagsList": ["Animals/Pets/Cat", "Käse"],
        **own,
    }
    (change,) = untag(photo)
    assert change.removed == ("Animals|Pets|Cat", "Käse") and not change.deleted
    assert record(exiftool, sidecar, *FIELDS, *OWN, "-XMP-phototag:all") == {
        "Subject": ["Anna"],
        **own,
    }
    assert photo.read_bytes() == before
    assert read_keywords(photo).user == ("Anna",) and read_keywords(photo).automatic == ()


def test_a_photo_not_read_completely_gets_a_sidecar_without_its_xmp(photo, exiftool):  # noqa: F811
    """With a damaged EXIF block the photo's XMP is not copied: only keywords are written."""
    packet = xmp("<xmp:Rating>4</xmp:Rating>" + subject("Anna")).encode()
    photo.write_bytes(with_segments(photo.read_bytes(), DAMAGED_EXIF,
                                    segment(0xE1, XMP_ID + packet)))  # fmt: skip
    write_keywords(photo, TAGS, PROVENANCE)
    sidecar = photo.with_name("chelsea.jpg.xmp")
    assert record(exiftool, sidecar, "-XMP:Subject", "-XMP:Rating") == {
        "Subject": ["Anna", "Cat", "Käse"]
    }


def test_embedding_fills_all_four_fields_and_untag_gives_back_the_bytes(photo, exiftool):  # noqa: F811
    before = photo.read_bytes()
    write_keywords(photo, TAGS, PROVENANCE, embed=True)
    assert record(exiftool, photo, *FIELDS, "-IPTC:CodedCharacterSet") == {
        "Subject": ["Cat", "Käse"],
        "HierarchicalSubject": ["Animals|Pets|Cat", "Käse"],
        "TagsList": ["Animals/Pets/Cat", "Käse"],
        "Keywords": ["Cat", "Käse"],
        "CodedCharacterSet": "UTF8",  # IPTC started by phototag is declared UTF-8
    }
    (change,) = untag(photo)
    assert change.removed == ("Animals|Pets|Cat", "Käse")
    assert photo.read_bytes() == before


def test_untag_keeps_the_users_hierarchy_in_every_field(tagged_photo, exiftool):  # noqa: F811
    before = record(exiftool, tagged_photo, *FIELDS)
    write_keywords(tagged_photo, [("Animals|Pets|Dog", 0.9)], PROVENANCE, embed=True)
    found = record(exiftool, tagged_photo, *FIELDS)
    assert found["HierarchicalSubject"] == ["Animals|Cat", "Places|Beach", "Animals|Pets|Dog"]
    assert found["TagsList"] == ["Animals/Cat", "Places/Beach", "Animals/Pets/Dog"]
    assert found["Keywords"] == ["Cat", "Beach", "Dog"]
    untag(tagged_photo)
    assert record(exiftool, tagged_photo, *FIELDS) == before


def test_a_rewrite_moves_a_plain_keyword_to_its_path_in_every_field(photo, exiftool):  # noqa: F811
    write_keywords(photo, [("cat", 0.9)], PROVENANCE, embed=True)
    write_keywords(photo, [("Animals|Pets|Cat", 0.9)], PROVENANCE, embed=True)
    assert record(exiftool, photo, *FIELDS) == {
        "Subject": ["Cat"],
        "HierarchicalSubject": ["Animals|Pets|Cat"],
        "TagsList": ["Animals/Pets/Cat"],
        "Keywords": "Cat",
    }
    assert [a.label for a in read_keywords(photo).automatic] == ["Animals|Pets|Cat"]


def test_each_field_gets_the_entry_it_can_hold():
    fields = KeywordFields(subject=("Anna",), iptc=()).edited(
        [], ["Music|AC/DC", " Places | | Beach "], []
    )
    assert fields.subject == ("Anna", "AC/DC", "Beach")
    assert fields.hierarchical == ("Music|AC/DC", "Places|Beach")
    assert fields.digikam == ("Places/Beach",)  # "/" inside a level would split it
    assert fields.iptc == ("AC/DC", "Beach")
    assert fields.edited(["Music|AC/DC", "Places|Beach"], [], []) == KeywordFields(
        subject=("Anna",), iptc=()
    )


@pytest.mark.parametrize(("suffix", "iptc"), [(".png", True), (".tiff", True), (".webp", False)])
def test_other_formats_get_their_fields_and_lose_them(tmp_path, exiftool, suffix, iptc):  # noqa: F811
    path = tmp_path / f"photo{suffix}"
    Image.open(EXAMPLES / "coffee.jpg").save(path)
    before = path.read_bytes()
    write_keywords(path, TAGS, PROVENANCE, embed=True)
    found = record(exiftool, path, *FIELDS)
    assert found.pop("Keywords", None) == (["Cat", "Käse"] if iptc else None)
    assert found == {
        "Subject": ["Cat", "Käse"],
        "HierarchicalSubject": ["Animals|Pets|Cat", "Käse"],
        "TagsList": ["Animals/Pets/Cat", "Käse"],
    }
    (change,) = untag(path)  # WebP: libexiv2 kept the old XMP chunk when none was left
    assert change.removed == ("Animals|Pets|Cat", "Käse")
    assert record(exiftool, path, *FIELDS, "-XMP-phototag:all") == {}
    if suffix != ".webp":  # a simple WebP comes back in the extended layout
        assert path.read_bytes() == before


def test_a_file_of_an_earlier_version_gets_the_missing_fields(photo, exiftool):  # noqa: F811
    """phototag once wrote its keywords only into dc:subject of a new sidecar: writing the
    same keywords again fills the other fields, and untag takes them all out."""
    write_keywords(photo, [("cat", 0.9)], PROVENANCE)
    sidecar = photo.with_name("chelsea.jpg.xmp")
    set_tags(exiftool, sidecar, "-XMP-lr:HierarchicalSubject=", "-XMP-digiKam:TagsList=")
    assert record(exiftool, sidecar, *FIELDS) == {"Subject": ["cat"]}
    assert not write_keywords(photo, [("cat", 0.9)], PROVENANCE).changed
    assert record(exiftool, sidecar, *FIELDS) == {
        "Subject": ["cat"],
        "HierarchicalSubject": ["cat"],
        "TagsList": ["cat"],
    }
    (change,) = untag(photo)
    assert change.deleted and not sidecar.exists()
