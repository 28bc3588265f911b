"""corel5k, espgame and iaprtc12 readers: fixtures in the official layout, then real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phototag.data.readers import read_dataset
from phototag.data.readers.corel5k import read_corel5k, read_espgame, read_iaprtc12
from phototag.errors import DatasetFormatError, InvalidInputError

FIXTURES = Path(__file__).parent / "fixtures"


def labels_by_id(dataset) -> dict[str, set[str]]:
    return dict(zip(dataset.item_ids, map(set, dataset.label_sets()), strict=True))


# ------------------------------------------------------------------- fixtures


def test_split260_fixture():
    data = read_corel5k(FIXTURES / "corel5k")
    assert data.vocabulary.names == ("city", "mountain", "sky", "sun", "water")
    assert data.item_ids == ["1000.jpeg", "1003.jpeg", "1004.jpeg", "1005.jpeg"] + [
        "1001.jpeg",
        "1002.jpeg",
    ]
    assert data.splits["train"].tolist() == [0, 1, 2, 3]
    assert data.splits["test"].tolist() == [4, 5]
    assert data.label_sets()[1] == ["sun"]
    assert data.label_sets()[2] == []  # image with no label of the 260-word vocabulary
    assert data.image_paths is None  # no train/ and test/ folders in the fixture


def test_duygulu_fixture_and_repeated_word_id():
    data = read_corel5k(FIXTURES / "corel5k", labels="duygulu")
    assert len(data.vocabulary) == 7
    assert data.label_sets()[0] == ["city", "mountain", "sky", "sun"]
    assert data.label_sets()[3] == ["sky", "water"]  # "3 5 3": the repeat counts once
    assert any("training_label, line 4" in note and "[3]" in note for note in data.notes)


def test_split260_is_duygulu_restricted_to_its_vocabulary_fixture():
    small = read_corel5k(FIXTURES / "corel5k")
    full = read_corel5k(FIXTURES / "corel5k", labels="duygulu")
    words = set(small.vocabulary)
    expected = {k: v & words for k, v in labels_by_id(full).items()}
    assert labels_by_id(small) == expected


def test_images_resolved_from_split_folders(fixture_copy):
    root = fixture_copy("corel5k")
    for split, names in (("train", ["1000", "1003", "1004", "1005"]), ("test", ["1001", "1002"])):
        (root / split).mkdir()
        for name in names:
            (root / split / f"{name}.jpeg").write_bytes(b"")
    data = read_corel5k(root)
    assert data.image_paths[0] == str((root / "train" / "1000.jpeg").resolve())
    assert data.image_paths[-1] == str((root / "test" / "1002.jpeg").resolve())

    (root / "test" / "1002.jpeg").unlink()
    with pytest.raises(DatasetFormatError, match=r"1002\.jpeg: image not found \(1 of 6"):
        read_corel5k(root)
    dropped = read_corel5k(root, missing_images="drop")
    assert dropped.n_items == 5 and dropped.splits["test"].tolist() == [4]
    assert any("left out" in note for note in dropped.notes)


def test_images_option_overrides(fixture_copy, tmp_path):
    root = fixture_copy("corel5k")
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ["1000", "1003", "1004", "1005", "1001", "1002"]:
        (flat / f"{name}.jpeg").write_bytes(b"")
    data = read_dataset(f"corel5k:{root}?images={flat}")
    assert data.image_paths[4] == str(flat / "1001.jpeg")


def test_truncated_json_names_file_and_line(fixture_copy):
    root = fixture_copy("corel5k")
    path = root / "split260" / "test.json"
    path.write_text('{"samples": [\n {"image_name": "1001.jpeg",\n  "image_labels": ["sky"')
    with pytest.raises(DatasetFormatError) as error:
        read_corel5k(root)
    assert error.value.path == path and error.value.line == 3
    assert "test.json, line 3: invalid JSON" in str(error.value)


def test_unknown_label_names_sample_and_line(fixture_copy):
    root = fixture_copy("corel5k")
    path = root / "split260" / "train.json"
    samples = [
        {"image_name": "1000.jpeg", "image_labels": ["sky"]},
        {"image_name": "1003.jpeg", "image_labels": ["volcano"]},
    ]
    path.write_text(json.dumps({"samples": samples}, indent=1))
    with pytest.raises(DatasetFormatError, match=r"'volcano' is not in the vocabulary") as error:
        read_corel5k(root)
    assert error.value.line == 10 and error.value.path == path
    assert "samples[1] (1003.jpeg)" in str(error.value)


def test_repeated_image_names_line_of_the_repeat(fixture_copy):
    root = fixture_copy("corel5k")
    path = root / "split260" / "test.json"
    sample = {"image_name": "1001.jpeg", "image_labels": ["sky"]}
    path.write_text(json.dumps({"samples": [sample, sample]}, indent=0))
    with pytest.raises(
        DatasetFormatError, match=r"line 10: samples\[1\]: image '1001.jpeg' repeats"
    ):
        read_corel5k(root)


def test_duygulu_unknown_word_id_names_line(fixture_copy):
    root = fixture_copy("corel5k")
    path = root / "duygulu" / "test_label"
    path.write_bytes(b"1001 2 3\r\n1002 6 8\r\n")
    with pytest.raises(DatasetFormatError, match=r"test_label, line 2: expected word ids 1\.\.7"):
        read_corel5k(root, labels="duygulu")


def test_missing_files_name_the_layout(fixture_copy):
    root = fixture_copy("corel5k")
    (root / "split260" / "test.json").unlink()
    with pytest.raises(DatasetFormatError, match=r"test\.json: file not found; expected layout"):
        read_corel5k(root)
    with pytest.raises(InvalidInputError, match="labels"):
        read_corel5k(root, labels="other")


def test_espgame_fixture_labels_only_then_images(tmp_path):
    data = read_espgame(FIXTURES / "espgame")
    assert data.summary()["splits"] == {"train": 3, "test": 1}
    assert data.image_paths is None
    assert data.label_sets()[3] == ["blue", "car", "sky"]

    images = tmp_path / "ESP-ImageSet"
    images.mkdir()
    for name in ["15001.jpg", "15030.jpg", "15031.jpg"]:
        (images / name).write_bytes(b"")
    with pytest.raises(DatasetFormatError, match=r"15097\.jpg: image not found") as error:
        read_espgame(FIXTURES / "espgame", images=str(images))
    assert "Check images=" in str(error.value)
    (images / "deeper").mkdir()
    (images / "deeper" / "15097.jpg").write_bytes(b"")  # found by unique file name
    data = read_espgame(FIXTURES / "espgame", images=str(images))
    assert data.image_paths[3] == str(images / "deeper" / "15097.jpg")


def test_espgame_needs_one_vocabulary_file(fixture_copy):
    root = fixture_copy("espgame")
    (root / "other_vocabulary.txt").write_text("x\n")
    with pytest.raises(DatasetFormatError, match="exactly one"):
        read_espgame(root)


# ------------------------------------------------------------------ real data


def test_real_corel5k(shared_data):
    data = read_corel5k(shared_data / "corel5k")
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 4500, "test": 499}
    assert len(data.vocabulary) == 260
    vocabulary_file = shared_data / "corel5k" / "split260" / "corel5k_vocabulary.txt"
    assert list(data.vocabulary) == vocabulary_file.read_text().split()
    assert all(Path(p).is_file() for p in data.image_paths[::500])
    assert data.image_paths[0].endswith("/train/1000.jpeg")


def test_real_duygulu_and_the_260_word_split(shared_data):
    small = read_corel5k(shared_data / "corel5k")
    full = read_corel5k(shared_data / "corel5k", labels="duygulu")
    assert len(full.vocabulary) == 374
    assert {k: len(v) for k, v in full.splits.items()} == {"train": 4500, "test": 499}
    assert set(small.vocabulary) <= set(full.vocabulary)
    # The data README: split260 = Duygulu labels intersected with the 260-word vocabulary.
    words = set(small.vocabulary)
    assert labels_by_id(small) == {k: v & words for k, v in labels_by_id(full).items()}
    for split in ("train", "test"):
        assert set(small.split(split).item_ids) == set(full.split(split).item_ids)
    assert any("140026" in note for note in full.notes)  # word id 7 listed twice


@pytest.mark.parametrize(
    ("reader", "folder", "sizes", "n_words"),
    [
        (read_espgame, "espgame", {"train": 18689, "test": 2081}, 268),
        (read_iaprtc12, "iaprtc12", {"train": 17665, "test": 1962}, 291),
    ],
)
def test_real_espgame_and_iaprtc12(shared_data, reader, folder, sizes, n_words):
    data = reader(shared_data / folder)
    assert {k: len(v) for k, v in data.splits.items()} == sizes
    assert len(data.vocabulary) == n_words
    assert data.image_paths is None
    assert data.labels.sum() > data.n_items
