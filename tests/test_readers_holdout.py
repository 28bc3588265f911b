"""The `valid=F` option every reader takes: a seeded part of `train` becomes `valid`."""

from __future__ import annotations

import numpy as np
import pytest

from phototag.data.readers import read_dataset
from phototag.errors import InvalidInputError


@pytest.fixture
def labelled(tmp_path):
    rows = ["path,labels,split"] + [f"p{i}.jpg,w{i % 3},{'test' if i >= 16 else 'train'}"
                                     for i in range(20)]  # fmt: skip
    for i in range(20):
        (tmp_path / f"p{i}.jpg").write_bytes(b"")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_valid_moves_a_seeded_fraction_of_train(labelled):
    plain = read_dataset(f"folder:{labelled}")
    data = read_dataset(f"folder:{labelled}?valid=0.25")
    train, valid = data.splits["train"], data.splits["valid"]
    assert len(valid) == 4 and len(train) == 12
    assert sorted([*train, *valid]) == sorted(plain.splits["train"])
    np.testing.assert_array_equal(data.splits["test"], plain.splits["test"])
    # the same permutation as a seeded shuffle of the train indices (the study's split)
    expected = np.sort(np.random.default_rng(0).permutation(plain.splits["train"])[:4])
    np.testing.assert_array_equal(valid, expected)
    other = read_dataset(f"folder:{labelled}?valid=0.25&valid_seed=3").splits["valid"]
    assert not np.array_equal(other, valid)


@pytest.mark.parametrize(
    ("query", "match"),
    [("valid=1.5", "fraction"), ("valid=abc", "fraction"), ("valid_seed=2", "valid_seed"),
     ("colour=red", "valid_seed")],
)  # fmt: skip
def test_bad_holdout_options_are_named(labelled, query, match):
    with pytest.raises(InvalidInputError, match=match):
        read_dataset(f"folder:{labelled}?{query}")


def test_corel5k_valid_is_the_fine_tuning_studys_held_out_split(shared_data):
    data = read_dataset(f"corel5k:{shared_data / 'corel5k'}?valid=0.1")
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 4050, "valid": 450,
                                                            "test": 499}  # fmt: skip
