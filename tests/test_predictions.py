import json

import numpy as np
import pytest

from phototag.data import Vocabulary, from_label_sets
from phototag.errors import InvalidInputError
from phototag.evaluation.predictions import read_predictions


@pytest.fixture
def target():
    return from_label_sets(
        "toy",
        ["a.jpg", "b.jpg", "c.jpg"],
        [["sky"], ["sea", "sky"], []],
        vocabulary=Vocabulary(["sky", "sea", "tree"]),
    )


SCORES = np.array([[0.9, 0.1, 0.2], [0.5, 0.6, 0.1], [0.1, 0.2, 0.3]], dtype=np.float32)


def test_npy_scores_and_label_sets(tmp_path, target):
    np.save(tmp_path / "s.npy", SCORES)
    assert np.array_equal(read_predictions(tmp_path / "s.npy", target).scores, SCORES)
    np.save(tmp_path / "l.npy", SCORES > 0.4)
    sets = read_predictions(tmp_path / "l.npy", target)
    assert sets.scores is None and sets.label_sets.tolist() == (SCORES > 0.4).tolist()


def test_npz_rows_and_columns_are_realigned(tmp_path, target):
    np.savez(
        tmp_path / "p.npz",
        scores=SCORES[::-1, ::-1],
        item_ids=np.array(["c.jpg", "b.jpg", "a.jpg"]),
        labels=np.array(["tree", "sea", "sky"]),
    )
    assert np.array_equal(read_predictions(tmp_path / "p.npz", target).scores, SCORES)


def test_json_subset_of_labels_scores_lowest_for_missing(tmp_path, target):
    data = {"labels": ["sea"], "scores": [[0.3], [0.7], [0.2]], "quantities": [1, 2, 0]}
    (tmp_path / "p.json").write_text(json.dumps(data))
    predictions = read_predictions(tmp_path / "p.json", target)
    assert predictions.scores[:, 1].tolist() == pytest.approx([0.3, 0.7, 0.2])
    assert (predictions.scores[:, [0, 2]] < 0.2).all()
    assert predictions.quantities.tolist() == [1, 2, 0]


def test_jsonl_from_annotate_output(tmp_path, target):
    lines = [
        {"path": "/photos/b.jpg", "tags": [{"label": "sea", "score": 0.8}]},
        {"path": "/photos/a.jpg", "tags": [{"label": "sky", "score": 0.9}]},
        {"id": "c.jpg", "tags": []},
    ]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    scores = read_predictions(tmp_path / "p.jsonl", target).scores
    assert scores[0, 0] == pytest.approx(0.9) and scores[1, 1] == pytest.approx(0.8)
    assert scores.argmax(axis=1)[:2].tolist() == [0, 1]


def test_jsonl_label_names_are_label_sets(tmp_path, target):
    lines = [
        {"id": "a.jpg", "tags": ["sky"]},
        {"id": "b.jpg", "tags": ["sea"]},
        {"id": "c.jpg", "tags": []},
    ]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    sets = read_predictions(tmp_path / "p.jsonl", target).label_sets
    assert sets.astype(int).tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("wrong.npy", np.zeros((2, 3)), r"shape \(3, 3\)"),
        ("nan.npy", np.full((3, 3), np.nan), "finite"),
        ("ints.npy", np.full((3, 3), 2), "0/1"),
    ],
)
def test_bad_arrays(tmp_path, target, name, content, message):
    np.save(tmp_path / name, content)
    with pytest.raises(InvalidInputError, match=message):
        read_predictions(tmp_path / name, target)


def test_files_that_are_not_what_they_claim(tmp_path, target):
    (tmp_path / "fake.npy").write_text("hello")
    with pytest.raises(InvalidInputError, match=r"\.npy"):
        read_predictions(tmp_path / "fake.npy", target)
    (tmp_path / "fake.npz").write_text("hello")
    with pytest.raises(InvalidInputError, match=r"\.npz"):
        read_predictions(tmp_path / "fake.npz", target)
    (tmp_path / "fake.json").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(InvalidInputError, match="JSON"):
        read_predictions(tmp_path / "fake.json", target)
    (tmp_path / "p.csv").write_text("a,b")
    with pytest.raises(InvalidInputError, match=".csv"):
        read_predictions(tmp_path / "p.csv", target)


def test_unknown_labels_and_missing_items(tmp_path, target):
    (tmp_path / "u.json").write_text(json.dumps({"labels": ["cat"], "scores": [[1], [1], [1]]}))
    with pytest.raises(InvalidInputError, match="'cat'"):
        read_predictions(tmp_path / "u.json", target)
    (tmp_path / "m.json").write_text(json.dumps({"item_ids": ["a.jpg"], "scores": [[1, 0, 0]]}))
    with pytest.raises(InvalidInputError, match="2 missing"):
        read_predictions(tmp_path / "m.json", target)
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "zzz.jpg", "tags": []}))
    with pytest.raises(InvalidInputError, match="line 1"):
        read_predictions(tmp_path / "m.jsonl", target)
