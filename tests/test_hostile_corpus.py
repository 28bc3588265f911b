"""`annotate --write xmp --embed` and `untag` over a corpus of hostile files (see
`hostile_corpus`): no traceback, every bad file named, and no user file changed except
by a verified keyword write. docs/promises.md lists what this checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hostile_corpus import Entry, as_a_user, make_corpus, snapshot
from PIL import Image

from phototag.fileio import TEMPORARY_SUFFIX

PHOTOTAG = str(Path(sys.executable).with_name("phototag"))


def run(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    command = [*as_a_user(), PHOTOTAG, *map(os.fspath, args)]
    result = subprocess.run(command, capture_output=True, timeout=900)
    assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
    return result


def exiftool_keywords(path: Path) -> set[str]:
    """Every keyword an independent reader (ExifTool) finds in `path`."""
    out = subprocess.run(
        ["exiftool", "-j", "-XMP:Subject", "-IPTC:Keywords", os.fsencode(path)],
        capture_output=True,
        check=True,
    ).stdout
    found = json.loads(out)[0]
    words: set[str] = set()
    for key in ("Subject", "Keywords"):
        value = found.get(key, [])
        words.update(map(str, value if isinstance(value, list) else [value]))
    return words


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture
def library(tmp_path: Path, shared_data: Path) -> tuple[Path, list[Entry]]:
    if shutil.which("exiftool") is None:
        pytest.skip("needs ExifTool (Debian's libimage-exiftool-perl), the independent reader")
    folder = tmp_path / "library"
    return folder, make_corpus(folder, shared_data / "corel5k" / "test" / "100002.jpeg")


def test_the_corpus_has_every_kind_of_hostile_file(library):
    _folder, entries = library
    assert len(entries) >= 45
    assert len({entry.kind for entry in entries}) == len(entries)


def test_annotate_embed_then_untag_over_the_hostile_corpus(library, tmp_path):
    folder, entries = library
    by_name = {entry.name: entry for entry in entries}
    before = snapshot(folder)
    writable_photos = [e for e in entries if e.photo and e.writable]
    path_of = {
        e.name: Path(os.fsdecode(os.path.join(os.fsencode(folder), os.fsencode(e.name))))
        for e in entries
    }
    before_pixels = {e.name: pixels(path_of[e.name]) for e in writable_photos}
    journal = tmp_path / "journal.sqlite"

    result = run(
        "annotate", folder, "--write", "xmp", "--embed", "--format", "json", "--journal", journal
    )
    errors = result.stderr.decode("utf-8", "backslashreplace")
    assert result.returncode == 1, errors  # some photos could not be annotated
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    decodable = {str(path_of[e.name]) for e in entries if e.photo and e.decodable}
    assert {line["path"] for line in lines} == decodable, errors
    for entry in entries:
        if entry.photo and not entry.writable:
            assert entry.name in errors, f"{entry.kind} ({entry.name}) not reported"
    after = snapshot(folder)

    changed = {name for name in before if after.get(name) != before[name]}
    assert changed <= {e.name for e in entries if e.writable}, changed
    for name in changed:  # a verified keyword write: same picture, the user's words kept
        entry = by_name[name]
        if entry.photo:
            assert np.array_equal(pixels(path_of[name]), before_pixels[name]), name
        assert set(entry.user_keywords) <= exiftool_keywords(path_of[name]), name
    assert changed, "no photo got keywords: the run did nothing to check"
    created = set(after) - set(before)
    assert {n for n in created if n.endswith(TEMPORARY_SUFFIX)} == set()
    assert created <= {e.name + ".xmp" for e in writable_photos}, created

    again = run(
        "annotate", folder, "--write", "xmp", "--embed", "--format", "json", "--journal", journal
    )
    assert again.returncode == 1
    assert [json.loads(line) for line in again.stdout.splitlines()] == lines
    assert snapshot(folder) == after

    untagged = run("untag", folder)
    assert untagged.returncode == 1  # the unreadable sidecars are reported, not touched
    final = snapshot(folder)
    for name, state in before.items():
        if not by_name[name].writable:
            assert final[name] == state, name
    for entry in entries:
        if entry.user_keywords:
            assert set(entry.user_keywords) <= exiftool_keywords(path_of[entry.name])
    for name in changed:  # phototag's keywords are gone again, the user's stay
        assert exiftool_keywords(path_of[name]) == set(by_name[name].user_keywords), name
    assert set(final) <= set(before) | {e.name + ".xmp" for e in writable_photos}
