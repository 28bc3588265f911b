"""File names that are not valid UTF-8, through the real `phototag` command.

A name on Linux is bytes; ``b"bad_\\xff.jpg"`` reaches Python as ``"bad_\\udcff.jpg"``,
which no UTF-8 text (a journal row, a JSON line, a CSV cell, an HTML page) can hold as
it is. Every batch must process such a file like any other, print it escaped
(docs/batches.md, "File names"), journal it exactly, resume past it, and never change a
user file. Also the exit-status rule that `annotate` and `features` share.

The commands run as real processes with a strict UTF-8 stdout (``PYTHONIOENCODING``), as
on a desktop with a UTF-8 locale, so a name that cannot be printed would fail here.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_corpus import as_a_user, snapshot

PHOTOTAG = str(Path(sys.executable).with_name("phototag"))
BAD = b"bad_\xff.jpg"


def phototag(*args: str | bytes | Path, as_user: bool = False) -> subprocess.CompletedProcess:
    """Run the console script; its stdout and stderr must be valid UTF-8, no traceback."""
    prefix = as_a_user() if as_user else []
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    command = [*prefix, PHOTOTAG, *(os.fsencode(a) for a in args)]
    result = subprocess.run(command, capture_output=True, env=env, timeout=600, check=False)
    err = result.stderr.decode("utf-8")
    assert "Traceback" not in err, err
    result.stdout.decode("utf-8")  # printable text, whatever the names
    return result


@pytest.fixture
def library(shared_data: Path, tmp_path: Path) -> tuple[Path, list[bytes]]:
    """A folder of real photos: a good one, a non-UTF-8-named copy, files after it (one
    in a folder whose own name is not UTF-8). Returns it and the photos in run order."""
    photo = shared_data / "corel5k" / "test" / "100002.jpeg"
    root = tmp_path / "photos"
    root.mkdir()
    base = os.fsencode(root)
    names = [b"a_good.jpg", BAD, b"c_after.jpg", b"d_\xfe\xfe/e.jpg", b"f_after.jpg"]
    for name in names:
        os.makedirs(os.path.dirname(os.path.join(base, name)), exist_ok=True)
        shutil.copyfile(photo, os.path.join(base, name))
    return root, [os.path.join(base, name) for name in names]


def annotate(folder: Path, model: str, tmp_path: Path, *extra: str | Path, **kw: bool):
    return phototag("annotate", folder, "--model", model, "--runtime", "torch", "--workers",
                    "0", "--store", tmp_path / "store", "--journal", tmp_path / "a.sqlite",
                    *extra, **kw)  # fmt: skip


def features(*inputs: str | bytes | Path, tmp_path: Path, **kw: bool):
    return phototag("features", *inputs, "--encoder", "efficientnet_lite0", "--runtime",
                    "torch", "--workers", "0", "--store", tmp_path / "fstore", **kw)  # fmt: skip


def test_annotate_prints_journals_and_resumes_past_a_non_utf8_name(library, lite0_model, tmp_path):
    folder, photos = library
    before = snapshot(folder)
    report = tmp_path / "report.html"
    first = annotate(folder, lite0_model, tmp_path, "--format", "json", "--report", report)
    assert first.returncode == 0, first.stderr.decode()
    assert "5 photos, 5 tagged, 0 skipped, 0 resumed" in first.stderr.decode()
    lines = [json.loads(line) for line in first.stdout.decode().splitlines()]
    assert [os.fsencode(line["path"]) for line in lines] == photos  # exact bytes, in order
    assert b'"path": "' + os.fsencode(folder) + b'/bad_\\udcff.jpg"' in first.stdout
    assert all(line["tags"] for line in lines)
    page = report.read_bytes().decode("utf-8")
    assert page.count("bad_\\xff.jpg") == 2 and page.count("d_\\xfe\\xfe/e.jpg") == 2  # name, alt
    assert page.count('<img src="data:image/jpeg;base64,') == 5

    again = annotate(folder, lite0_model, tmp_path, "--format", "json")  # replayed from the journal
    assert again.returncode == 0 and again.stdout == first.stdout
    assert "5 photos, 5 tagged, 0 skipped, 5 resumed from journal" in again.stderr.decode()

    as_csv = annotate(folder, lite0_model, tmp_path, "--format", "csv")
    rows = list(csv.reader(io.StringIO(as_csv.stdout.decode())))
    assert rows[0] == ["path", "label", "score"]
    shown = [f"{folder}/{name}" for name in ("a_good.jpg", "bad_\\xff.jpg", "c_after.jpg",
                                             "d_\\xfe\\xfe/e.jpg", "f_after.jpg")]  # fmt: skip
    assert list(dict.fromkeys(row[0] for row in rows[1:])) == shown
    table = annotate(folder, lite0_model, tmp_path)
    assert [line.split(": ")[0] for line in table.stdout.decode().splitlines()] == shown
    assert snapshot(folder) == before


def test_a_failed_name_is_printed_escaped_in_every_message(library, lite0_model, tmp_path):
    folder, photos = library
    with open(photos[1], "wb") as file:  # the non-UTF-8 name now holds a broken photo
        file.write(b"\xff\xd8 not really a jpeg")
    before = snapshot(folder)
    for _ in range(2):  # the second run replays the failure from the journal
        result = annotate(folder, lite0_model, tmp_path, "--format", "json")
        err = result.stderr.decode()
        assert result.returncode == 1
        assert f"skipped: {folder}/bad_\\xff.jpg: the image data is damaged" in err
        assert f"skipped 1: the image data is damaged ({folder}/bad_\\xff.jpg)" in err
        assert len(result.stdout.decode().splitlines()) == 4  # the others, after it too
    assert "5 photos, 4 tagged, 1 skipped, 5 resumed from journal" in err
    assert snapshot(folder) == before


def test_features_stores_and_resumes_past_a_non_utf8_name(library, tmp_path):
    folder, photos = library
    before = snapshot(folder)
    first = features(folder, tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr.decode()
    assert "features: 5 photos, 5 stored, 0 skipped, 0 resumed" in first.stderr.decode()
    again = features(folder, tmp_path=tmp_path)
    assert again.returncode == 0
    assert "5 photos, 5 stored, 0 skipped, 5 resumed from journal" in again.stderr.decode()
    named = features(photos[1], tmp_path=tmp_path)  # the name itself in the run key
    assert named.returncode == 0, named.stderr.decode()
    assert "features: 1 photos, 1 stored, 0 skipped, 0 resumed" in named.stderr.decode()
    assert snapshot(folder) == before


@pytest.mark.parametrize("labels", ["?labels=none", ""])
def test_features_of_a_folder_dataset_with_a_non_utf8_name(library, tmp_path, labels):
    """Without a label file the folder reader reads each photo's keywords (libexiv2)."""
    folder, _ = library
    before = snapshot(folder)
    for resumed in (0, 5):
        result = features("--dataset", f"folder:{folder}{labels}", tmp_path=tmp_path)
        assert result.returncode == 0, result.stderr.decode()
        assert f"5 photos, 5 stored, 0 skipped, {resumed} resumed" in result.stderr.decode()
    assert snapshot(folder) == before


def test_annotate_and_features_share_the_exit_status_rule(library, lite0_model, tmp_path):
    """0 when every file was processed, 1 when any was skipped: after the whole batch, on
    a fresh run and on a resumed one alike."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root needs setpriv to drop the permission override")
    folder, photos = library
    with open(photos[2], "wb") as file:  # after the non-UTF-8 name: a broken photo
        file.write(b"\xff\xd8" + bytes(range(256)) * 4)
    before = snapshot(folder)
    os.chmod(photos[3], 0)  # and one its owner may not read
    expected = [
        f"skipped: {folder}/c_after.jpg: the image data is damaged",
        f"skipped: {folder}/d_\\xfe\\xfe/e.jpg: permission denied",
    ]
    for run in range(2):
        result = annotate(folder, lite0_model, tmp_path, "--format", "json", as_user=True)
        err = result.stderr.decode()
        assert result.returncode == 1, err
        assert all(line in err for line in expected), err
        assert f"5 photos, 3 tagged, 2 skipped, {5 * run} resumed" in err
        paths = [os.fsencode(json.loads(line)["path"]) for line in result.stdout.splitlines()]
        assert paths == [photos[0], photos[1], photos[4]]  # the batch went on to the end
        result = features(folder, tmp_path=tmp_path, as_user=True)
        err = result.stderr.decode()
        assert result.returncode == 1, err
        assert all(line in err for line in expected), err
        assert f"features: 5 photos, 3 stored, 2 skipped, {5 * run} resumed" in err
    os.chmod(photos[3], 0o644)
    assert snapshot(folder) == before
    os.unlink(photos[2])
    done = features(folder, "--restart", tmp_path=tmp_path, as_user=True)
    assert done.returncode == 0, done.stderr.decode()  # every file processed
    assert "4 photos, 4 stored, 0 skipped, 0 resumed" in done.stderr.decode()
