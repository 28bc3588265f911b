"""Decisions database and `phototag train --feedback`: accepted tags become labels."""

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from phototag.app.cli import main
from phototag.data import from_label_sets
from phototag.errors import InvalidInputError
from phototag.fileio import DamagedFileError
from phototag.library.feedback import FeedbackStore, merge_feedback
from phototag.models import Annotator

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "library"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.jpg").write_bytes((EXAMPLES / "coffee.jpg").read_bytes())
    outside = tmp_path / "uploads"
    outside.mkdir()
    (outside / "up.jpg").write_bytes((EXAMPLES / "chelsea.jpg").read_bytes())
    return folder, outside


def test_store_keeps_the_latest_decision_per_photo_and_label(tmp_path, photos):
    folder, _ = photos
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    first = store.add_photo(folder / "a.jpg", "a.jpg", "folder")
    again = store.add_photo(folder / "x" / ".." / "a.jpg", "a.jpg", "folder")
    assert again == first and first.path == str((folder / "a.jpg").resolve())
    store.decide(first.id, "cup", "accepted", 0.7, "m")
    store.decide(first.id, "cup", "rejected", 0.7, "m")
    store.decide(first.id, " sky ", "accepted", None, "m")
    decisions = store.decisions(first.id)
    assert [(d.label, d.decision, d.score) for d in decisions] == [
        ("cup", "rejected", 0.7),
        ("sky", "accepted", None),
    ]
    with pytest.raises(InvalidInputError, match="decision"):
        store.decide(first.id, "cup", "maybe", None, "m")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="label"):
        store.decide(first.id, "  ", "accepted", None, "m")
    with pytest.raises(sqlite3.IntegrityError):  # a decision needs a known photo
        store.decide(999, "cup", "accepted", None, "m")
    assert store.photos_with_decisions() == {first.path: {"cup": "rejected", "sky": "accepted"}}


def test_a_name_that_is_not_utf8_is_kept_exactly(tmp_path, photos):
    folder, _ = photos
    bad = os.fsdecode(os.path.join(os.fsencode(folder), b"bad_\xff.jpg"))
    Path(bad).write_bytes((EXAMPLES / "coffee.jpg").read_bytes())
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    photo = store.add_photo(bad, "bad_%FF.jpg", "folder")
    assert store.add_photo(bad, "bad_%FF.jpg", "folder") == photo == store.photo(photo.id)
    assert os.fsencode(photo.path) == os.fsencode(Path(bad).resolve())
    store.decide(photo.id, "cup", "accepted", 0.9, "m")
    assert store.photos_with_decisions() == {photo.path: {"cup": "accepted"}}
    train = from_label_sets("t", [bad], [["sky"]], image_paths=[bad])
    merged, report = merge_feedback(train, tmp_path / "feedback.sqlite")
    assert report.photos_matched == 1 and "cup" in merged.vocabulary


def test_merge_adds_accepted_removes_rejected_and_appends_new_photos(tmp_path, photos):
    folder, outside = photos
    data = from_label_sets(
        "lib", ["a.jpg", "b.jpg", "c.jpg"], [["cup", "table"], ["cup"], ["sky"]],
        image_paths=[str(folder / n) for n in ("a.jpg", "b.jpg", "c.jpg")],
        splits={"train": np.array([0, 1]), "test": np.array([2])},
    )  # fmt: skip
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    a = store.add_photo(folder / "a.jpg", "a.jpg", "folder").id
    c = store.add_photo(folder / "c.jpg", "c.jpg", "folder").id
    up = store.add_photo(outside / "up.jpg", "up.jpg", "upload").id
    only_rejected = store.add_photo(outside / "up.jpg.copy", "copy", "upload").id
    gone = store.add_photo(outside / "gone.jpg", "gone.jpg", "upload").id
    store.decide(a, "table", "rejected", 0.4, "m")
    store.decide(a, "coffee", "accepted", 0.9, "m")  # new label
    store.decide(a, "cup", "accepted", 0.8, "m")  # already a label: no change
    store.decide(a, "unknown", "rejected", 0.1, "m")  # rejected and not in vocabulary
    store.decide(c, "sky", "rejected", 0.3, "m")  # test split is corrected too
    store.decide(up, "cat", "accepted", 0.9, "m")
    store.decide(up, "cup", "rejected", 0.2, "m")
    store.decide(only_rejected, "cat", "rejected", 0.5, "m")
    store.decide(gone, "cat", "accepted", 0.5, "m")

    merged, report = merge_feedback(data, store.path, split="train")

    assert list(merged.vocabulary) == ["cup", "sky", "table", "coffee", "cat"]
    assert merged.label_sets() == [["cup", "coffee"], ["cup"], [], ["cat"]]
    assert merged.image_paths[3] == str((outside / "up.jpg").resolve())
    assert merged.item_ids[3].startswith("feedback:")
    assert merged.splits["train"].tolist() == [0, 1, 3]
    assert merged.splits["test"].tolist() == [2]
    assert (report.photos_matched, report.photos_added) == (2, 1)
    assert (report.labels_added, report.labels_removed) == (1, 2)
    assert report.new_labels == ["coffee", "cat"]
    assert len(report.skipped) == 1 and "gone.jpg" in report.skipped[0]
    assert "2 dataset photos corrected" in report.summary()
    assert data.label_sets() == [["cup", "table"], ["cup"], ["sky"]]  # input left alone


def test_merge_refuses_missing_database_and_labels_only_data(tmp_path, photos):
    folder, _ = photos
    data = from_label_sets("lib", ["a.jpg"], [["cup"]], image_paths=[str(folder / "a.jpg")])
    with pytest.raises(InvalidInputError, match="no such file"):
        merge_feedback(data, tmp_path / "missing.sqlite")
    (tmp_path / "junk.sqlite").write_text("not a database " * 100)
    with pytest.raises(DamagedFileError, match="junk.sqlite: not a readable decisions database"):
        merge_feedback(data, tmp_path / "junk.sqlite")
    FeedbackStore(tmp_path / "feedback.sqlite")
    with pytest.raises(InvalidInputError, match="labels only"):
        merge_feedback(from_label_sets("x", ["a"], [["cup"]]), tmp_path / "feedback.sqlite")


def test_train_learns_from_feedback(tmp_path, photos, capsys):
    folder, outside = photos
    from_label_sets(
        "lib", ["a.jpg", "b.jpg", "c.jpg"], [["cup"], ["cup"], ["sky"]],
        image_paths=[str(folder / n) for n in ("a.jpg", "b.jpg", "c.jpg")],
        splits={"train": np.arange(3)},
    ).save(tmp_path / "lib")  # fmt: skip
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    b = store.add_photo(folder / "b.jpg", "b.jpg", "folder").id
    up = store.add_photo(outside / "up.jpg", "up.jpg", "upload").id
    store.decide(b, "cup", "rejected", 0.9, "m")
    store.decide(b, "saucer", "accepted", 0.3, "m")
    store.decide(up, "cat", "accepted", 0.8, "m")
    base = ["train", "--dataset", f"annotations:{tmp_path / 'lib'}", "--model", "prior"]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert main([*base, "--out", str(tmp_path / "fed"), "--feedback", str(store.path)]) == 0
    err = capsys.readouterr().err
    expected = "feedback: 1 dataset photos corrected (1 keywords added, 1 removed), 1 photos added"
    assert expected in err
    plain = Annotator.load(tmp_path / "plain")
    fed = Annotator.load(tmp_path / "fed")
    assert list(plain.vocabulary_) == ["cup", "sky"]
    assert list(fed.vocabulary_) == ["cup", "sky", "saucer", "cat"]
    # prior = (items with the label + 1) / (items + 2): cup 1 of 4, saucer 1 of 4
    np.testing.assert_allclose(fed.label_frequency_, [2 / 6, 2 / 6, 2 / 6, 2 / 6], rtol=1e-6)
    np.testing.assert_allclose(plain.label_frequency_, [3 / 5, 2 / 5], rtol=1e-6)
    assert main([*base, "--out", str(tmp_path / "x"), "--feedback", str(tmp_path / "no.db")]) == 1
    assert "--feedback" in capsys.readouterr().err
