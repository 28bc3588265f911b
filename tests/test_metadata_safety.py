"""Keyword writes never lose or damage a user's file (issue 11): real bad sidecars and
photos, read-only files (also with root's permission override dropped), non-UTF-8 and
long file names, temporaries of killed runs, and durable writes."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_corpus import WITHOUT_ROOT_OVERRIDE

from phototag.metadata import (
    KeywordWriter,
    MetadataError,
    Provenance,
    read_keywords,
    remove_stale_temporaries,
    untag,
    untag_files,
    write_keywords,
)

PHOTOTAG = str(Path(sys.executable).with_name("phototag"))
PROVENANCE = Provenance("prior:test", "2026-01-02T03:04:05+00:00")
XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"


def xmp(body: str, header: str = "<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>") -> str:
    """An XMP packet whose rdf:Description holds `body`."""
    return (f"{header}<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF "
            "xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'><rdf:Description "
            "rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/' "
            f"xmlns:xmp='http://ns.adobe.com/xap/1.0/'>{body}</rdf:Description></rdf:RDF>"
            "</x:xmpmeta>")  # fmt: skip


def subject(*terms: str) -> str:
    return f"<dc:subject><rdf:Bag>{''.join(f'<rdf:li>{t}</rdf:li>' for t in terms)}</rdf:Bag></dc:subject>"  # noqa: E501


#: the issue's sidecar: one unescaped "&" in a keyword
AMPERSAND = xmp(subject("Anna", "Tom & Jerry"))
#: 10**9 "lol"s if the entities were expanded
LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">'
          + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
          + "]>" + xmp("<dc:title>&lol9;</dc:title>", header=""))  # fmt: skip
BAD_SIDECARS = {
    "ampersand": (AMPERSAND, "its XMP does not parse as XML (not well-formed (invalid token)"),
    "laughs": (LAUGHS, "declares a document type"),
    "text": ("Anna, Tom and Jerry\n", "its XMP does not parse as XML (syntax error"),
    "empty": ("", "not an XMP sidecar: the file is empty"),
    "html": ("<html><body>Anna</body></html>", "its content is not XMP (XML with <html>"),
    "cut": (xmp(subject("Anna"))[:150], "its XMP does not parse as XML (unclosed token"),
    "rdf-root": (
        xmp(subject("Anna")).split("<x:xmpmeta xmlns:x='adobe:ns:meta/'>")[1][:-12],
        "libexiv2 cannot read it as XMP (The memory contains data of an unknown",
    ),
}


def sha256(folder: Path) -> dict[str, str]:
    """Every file under `folder` (names relative to it) and its content's sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}  # fmt: skip


def segment(marker: int, payload: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


def with_segments(photo: bytes, *segments: bytes) -> bytes:
    """The JPEG `photo` with `segments` inserted right after its start marker."""
    return photo[:2] + b"".join(segments) + photo[2:]


def iptc_segment(records: bytes) -> bytes:
    """A Photoshop APP13 segment holding the IPTC records `records`."""
    records += b"\0" * (len(records) % 2)
    return segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00"
                   + struct.pack(">I", len(records)) + records)  # fmt: skip


def iptc_keyword(term: bytes) -> bytes:
    return b"\x1c\x02\x19" + struct.pack(">H", len(term)) + term


#: photos whose own metadata phototag cannot read completely, and what is said about them
BAD_PHOTOS = {
    "xmp-ampersand": (
        lambda: segment(0xE1, XMP_ID + AMPERSAND.encode()),
        "cannot read its keywords: its XMP does not parse as XML",
    ),
    "xmp-laughs": (
        lambda: segment(0xE1, XMP_ID + LAUGHS.encode()),
        "cannot read its keywords: its XMP is refused: it declares a document type",
    ),
    "iptc-damaged": (
        lambda: iptc_segment(iptc_keyword(b"Anna") + b"\x1c\x02\x19\x00\xffxx"),
        "cannot read its keywords: its IPTC block is damaged (libexiv2: IPTC "
        "dataset Iptc.Application2.Keywords has invalid size 255",
    ),
    "exif-not-tiff": (
        lambda: segment(0xE1, b"Exif\0\0" + b"\x5a" * 64),
        "cannot read its metadata: its EXIF block is damaged",
    ),
}
#: an EXIF block whose first directory claims 65535 entries: libexiv2 skips it
DAMAGED_EXIF = segment(0xE1, b"Exif\0\0II*\0\x08\0\0\0\xff\xff" + b"\0" * 48)


@pytest.fixture
def real_photo(shared_data: Path) -> bytes:
    """A real JPEG photo (Corel-5k test image 100002)."""
    return (shared_data / "corel5k" / "test" / "100002.jpeg").read_bytes()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "photos"
    path.mkdir()
    return path


def run(*args: str, caps: bool = True) -> subprocess.CompletedProcess[str]:
    """The `phototag` command, in a new process (optionally without root's overrides)."""
    command = [PHOTOTAG, *args] if caps else [*WITHOUT_ROOT_OVERRIDE, PHOTOTAG, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          encoding="utf-8", errors="backslashreplace")  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    return done


def needs_root_without_override() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: runs phototag with root's permission override dropped "
                    "(setpriv), as the issue's reporter did")  # fmt: skip
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to drop root's permission override")


# ------------------------------------------------------------------ unreadable sidecars


@pytest.mark.parametrize("kind", BAD_SIDECARS)
def test_a_sidecar_that_does_not_parse_is_reported_and_never_written_or_deleted(
    folder, real_photo, kind
):
    text, message = BAD_SIDECARS[kind]
    photo = folder / "a.jpg"
    photo.write_bytes(real_photo)
    sidecar = folder / "a.jpg.xmp"
    sidecar.write_text(text, encoding="utf-8")
    before = sha256(folder)
    for attempt in (
        lambda: read_keywords(photo),
        lambda: write_keywords(photo, [("sky", 0.9)], PROVENANCE),
        lambda: write_keywords(photo, [("sky", 0.9)], PROVENANCE, embed=True),
        lambda: untag(photo),
    ):
        with pytest.raises(MetadataError) as error:
            attempt()
        assert str(error.value).startswith(f"{sidecar}: not ")
        assert message in str(error.value)
        assert "fix it in a text editor or an XMP tool" in str(error.value)
    assert sha256(folder) == before


def test_entity_expansion_sidecar_is_refused_before_it_is_expanded(folder, real_photo):
    (folder / "a.jpg").write_bytes(real_photo)
    (folder / "a.xmp").write_text(LAUGHS, encoding="utf-8")  # 10**9 "lol"s, about 3 GB
    start = time.perf_counter()
    with pytest.raises(MetadataError, match="declares a document type"):
        read_keywords(folder / "a.jpg")
    assert time.perf_counter() - start < 1.0


def test_issue_repro_annotate_and_untag_leave_bad_sidecars_and_go_on(
    folder, real_photo, prior_model, tmp_path
):
    """The issue's commands over one photo per bad sidecar and a good one: each bad one is
    named with what to do, the good one is written and untagged, no user file changes."""
    for kind, (text, _) in BAD_SIDECARS.items():
        (folder / f"{kind}.jpg").write_bytes(real_photo)
        (folder / f"{kind}.jpg.xmp").write_text(text, encoding="utf-8")
    (folder / "good.jpg").write_bytes(real_photo)
    before = sha256(folder)
    options = ["--model", prior_model, "--workers", "0", "--store", str(tmp_path / "store")]
    done = run("annotate", str(folder), "--write", "xmp", *options)
    assert done.returncode == 1
    for kind, (_, message) in BAD_SIDECARS.items():
        assert f"keywords not written: {folder / kind}.jpg.xmp: not " in done.stderr
        assert message in done.stderr
    assert done.stderr.count("phototag leaves it unchanged") == len(BAD_SIDECARS)
    assert f"changed {folder / 'good.jpg.xmp'}: +sky +sea +cat" in done.stderr
    assert f"keywords: changed 1 files, 0 unchanged, {len(BAD_SIDECARS)} failed" in done.stderr
    assert sha256(folder) == {**before, "good.jpg.xmp": sha256(folder)["good.jpg.xmp"]}
    done = run("untag", str(folder))
    assert done.returncode == 1
    assert done.stderr.count("not untagged: ") == len(BAD_SIDECARS)
    assert f"untagged 1 files of {len(BAD_SIDECARS) + 1} photos" in done.stderr
    assert sha256(folder) == before  # good.jpg.xmp held only phototag's keywords: deleted


def test_untag_keeps_a_sidecar_that_holds_more_than_phototag_wrote(folder, real_photo):
    photo = folder / "a.jpg"
    photo.write_bytes(real_photo)
    sidecar = folder / "a.jpg.xmp"
    sidecar.write_text(xmp("<xmp:Rating>4</xmp:Rating>"), encoding="utf-8")  # no keywords
    write_keywords(photo, [("sky", 0.9)], PROVENANCE)
    assert "phototag:AutoKeywords" in sidecar.read_text(encoding="utf-8")
    (change,) = untag(photo)
    assert change.removed == ("sky",) and not change.deleted
    text = sidecar.read_text(encoding="utf-8")
    assert "phototag" not in text and "sky" not in text and 'xmp:Rating="4"' in text
    assert read_keywords(photo).keywords == ()


# ------------------------------------------------------------------ unreadable photos


@pytest.mark.parametrize("kind", BAD_PHOTOS)
def test_a_photo_whose_metadata_cannot_be_read_completely_is_never_rewritten(
    folder, real_photo, kind
):
    make, message = BAD_PHOTOS[kind]
    photo = folder / f"{kind}.jpg"
    photo.write_bytes(with_segments(real_photo, make()))
    before = sha256(folder)
    for embed in (True, False):
        with pytest.raises(MetadataError) as error:
            write_keywords(photo, [("sky", 0.9)], PROVENANCE, embed=embed)
        assert str(error.value).startswith(f"{photo}: {message}")
        assert "This does not look like" not in str(error.value).split("(libexiv2")[0]
    with pytest.raises(MetadataError, match=message.split("(")[0]):
        untag(photo)
    assert sha256(folder) == before


def test_annotate_embed_reports_every_unreadable_photo_and_changes_none(
    folder, real_photo, prior_model, tmp_path
):
    for kind, (make, _) in BAD_PHOTOS.items():
        (folder / f"{kind}.jpg").write_bytes(with_segments(real_photo, make()))
    (folder / "exif-damaged.jpg").write_bytes(with_segments(real_photo, DAMAGED_EXIF))
    (folder / "good.jpg").write_bytes(real_photo)
    before = sha256(folder)
    done = run("annotate", str(folder), "--write", "xmp", "--embed", "--model", prior_model,
               "--workers", "0", "--store", str(tmp_path / "store"))  # fmt: skip
    assert done.returncode == 1
    for kind, (_, message) in BAD_PHOTOS.items():
        assert f"keywords not written: {folder / kind}.jpg: {message}" in done.stderr
    assert (f"keywords not written: {folder / 'exif-damaged.jpg'}: its EXIF block is damaged"
            in done.stderr)  # fmt: skip
    assert f"keywords: changed 1 files, 0 unchanged, {len(BAD_PHOTOS) + 1} failed" in done.stderr
    after = sha256(folder)
    assert sorted(after) == sorted(before) and after["good.jpg"] != before["good.jpg"]
    assert {k: v for k, v in after.items() if k != "good.jpg"} == {
        k: v for k, v in before.items() if k != "good.jpg"
    }


def test_damaged_exif_blocks_embedding_but_not_reading_or_a_sidecar(folder, real_photo):
    """libexiv2 skips an EXIF directory it finds invalid (and would write the photo back
    without it), but the keywords are elsewhere: read them, write a sidecar, never embed."""
    photo = folder / "a.jpg"
    photo.write_bytes(with_segments(real_photo, DAMAGED_EXIF, iptc_segment(iptc_keyword(b"Anna"))))
    before = photo.read_bytes()
    assert read_keywords(photo).user == ("Anna",)
    with pytest.raises(MetadataError) as error:
        write_keywords(photo, [("sky", 0.9)], PROVENANCE, embed=True)
    assert str(error.value) == (
        f"{photo}: its EXIF block is damaged (libexiv2: Directory Image with 65535 entries "
        "considered invalid; not read). phototag rewrites only files it can read completely, "
        "so the file is unchanged: leave out --embed to write a sidecar instead, or repair "
        "its metadata with another tool (for example ExifTool)"
    )
    change = write_keywords(photo, [("sky", 0.9)], PROVENANCE)
    assert change.target == folder / "a.jpg.xmp" and change.added == ("sky",)
    assert read_keywords(photo).user == ("Anna",) and photo.read_bytes() == before


# ------------------------------------------------------------------ read-only files


def test_read_only_photo_is_not_embedded_into_but_gets_a_sidecar(folder, real_photo):
    photo = folder / "a.jpg"
    photo.write_bytes(real_photo)
    photo.chmod(0o444)
    before = sha256(folder)
    with pytest.raises(MetadataError) as error:
        write_keywords(photo, [("sky", 0.9)], PROVENANCE, embed=True)
    assert str(error.value) == (
        f"{photo}: read-only: phototag does not change read-only photos. Make it writable "
        "(chmod u+w) to let phototag change it; without --embed, a sidecar is written instead"
    )
    assert sha256(folder) == before and stat.S_IMODE(photo.stat().st_mode) == 0o444
    write_keywords(photo, [("sky", 0.9)], PROVENANCE)
    assert stat.S_IMODE((folder / "a.jpg.xmp").stat().st_mode) == 0o644  # writable later
    assert [a.label for a in read_keywords(photo).automatic] == ["sky"]
    assert sha256(folder)["a.jpg"] == before["a.jpg"]


def test_read_only_sidecar_is_neither_replaced_nor_deleted(folder, real_photo):
    photo = folder / "a.jpg"
    photo.write_bytes(real_photo)
    write_keywords(photo, [("sky", 0.9)], PROVENANCE)
    sidecar = folder / "a.jpg.xmp"
    sidecar.chmod(0o444)
    before = sha256(folder)
    with pytest.raises(MetadataError, match=r"a\.jpg\.xmp: read-only: phototag does not change "
                       r"read-only sidecars\. Make it writable \(chmod u\+w\)"):  # fmt: skip
        write_keywords(photo, [("sea", 0.9)], PROVENANCE)
    with pytest.raises(MetadataError, match="read-only sidecars"):
        untag(photo)  # would delete it: it holds only phototag's keywords
    assert sha256(folder) == before


def test_read_only_photo_survives_embed_without_root_override(folder, real_photo, prior_model,
                                                               tmp_path):  # fmt: skip
    """The issue's run: root without CAP_DAC_OVERRIDE/CAP_FOWNER, `--embed` over a folder
    with a 0444 photo: that photo is reported and left; the writable one gets keywords."""
    needs_root_without_override()
    (folder / "locked.jpg").write_bytes(real_photo)
    (folder / "locked.jpg").chmod(0o444)
    (folder / "open.jpg").write_bytes(real_photo)
    before = sha256(folder)
    done = run("annotate", str(folder), "--write", "xmp", "--embed", "--model", prior_model,
               "--workers", "0", "--store", str(tmp_path / "store"), caps=False)  # fmt: skip
    assert done.returncode == 1
    assert (f"keywords not written: {folder / 'locked.jpg'}: read-only: phototag does not "
            "change read-only photos") in done.stderr  # fmt: skip
    assert "keywords: changed 1 files, 0 unchanged, 1 failed" in done.stderr
    after = sha256(folder)
    assert after["locked.jpg"] == before["locked.jpg"] and after["open.jpg"] != before["open.jpg"]
    assert sorted(after) == ["locked.jpg", "open.jpg"]
    assert stat.S_IMODE((folder / "locked.jpg").stat().st_mode) == 0o444


def test_unwritable_folder_is_named_and_nothing_changes(folder, real_photo, prior_model,
                                                        tmp_path):  # fmt: skip
    needs_root_without_override()
    (folder / "a.jpg").write_bytes(real_photo)
    folder.chmod(0o555)
    before = sha256(folder)
    done = run("annotate", str(folder), "--write", "xmp", "--model", prior_model, "--workers",
               "0", "--store", str(tmp_path / "store"), caps=False)  # fmt: skip
    folder.chmod(0o755)
    assert done.returncode == 1
    assert (f"keywords not written: {folder / 'a.jpg.xmp'}: keywords not written: {folder}: "
            "permission denied: choose a folder you can write to") in done.stderr  # fmt: skip
    assert sha256(folder) == before and sorted(os.listdir(folder)) == ["a.jpg"]


def test_writes_keep_the_owner_of_another_users_photo(folder, real_photo):
    if os.geteuid() != 0:
        pytest.skip("needs root: gives the photo to another user")
    photo = folder / "a.jpg"
    photo.write_bytes(real_photo)
    os.chown(photo, 4242, 4343)
    write_keywords(photo, [("sky", 0.9)], PROVENANCE, embed=True)
    write_keywords(photo, [("sea", 0.9)], PROVENANCE)
    for path in (photo, folder / "a.jpg.xmp"):
        assert (path.stat().st_uid, path.stat().st_gid) == (4242, 4343)
    assert [a.label for a in read_keywords(photo).automatic] == ["sky", "sea"]


def test_a_photo_that_would_change_owner_is_left(folder, real_photo):
    """Without the right to give files away (CAP_CHOWN), replacing another user's photo
    (writable for everyone) would make it root's: refused, the photo is unchanged."""
    needs_root_without_override()
    photo = folder / "a.jpg"
    photo.write_bytes(real_photo)
    os.chown(photo, 4242, 4343)
    photo.chmod(0o666)
    before = sha256(folder)
    script = ("import sys; from phototag.metadata import *\n"
              "try: write_keywords(sys.argv[1], [('sky', 0.9)], Provenance('m'), embed=True)\n"
              "except MetadataError as error: print(error)")  # fmt: skip
    setpriv, bounding, caps, inherited, _ = WITHOUT_ROOT_OVERRIDE
    drop = [setpriv, bounding, caps + ",-chown", inherited, caps + ",-chown"]
    done = subprocess.run([*drop, sys.executable, "-c", script, str(photo)], text=True,
                          capture_output=True, timeout=120)  # fmt: skip
    assert done.stdout == (
        f"{photo}: keywords not written: it belongs to another user or group, and replacing "
        "it would make it yours. Run phototag as its owner\n"
    ), done.stderr
    assert sha256(folder) == before and photo.stat().st_uid == 4242


# ------------------------------------------------------------------ durable writes, names


def test_writes_are_flushed_to_disk_before_and_after_the_rename(folder, real_photo, monkeypatch):
    photo = folder / "a.jpg"
    photo.write_bytes(real_photo)
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        kind = "folder" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "file"
        events.append(f"fsync {kind}")
        real_fsync(descriptor)

    def replace(source, target) -> None:
        events.append(f"replace {Path(target).name}")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_keywords(photo, [("sky", 0.9)], PROVENANCE, embed=True)
    write_keywords(photo, [("sea", 0.9)], PROVENANCE)
    for name in ("a.jpg", "a.jpg.xmp"):
        at = events.index(f"replace {name}")
        assert "fsync file" in events[:at] and events[at + 1] == "fsync folder", events
    assert [a.label for a in read_keywords(photo).automatic] == ["sky", "sea"]


def test_a_250_character_name_gets_a_sidecar_and_embedded_keywords(folder, real_photo):
    photo = folder / ("p" * 246 + ".jpg")
    photo.write_bytes(real_photo)
    assert write_keywords(photo, [("sky", 0.9)], PROVENANCE).target.name == photo.name + ".xmp"
    assert write_keywords(photo, [("sea", 0.9)], PROVENANCE, embed=True).added == ("sea",)
    assert sorted(p.name for p in folder.iterdir()) == [photo.name, photo.name + ".xmp"]
    assert [a.label for a in read_keywords(photo).automatic] == ["sea", "sky"]


def test_a_name_that_is_not_utf8_is_read_written_and_reported_printably(folder, real_photo):
    name = os.fsdecode(b"bad_\xff.jpg")
    photo = folder / name
    photo.write_bytes(real_photo)
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # strict: no surrogates
    writer = KeywordWriter(PROVENANCE, embed=True, stream=stream)
    assert writer.write(str(photo), [("sky", 0.9)]).added == ("sky",)
    writer = KeywordWriter(PROVENANCE, stream=stream)
    assert writer.write(str(photo), [("sea", 0.9)]).target == folder / (name + ".xmp")
    assert [a.label for a in read_keywords(photo).automatic] == ["sky", "sea"]
    photo.chmod(0o444)
    writer = KeywordWriter(PROVENANCE, embed=True, stream=stream)
    assert writer.write(str(photo), [("cat", 0.9)]) is None and writer.failed == 1
    stream.flush()
    report = stream.buffer.getvalue().decode("utf-8")
    assert f"changed {folder}/bad_\\xff.jpg: +sky" in report
    assert f"changed {folder}/bad_\\xff.jpg.xmp: +sea" in report
    assert f"keywords not written: {folder}/bad_\\xff.jpg: read-only" in report
    photo.chmod(0o644)
    assert [c.removed for c in untag(photo)] == [("sky",), ("sea",)]
    assert sorted(os.listdir(os.fsencode(folder))) == [b"bad_\xff.jpg"]
    assert read_keywords(photo).keywords == ()


# ------------------------------------------------------------------ stale temporaries


def test_stale_temporaries_of_killed_runs_are_removed_and_nothing_else(folder, real_photo,
                                                                       capsys):  # fmt: skip
    photo = folder / "a.jpg"
    photo.write_bytes(real_photo)
    stale = [".a.jpg.k2j4h5g6.phototag-tmp", ".tmpx_9q0zab.phototag-tmp"]
    kept = [".a.jpg.phototag-tmp", "a.jpg.k2j4h5g6.phototag-tmp", ".tmpx_9q0zab.phototag-tmp.bak",
            ".tmpx_9q0zabc.phototag-tmp", "notes.txt"]  # fmt: skip
    hour_ago = time.time() - 3600
    for name in stale + kept:
        (folder / name).write_bytes(b"partial photo")
        os.utime(folder / name, (hour_ago, hour_ago))
    (folder / ".tmpfresh123.phototag-tmp").write_bytes(b"a write in progress")
    (folder / ".tmpdir12345.phototag-tmp").mkdir()
    os.utime(folder / ".tmpdir12345.phototag-tmp", (hour_ago, hour_ago))
    (folder / ".tmplink1234.phototag-tmp").symlink_to(folder / "notes.txt")
    os.utime(folder / ".tmplink1234.phototag-tmp", (hour_ago, hour_ago), follow_symlinks=False)
    before = sha256(folder)
    writer = KeywordWriter(PROVENANCE, embed=True)
    writer.write(str(photo), [("sky", 0.9)])
    writer.write(str(photo), [("sea", 0.9)])  # the folder is cleaned once
    err = capsys.readouterr().err
    for name in stale:
        assert err.count(f"removed {folder / name}: a temporary file left by an interrupted "
                         "phototag run") == 1  # fmt: skip
    after = sha256(folder)
    assert sorted(after) == sorted(set(before) - set(stale))
    assert all(after[name] == before[name] for name in after if name != "a.jpg")
    assert (folder / ".tmpdir12345.phototag-tmp").is_dir()
    assert (folder / ".tmplink1234.phototag-tmp").is_symlink()
    (folder / stale[0]).write_bytes(b"partial")
    os.utime(folder / stale[0], (hour_ago, hour_ago))
    assert untag_files([str(photo)]) == (1, 0)
    assert not (folder / stale[0]).exists()
    assert remove_stale_temporaries(folder / "missing") == []


def test_a_photo_name_too_long_for_photo_jpg_xmp_gets_photo_xmp(folder, real_photo):
    """A 253-byte photo name leaves no room for ".xmp" after it: the sidecar is the
    Lightroom name photo.xmp, read back and untagged as any other."""
    photo = folder / ("a" * 249 + ".jpg")
    photo.write_bytes(real_photo)
    change = write_keywords(photo, [("Animals|Pets|Cat", 0.9)], PROVENANCE)
    assert change.target == folder / ("a" * 249 + ".xmp")
    assert [a.label for a in read_keywords(photo).automatic] == ["Animals|Pets|Cat"]
    untag(photo)
    assert read_keywords(photo).automatic == ()
    assert photo.read_bytes() == real_photo


# ------------------------------------------------------------------ threads


def test_every_use_of_libexiv2_holds_its_lock(folder, real_photo, monkeypatch):
    """libexiv2's XMP toolkit is not safe to use from two threads at once (concurrent
    writes failed with "Unregistered schema namespace URI"): reading, writing, checking
    the written copy and untagging each hold `_exiv2.LOCK` while they call it."""
    from phototag.metadata import _exiv2

    calls: list[str] = []

    def guarded(name, function):
        def call(*args, **kwargs):
            assert _exiv2.LOCK._is_owned(), f"{name} called without the libexiv2 lock"
            calls.append(name)
            return function(*args, **kwargs)

        return call

    for name in ("open_image", "open_sidecar", "new_sidecar", "image_bytes", "read_fields",
                 "apply_fields", "xmp_is_empty", "describe_image", "can_write_xmp"):  # fmt: skip
        monkeypatch.setattr(_exiv2, name, guarded(name, getattr(_exiv2, name)))
    photo = folder / "a.jpg"
    photo.write_bytes(real_photo)
    write_keywords(photo, [("sky", 0.9)], PROVENANCE)
    write_keywords(photo, [("sea", 0.9)], PROVENANCE, embed=True)
    assert {a.label for a in read_keywords(photo).automatic} == {"sky", "sea"}
    assert len(untag(photo)) == 2
    assert {"new_sidecar", "open_sidecar", "image_bytes", "describe_image"} <= set(calls)


def test_keyword_writes_on_many_threads_all_land(folder, real_photo):
    photos = []
    for i in range(64):
        photos.append(folder / f"p{i:02d}.jpg")
        photos[-1].write_bytes(real_photo)
    with KeywordWriter(PROVENANCE, threads=8) as writer:
        futures = [writer.submit(str(p), [("sky", 0.9), ("Nature|Sea", 0.8)]) for p in photos]
    assert [f.result() is not None for f in futures] == [True] * 64
    assert writer.written == 64 and writer.failed == 0
    for photo in photos:
        assert [a.label for a in read_keywords(photo).automatic] == ["sky", "Nature|Sea"]
