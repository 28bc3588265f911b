"""coco reader: a fixture in the official 2014 JSON layout (all 80 categories)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from phototag.data.readers import read_dataset
from phototag.data.readers.coco import caption_tag_vocabulary, read_coco
from phototag.errors import DatasetFormatError, InvalidInputError

FIXTURES = Path(__file__).parent / "fixtures"
TRAIN_IDS = [f"COCO_train2014_{i:012d}.jpg" for i in (9, 25, 30, 34)]
VAL_IDS = [f"COCO_val2014_{i:012d}.jpg" for i in (42, 73, 74)]


def test_labels_vocabulary_and_splits():
    data = read_coco(FIXTURES / "coco")
    assert len(data.vocabulary) == 80
    assert data.vocabulary[:3] == ("person", "bicycle", "car")
    assert data.vocabulary[-1] == "toothbrush"
    assert data.item_ids == TRAIN_IDS + VAL_IDS
    assert {k: v.tolist() for k, v in data.splits.items()} == {
        "train": [0, 1, 2, 3],
        "test": [4, 5, 6],
    }
    assert data.label_sets() == [
        ["bowl", "pizza"],  # two pizza instances count once; category-id order
        ["giraffe"],
        ["person", "car", "bus"],  # the crowd "person" annotation counts
        [],  # no instance annotation
        ["dog"],
        ["cat", "couch"],
        ["person", "dog", "toothbrush"],
    ]
    assert data.metadata["image_id"].tolist() == [9, 25, 30, 34, 42, 73, 74]
    assert any("1 of 4 images have no instance annotation" in n for n in data.notes)
    assert data.image_paths is None


def test_caption_tags_follow_train_frequencies():
    data = read_coco(FIXTURES / "coco")
    tags = data.tag_vocabulary
    # "a" is in the captions of 6 of the 4 + 3 images but only train images count: 3 of 4
    assert tags[0] == "a"
    assert {"a", "of", "the", "with"} <= set(tags)  # no stop-word filtering by default
    assert "brown" not in tags  # only in a val caption
    user = data.user_tags.toarray()
    assert user[0, tags.index("pizza")] and user[0, tags.index("bowl")]
    # val image 42, "A dog lying on the grass." / "A brown dog in the grass.": only the
    # words of the train vocabulary remain
    assert {tags[j] for j in np.flatnonzero(user[4])} == {"a", "in", "on", "the"}
    small = read_coco(FIXTURES / "coco", n_tags="3", stopwords="drop")
    assert len(small.tag_vocabulary) == 3
    assert "a" not in small.tag_vocabulary and "the" not in small.tag_vocabulary
    no_tags = read_coco(FIXTURES / "coco", tags="false")
    assert no_tags.user_tags is None


def test_tag_vocabulary_ties_are_alphabetical():
    words = [{"b", "a"}, {"c", "a"}, {"b"}]
    assert caption_tag_vocabulary(words, 2).names == ("a", "b")
    assert caption_tag_vocabulary(words, 10).names == ("a", "b", "c")


def test_images(fixture_copy):
    root = fixture_copy("coco")
    for folder, names in (("train2014", TRAIN_IDS), ("val2014", VAL_IDS)):
        (root / folder).mkdir()
        for name in names:
            (root / folder / name).write_bytes(b"")
    data = read_coco(root)
    assert data.image_paths[4] == str(root / "val2014" / VAL_IDS[0])
    (root / "train2014" / TRAIN_IDS[1]).unlink()
    with pytest.raises(DatasetFormatError, match="000000000025.jpg: image not found"):
        read_coco(root)
    data = read_dataset(f"coco:{root}?missing_images=drop")
    assert data.n_items == 6 and data.metadata["image_id"].tolist() == [9, 30, 34, 42, 73, 74]
    assert data.user_tags.shape[0] == 6


def test_unknown_category_names_line(fixture_copy):
    root = fixture_copy("coco")
    path = root / "annotations" / "instances_train2014.json"
    data = json.loads(path.read_text())
    data["annotations"][3]["category_id"] = 12  # not a COCO category id
    text = json.dumps(data, indent=1)
    path.write_text(text)
    ann_id = data["annotations"][3]["id"]
    expected_line = text[: text.index(f'"id": {ann_id}')].count("\n") + 1
    with pytest.raises(DatasetFormatError) as error:
        read_coco(root)
    assert error.value.path == path and error.value.line == expected_line
    assert f"annotations[3] (id {ann_id}): category_id 12 is not in categories" in str(error.value)


def test_truncated_json_and_missing_files(fixture_copy):
    root = fixture_copy("coco")
    path = root / "annotations" / "instances_val2014.json"
    path.write_text(path.read_text()[:500])
    with pytest.raises(DatasetFormatError, match=r"instances_val2014\.json, line 1: invalid JSON"):
        read_coco(root)
    path.unlink()
    with pytest.raises(DatasetFormatError, match=r"instances_train2014\.json: file not found"):
        read_coco(root)
    with pytest.raises(DatasetFormatError, match=r"instances_val2014\.json: file not found"):
        read_coco(root, year="2014")
    with pytest.raises(InvalidInputError, match="year"):
        read_coco(root, year="2015")


def test_categories_must_agree(fixture_copy):
    root = fixture_copy("coco")
    path = root / "annotations" / "instances_val2014.json"
    data = json.loads(path.read_text())
    data["categories"][0]["name"] = "human"
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetFormatError, match="categories differ"):
        read_coco(root)


def test_category_count_matches_the_shared_label_vectors(shared_data):
    # No COCO annotations are stored in ../shared/data; its 80 GloVe label vectors are
    # in the standard category order, so at least the count can be cross-checked.
    vectors = np.load(shared_data / "label_vectors" / "coco_glove300.npy")
    assert vectors.shape == (len(read_coco(FIXTURES / "coco").vocabulary), 300)
