"""Run journals: record/replay, run keys, locking, and resuming a SIGKILLed annotate run."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from phototag.app.batch import (
    BatchSummary,
    record_annotation,
    resume_annotations,
    run_key,
    skip_reason,
)
from phototag.errors import InvalidInputError
from phototag.fileio import DamagedFileError, StorageError
from phototag.library.annotation import FileAnnotation
from phototag.library.journal import Journal, JournalInUseError, default_journal_path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def touch_files(folder: Path, names: list[str]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(name.encode())
    return [str(folder / name) for name in names]


def test_record_and_completed_round_trip(tmp_path):
    a, b, c = touch_files(tmp_path / "p", ["a.jpg", "b.jpg", "c.jpg"])
    with Journal(tmp_path / "j.sqlite", {"model": "m"}) as journal:
        assert journal.completed([a, b, c]) == {}
        journal.record(a, {"tags": [["sky", 0.5]]})
        journal.record(b, error="b.jpg: truncated")
    with Journal(tmp_path / "j.sqlite", {"model": "m"}) as journal:
        done = journal.completed([a, b, c])
        assert set(done) == {a, b} and len(journal) == 2
        assert done[a].result == {"tags": [["sky", 0.5]]} and done[a].error is None
        assert done[b].result is None and done[b].error == "b.jpg: truncated"


def test_changed_or_vanished_file_is_done_again(tmp_path):
    a, b = touch_files(tmp_path / "p", ["a.jpg", "b.jpg"])
    with Journal(tmp_path / "j.sqlite", {}) as journal:
        journal.completed([a, b])
        journal.record(a, 1)
        journal.record(b, 2)
    os.utime(a, ns=(0, 123_456_789))  # same size, other modification time
    os.unlink(b)
    with Journal(tmp_path / "j.sqlite", {}) as journal:
        assert journal.completed([a, b]) == {}


def test_changed_companion_file_undoes_the_entry(tmp_path):
    (a,) = touch_files(tmp_path / "p", ["a.jpg"])
    sidecar = Path(a + ".xmp")

    def companions(path):
        return [path + ".xmp"]

    with Journal(tmp_path / "j.sqlite", {}, companions=companions) as journal:
        journal.record(a, 1)
        assert list(journal.completed([a])) == [a]
        sidecar.write_text("<x:xmpmeta/>")  # a sidecar appears: the photo is not done
        assert journal.completed([a]) == {}
        journal.record(a, 1)
        assert list(journal.completed([a])) == [a]
        sidecar.unlink()  # e.g. `phototag untag` removed it
        assert journal.completed([a]) == {}


def test_resumed_write_run_writes_nothing_twice_but_sees_untag(tmp_path, capsys):
    from phototag.app.cli import main
    from phototag.data import from_label_sets
    from phototag.models import create_annotator

    train = from_label_sets("t", list("ab"), [["sky", "sea"], ["sky"]])
    model = str(create_annotator("prior").fit(train).save(tmp_path / "model"))
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("coffee.jpg", "chelsea.jpg"):
        (photos / name).write_bytes((EXAMPLES / name).read_bytes())
    argv = ["annotate", str(photos), "--model", model, "--write", "xmp", "--journal",
            str(tmp_path / "j.sqlite")]  # fmt: skip
    assert main(argv) == 0
    assert "keywords: changed 2 files" in capsys.readouterr().err
    assert main(argv) == 0  # everything replayed: no write at all
    err = capsys.readouterr().err
    assert "2 resumed from journal" in err and "keywords: changed 0 files, 0 unchanged" in err
    assert main(["untag", str(photos / "coffee.jpg")]) == 0
    assert main(argv) == 0  # the removed sidecar makes coffee.jpg work again
    err = capsys.readouterr().err
    assert "1 resumed from journal" in err and "keywords: changed 1 files" in err
    assert (photos / "coffee.jpg.xmp").is_file()


def test_relative_paths_are_keyed_absolutely(tmp_path, monkeypatch):
    (a,) = touch_files(tmp_path / "p", ["a.jpg"])
    with Journal(tmp_path / "j.sqlite", {}) as journal:
        journal.record(a, 1)
    monkeypatch.chdir(tmp_path)
    with Journal(tmp_path / "j.sqlite", {}) as journal:
        assert list(journal.completed(["p/a.jpg"])) == ["p/a.jpg"]


def test_other_run_key_is_refused_unless_restarted(tmp_path):
    (a,) = touch_files(tmp_path / "p", ["a.jpg"])
    with Journal(tmp_path / "j.sqlite", {"model": "m", "top_k": 3}) as journal:
        journal.record(a, 1)
    with pytest.raises(InvalidInputError, match=r"differs in: top_k.*--restart"):
        Journal(tmp_path / "j.sqlite", {"model": "m", "top_k": 5})
    with Journal(tmp_path / "j.sqlite", {"model": "m", "top_k": 5}, restart=True) as journal:
        assert len(journal) == 0
    with Journal(tmp_path / "j.sqlite", {"model": "m", "top_k": 5}) as journal:
        assert len(journal) == 0  # the restarted journal now belongs to the new key


def test_one_process_at_a_time(tmp_path):
    with (
        Journal(tmp_path / "j.sqlite", {}),
        pytest.raises(JournalInUseError, match="another phototag process"),
    ):
        Journal(tmp_path / "j.sqlite", {})
    Journal(tmp_path / "j.sqlite", {}).close()  # released on close


def test_damaged_or_foreign_journal_is_named_and_left_alone(tmp_path):
    bad = tmp_path / "j.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    for restart in (False, True):  # --restart does not delete a file it cannot identify
        with pytest.raises(
            DamagedFileError,
            match=r"j\.sqlite: cannot be read as a phototag "
            r"journal \(file is not a database\)\. If phototag wrote it, delete",
        ):
            Journal(bad, {}, restart=restart)
    assert bad.read_bytes() == b"this is not sqlite" * 100
    with pytest.raises(StorageError, match=r"j\.sqlite: cannot write here \(File exists\)"):
        Journal(bad / "inside a file.sqlite", {})
    other = tmp_path / "other.sqlite"  # someone's own database, with a `files` table
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE files (name TEXT)")
        db.execute("INSERT INTO files VALUES ('precious')")
    db.close()
    before = other.read_bytes()
    with pytest.raises(InvalidInputError, match=r"another SQLite database \(it holds files\)"):
        Journal(other, {}, restart=True)
    assert other.read_bytes() == before
    empty = tmp_path / "empty.sqlite"  # a journal created on a full disk: 0 bytes
    empty.touch()
    (a,) = touch_files(tmp_path / "p", ["a.jpg"])
    with Journal(empty, {}) as journal:
        journal.record(a, 1)
    with Journal(empty, {}) as journal:
        assert list(journal.completed([a])) == [a]


def test_journal_written_before_non_utf8_names_still_resumes(tmp_path):
    """The format is unchanged for UTF-8 names: a journal as earlier versions wrote it."""
    a, b = touch_files(tmp_path / "p", ["a.jpg", "é.jpg"])
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute(
            "CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
            "mtime_ns INTEGER NOT NULL, companions TEXT, result TEXT, error TEXT)"
        )
        db.execute("""INSERT INTO meta VALUES ('schema', '1'), ('run', '{"model":"é"}')""")
        for name, result in ((a, "[1]"), (b, None)):
            info = os.stat(name)
            error = None if result else "é.jpg: truncated"
            db.execute(
                "INSERT INTO files VALUES (?, ?, ?, NULL, ?, ?)",
                (name, info.st_size, info.st_mtime_ns, result, error),
            )
    db.close()
    with Journal(path, {"model": "é"}) as journal:
        done = journal.completed([a, b])
        assert done[a].result == [1] and done[b].error == "é.jpg: truncated"
    with sqlite3.connect(path) as db:  # a journal of a later format is refused, kept
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    db.close()
    with pytest.raises(InvalidInputError, match=r"differs in: journal format.*--restart"):
        Journal(path, {"model": "é"})


def test_non_utf8_names_are_kept_exactly(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    raw = os.path.join(os.fsencode(folder), b"bad_\xff.jpg")
    Path(os.fsdecode(raw)).write_bytes(b"x")
    name = os.fsdecode(raw)
    with Journal(tmp_path / "j.sqlite", {"inputs": [name]}) as journal:
        journal.record(name, {"path": name}, error=f"{name}: truncated")
    with Journal(tmp_path / "j.sqlite", {"inputs": [name]}) as journal:
        entry = journal.completed([name])[name]
        assert entry.result == {"path": name} and entry.error == f"{name}: truncated"
    with sqlite3.connect(tmp_path / "j.sqlite") as db:
        assert db.execute("SELECT path FROM files").fetchone() == (raw,)  # a BLOB, exact
    db.close()


@pytest.mark.integration
def test_journal_filling_the_disk_mid_run_is_one_clear_error(tmpfs, prior_model, tmp_path):
    small_disk = tmpfs("1m")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(40):
        (photos / f"p{i:02d}.jpg").write_bytes((EXAMPLES / "coffee.jpg").read_bytes())
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler = small_disk / "filler"
    filler.write_bytes(bytes(free - 160 * 1024))  # room to open the journal, not to finish
    argv = [sys.executable, "-m", "phototag", "annotate", str(photos), "--model", prior_model,
            "--format", "json", "--journal", str(small_disk / "j.sqlite"),
            "--chunk-size", "1"]  # each record its own commit  # fmt: skip

    first = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert first.returncode == 1 and "Traceback" not in first.stderr
    assert first.stderr.endswith(
        f"phototag: error: {small_disk}: no space left on the device: free some space and "
        "run again\n"
    )
    filler.unlink()
    second = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert second.returncode == 0 and "Traceback" not in second.stderr
    lines = second.stdout.splitlines()
    assert [json.loads(line)["path"] for line in lines] == sorted(map(str, photos.iterdir()))
    printed = first.stdout.splitlines()  # the last one printed was not journaled
    assert 2 <= len(printed) < 40 and printed == lines[: len(printed)]
    assert f"40 tagged, 0 skipped, {len(printed) - 1} resumed" in second.stderr
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


def test_default_path_is_per_run_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PHOTOTAG_CACHE", str(tmp_path / "cache"))
    one = default_journal_path("annotate", {"top_k": 3})
    assert one.parent == tmp_path / "cache" / "journals" and one.name.startswith("annotate-")
    assert one == default_journal_path("annotate", {"top_k": 3})
    assert one != default_journal_path("annotate", {"top_k": 4})
    assert one != default_journal_path("features", {"top_k": 3})


def test_run_key_ignores_presentation_and_fingerprints_files(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("cat\n")
    args = argparse.Namespace(format="json", workers=2, top_k=3, vocabulary=words, store=None)
    key = run_key("annotate", args, ["photos"])
    assert "format" not in key and "workers" not in key and key["top_k"] == 3
    assert key["inputs"] == [os.path.abspath("photos")]
    as_csv = argparse.Namespace(**{**vars(args), "format": "csv"})
    assert run_key("annotate", as_csv, ["photos"]) == key
    words.write_text("cat\ndog\n")  # an edited word list is another run
    assert run_key("annotate", args, ["photos"]) != key


def test_resume_replays_in_order_and_annotates_only_the_rest(tmp_path):
    paths = touch_files(tmp_path / "p", [f"{i}.jpg" for i in range(6)])
    asked: list[list[str]] = []

    def annotate(todo):
        asked.append(list(todo))
        for path in todo:
            yield FileAnnotation(path, ((Path(path).stem, 0.25),))

    with Journal(tmp_path / "j.sqlite", {}) as journal:
        for path in (paths[1], paths[4]):
            record_annotation(journal, FileAnnotation(path, (("old", 1.0 / 3),)))
        record_annotation(journal, FileAnnotation(paths[2], error="2.jpg: truncated"))
        results = list(resume_annotations(paths, journal, annotate))
    assert asked == [[paths[0], paths[3], paths[5]]]
    assert [r.path for r, _ in results] == paths
    assert [replayed for _, replayed in results] == [False, True, True, False, True, False]
    assert results[1][0].tags == (("old", 1.0 / 3),)  # scores replay exactly
    assert results[2][0].error == "2.jpg: truncated"
    assert results[3][0].tags == (("3", 0.25),)


def test_summary_groups_skip_reasons():
    summary = BatchSummary("annotate")
    summary.add("a.jpg", None)
    summary.add("b.jpg", None, replayed=True, empty=True)
    summary.add("c.jpg", "c.jpg: the file is empty (0 bytes); the copy failed")
    summary.add("d.jpg", "d.jpg: the file is empty (0 bytes); the copy failed", replayed=True)
    summary.add("e.jpg", "e.jpg: cannot read (Input/output error)")
    lines = summary.lines()
    assert lines[0] == (
        "annotate: 5 photos, 1 tagged, 1 without keywords, 3 skipped, 2 resumed from journal"
    )
    assert lines[1] == "  skipped 2: the file is empty (0 bytes) (c.jpg, d.jpg)"
    assert lines[2] == "  skipped 1: cannot read (e.jpg)"
    assert skip_reason("x.jpg: no such file or folder") == "no such file or folder"


# ----------------------------------------------------------- killing a real run
N_PHOTOS = 40


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """40 small, distinct JPEGs (crops of the example photos) and one broken file."""
    folder = tmp_path_factory.mktemp("library")
    sources = [Image.open(p).convert("RGB") for p in sorted(EXAMPLES.glob("*.jpg"))]
    rng = np.random.default_rng(0)
    for i in range(N_PHOTOS):
        image = sources[i % len(sources)]
        w, h = image.size
        x, y = int(rng.integers(0, w // 3)), int(rng.integers(0, h // 3))
        crop = image.crop((x, y, x + w // 2, y + h // 2)).resize((96, 96))
        crop.save(folder / f"photo_{i:02d}.jpg", quality=90)
    (folder / "photo_17b.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


def annotate_argv(library, model, store, *extra):
    return ["annotate", str(library), "--model", model, "--format", "json", "--top-k", "3",
            "--runtime", "torch", "--workers", "0", "--batch-size", "2", "--chunk-size", "2",
            "--store", str(store), *extra]  # fmt: skip


def journal_rows(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    except sqlite3.Error:
        return 0  # not created yet


@pytest.mark.integration
def test_sigkilled_annotate_resumes_without_redoing_or_losing(
    library, lite0_model, tmp_path, monkeypatch, capsys
):
    from phototag.app.cli import main

    monkeypatch.setenv("PHOTOTAG_CACHE", str(tmp_path / "cache"))
    clean = tmp_path / "clean.sqlite"
    assert main(annotate_argv(library, lite0_model, tmp_path / "s0", "--journal", str(clean))) == 1
    expected = capsys.readouterr().out.splitlines()  # exit status 1: the broken file
    assert len(expected) == N_PHOTOS

    # a real process, killed with SIGKILL once a few photos are journaled
    argv = annotate_argv(library, lite0_model, tmp_path / "s1")
    first = subprocess.Popen([sys.executable, "-m", "phototag", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, env=dict(os.environ))  # fmt: skip
    journals = tmp_path / "cache" / "journals"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None:
        found = list(journals.glob("annotate-*.sqlite"))
        if found and journal_rows(found[0]) >= 6:
            first.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    out, _ = first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    (journal,) = journals.glob("annotate-*.sqlite")
    killed_at = journal_rows(journal)
    assert 6 <= killed_at < N_PHOTOS + 1
    assert set(out.decode().splitlines()) <= set(expected)

    # started again: finished photos are replayed, not redone; the output is complete
    assert main(argv) == 1
    second = capsys.readouterr()
    assert second.out.splitlines() == expected  # complete, identical, in order
    assert f"{N_PHOTOS + 1} photos, {N_PHOTOS} tagged, 1 skipped, {killed_at} resumed" in (
        second.err
    )
    assert journal_rows(journal) == N_PHOTOS + 1
    assert main(argv) == 1  # a finished run replays everything
    third = capsys.readouterr()
    assert third.out.splitlines() == expected
    assert f"{N_PHOTOS + 1} resumed from journal" in third.err


@pytest.mark.integration
def test_features_command_resumes_from_its_journal(library, tmp_path, capsys):
    from phototag.app.cli import main

    photos = [str(p) for p in sorted(library.glob("photo_0*.jpg"))[:5]]

    def features(paths, journal):
        return main(["features", *paths, "--encoder", "efficientnet_lite0", "--store",
                     str(tmp_path / "s"), "--workers", "0", "--runtime", "torch",
                     "--journal", str(tmp_path / journal), "--chunk-size", "2"])  # fmt: skip

    assert features(photos[:3], "f.sqlite") == 0
    err = capsys.readouterr().err
    assert "3 computed" in err and "features: 3 photos, 3 stored, 0 skipped, 0 resumed" in err
    assert features(photos, "f.sqlite") == 1  # that journal belongs to the run over three
    assert "differs in: inputs" in capsys.readouterr().err
    assert features(photos, "g.sqlite") == 0
    assert "2 computed (" in capsys.readouterr().err
    assert features(photos, "g.sqlite") == 0
    err = capsys.readouterr().err
    assert "0 computed" in err and "5 photos, 5 stored, 0 skipped, 5 resumed" in err


def test_run_key_fingerprints_a_shipped_model_by_its_files():
    from phototag.pretrained import pretrained_path

    args = argparse.Namespace(model="default", store=None)
    key = run_key("annotate", args, ["photos"])
    files = {name for name, _, _ in key["model"]["files"]}
    assert key["model"]["path"] == str(pretrained_path("default").resolve())
    assert {"config.json", "weights.safetensors"} <= files


def test_run_key_fingerprints_the_directory_load_model_reads(tmp_path, monkeypatch, prior_model):
    import shutil

    shutil.copytree(prior_model, tmp_path / "default")  # a local folder named like a shipped model
    monkeypatch.chdir(tmp_path)
    key = run_key("annotate", argparse.Namespace(model="default", store=None), ["photos"])
    assert key["model"]["path"] == str((tmp_path / "default").resolve())
