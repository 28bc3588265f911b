"""mirflickr reader: official layout fixture, and the cleaned .mat matrices (real data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from phototag.data.readers import read_dataset
from phototag.data.readers.mirflickr import CONCEPTS24, read_mirflickr
from phototag.errors import DatasetFormatError, InvalidInputError

FIXTURES = Path(__file__).parent / "fixtures"


def tag_sets(data) -> list[set[str]]:
    names = data.tag_vocabulary.names
    return [{names[j] for j in row.indices} for row in data.user_tags]


def test_official_fixture():
    data = read_mirflickr(FIXTURES / "mirflickr")
    assert data.item_ids == [f"im{i}.jpg" for i in range(1, 7)]
    # README.txt is ignored, *_r1.txt are the strict lists
    assert data.vocabulary.names == ("animals", "clouds", "dog", "sky", "sunset")
    assert data.label_sets() == [
        ["clouds", "sky"],
        ["animals", "dog"],
        ["clouds", "sky", "sunset"],
        [],
        ["animals", "dog", "sky"],
        ["clouds", "sky"],
    ]
    assert tag_sets(data) == [
        {"sky", "clouds", "blue"},
        {"dog", "puppy"},
        {"sky", "sunset"},
        set(),
        {"dog", "sky", "beach"},
        {"clouds"},
    ]
    assert data.tag_vocabulary[0] == "sky"  # most used first
    assert data.splits == {} and data.image_paths is None
    assert any("no official train/test split" in n for n in data.notes)


def test_relevant_only_and_tag_options():
    strict = read_mirflickr(FIXTURES / "mirflickr", relevant_only="true")
    assert strict.vocabulary.names == ("clouds", "dog")
    assert strict.label_sets() == [["clouds"], ["dog"], [], [], [], ["clouds"]]
    raw = read_mirflickr(FIXTURES / "mirflickr", tags="raw")
    assert "puppy!" in raw.tag_vocabulary and "Sky" in raw.tag_vocabulary
    frequent = read_mirflickr(FIXTURES / "mirflickr", min_tag_count="2")
    assert set(frequent.tag_vocabulary) == {"sky", "clouds", "dog"}
    assert read_mirflickr(FIXTURES / "mirflickr", tags="none").user_tags is None
    with pytest.raises(InvalidInputError, match="relevant_only"):
        read_mirflickr(FIXTURES / "mirflickr", relevant_only="perhaps")


def test_seeded_split():
    a = read_dataset(f"mirflickr:{FIXTURES / 'mirflickr'}?test_size=2&seed=3")
    b = read_mirflickr(FIXTURES / "mirflickr", test_size="2", seed="3")
    assert len(a.splits["test"]) == 2 and len(a.splits["train"]) == 4
    assert np.array_equal(a.splits["test"], b.splits["test"])
    assert len(read_mirflickr(FIXTURES / "mirflickr", test_size="0.5").splits["test"]) == 3
    with pytest.raises(InvalidInputError, match="test_size"):
        read_mirflickr(FIXTURES / "mirflickr", test_size="6")


def test_images(fixture_copy):
    root = fixture_copy("mirflickr")
    for i in range(1, 7):
        (root / "mirflickr" / f"im{i}.jpg").write_bytes(b"")
    data = read_mirflickr(root)
    assert data.image_paths[5] == str(root / "mirflickr" / "im6.jpg")
    (root / "mirflickr" / "im2.jpg").unlink()
    (root / "mirflickr" / "meta" / "tags" / "tags6.txt").unlink()
    with pytest.raises(DatasetFormatError, match=r"im2\.jpg: image not found"):
        read_mirflickr(root)
    data = read_mirflickr(root, missing_images="drop")
    assert data.item_ids == ["im1.jpg", "im3.jpg", "im4.jpg", "im5.jpg", "im6.jpg"]
    assert any("1 of 6 images have no tag file" in n for n in data.notes)


def test_bad_image_number_names_line(fixture_copy):
    root = fixture_copy("mirflickr")
    path = root / "annotations" / "sky.txt"
    path.write_bytes(b"1\r\n3\r\n7\r\n")
    with pytest.raises(DatasetFormatError) as error:
        read_mirflickr(root)
    assert error.value.path == path and error.value.line == 3
    assert "sky.txt, line 3: expected an image number 1..6, found '7'" in str(error.value)


def test_layout_errors(tmp_path):
    with pytest.raises(DatasetFormatError, match="mirflickr25k-lall.mat"):
        read_mirflickr(tmp_path)
    (tmp_path / "annotations").mkdir()
    with pytest.raises(DatasetFormatError, match=r"im1\.jpg: no images"):
        read_mirflickr(tmp_path)


def test_mat_form_checks(tmp_path):
    labels = np.zeros((5, 24), dtype=np.uint8)
    labels[:, 0] = 1
    scipy.io.savemat(tmp_path / "mirflickr25k-lall.mat", {"LAll": labels})
    data = read_mirflickr(tmp_path)
    assert data.n_items == 5 and data.user_tags is None
    labels[3, 2] = 2
    scipy.io.savemat(tmp_path / "mirflickr25k-lall.mat", {"LAll": labels})
    with pytest.raises(DatasetFormatError, match=r"LAll: expected 0/1 entries, found 2 \(row 4"):
        read_mirflickr(tmp_path)
    scipy.io.savemat(tmp_path / "mirflickr25k-lall.mat", {"L": labels})
    with pytest.raises(DatasetFormatError, match="expected a variable 'LAll', found L"):
        read_mirflickr(tmp_path)
    with pytest.raises(InvalidInputError, match="relevant_only"):
        read_mirflickr(tmp_path, relevant_only="true")


# ------------------------------------------------------------------ real data


def test_real_mat_form(shared_data):
    data = read_mirflickr(shared_data / "mirflickr25k")
    assert data.n_items == 20_015
    assert data.vocabulary.names == tuple(CONCEPTS24)
    assert data.user_tags.shape == (20_015, 1_386)
    assert data.tag_vocabulary[0] == "tag0000"
    assert data.item_ids[0] == "row/000000"
    assert any("column order assumed" in n for n in data.notes)
    assert any("no tag names" in n for n in data.notes)
    assert data.splits == {}
    query = read_mirflickr(shared_data / "mirflickr25k", test_size="2000")
    assert {k: len(v) for k, v in query.splits.items()} == {"train": 18_015, "test": 2_000}


def test_real_mat_column_order_is_consistent_with_the_concept_hierarchy(shared_data):
    # Not a proof of the assumed order, but evidence: the sub-concepts of MIRFLICKR's
    # hierarchy (dog < animals, baby/female/male < people, lake/river/sea < water, ...)
    # almost only occur together with their parent under the alphabetical naming.
    data = read_mirflickr(shared_data / "mirflickr25k")
    labels = data.labels.toarray()
    column = {name: j for j, name in enumerate(data.vocabulary)}
    for child, parent in [
        ("dog", "animals"),
        ("bird", "animals"),
        ("baby", "people"),
        ("female", "people"),
        ("male", "people"),
        ("flower", "plant_life"),
        ("tree", "plant_life"),
        ("clouds", "sky"),
        ("lake", "water"),
        ("river", "water"),
        ("sea", "water"),
        ("car", "transport"),
    ]:
        has_child = labels[:, column[child]]
        assert (has_child & labels[:, column[parent]]).sum() >= 0.99 * has_child.sum()
