"""mulan reader: tiny ARFF/XML fixtures (dense and sparse), malformed files, real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phototag.data.readers import read_dataset
from phototag.data.readers.corel5k import read_corel5k
from phototag.data.readers.mulan import read_mulan
from phototag.errors import DatasetFormatError, InvalidInputError

FIXTURES = Path(__file__).parent / "fixtures" / "mulan"


def test_dense_fixture():
    data = read_mulan(FIXTURES / "toy")  # the only .xml: name inferred
    assert data.name == "toy"
    assert data.vocabulary.names == ("Beach", "Sunset", "FallFoliage")
    assert data.item_ids[:2] == ["train/000000", "train/000001"]
    assert data.item_ids[4:] == ["test/000000", "test/000001", "test/000002"]
    assert {k: v.tolist() for k, v in data.splits.items()} == {
        "train": [0, 1, 2, 3],
        "test": [4, 5, 6],
    }
    features = data.features["arff"]
    assert features.shape == (7, 4) and features.dtype == np.float32
    assert features[0, 0] == pytest.approx(0.646467)
    assert np.isnan(features[5, 1])  # "?" = missing
    assert features[6, 0] == pytest.approx(1e-3)
    assert data.label_sets()[:3] == [["Beach"], ["Beach", "FallFoliage"], ["Sunset"]]
    assert data.label_sets()[5] == []
    # the exact repeat in toy-train.arff is kept (auto keeps duplicates outside Corel5k)
    assert data.n_items == 7
    assert any("line 17 (row 3) = line 16 (row 2); kept" in note for note in data.notes)


def test_subset_keeps_feature_rows():
    data = read_mulan(FIXTURES / "toy")
    test = data.split("test")
    assert test.features["arff"].shape == (3, 4)
    assert test.features["arff"][0, 0] == pytest.approx(0.1)


def test_duplicates_option():
    with pytest.warns(UserWarning, match="dropped"):
        assert read_mulan(FIXTURES / "toy", duplicates="drop").split("train").n_items == 3
    with pytest.raises(InvalidInputError, match="duplicates"):
        read_mulan(FIXTURES / "toy", duplicates="maybe")


def test_sparse_corel5k_fixture_drops_the_duplicate_row():
    with pytest.warns(UserWarning, match="Corel5k-test-sparse.arff"):
        data = read_mulan(FIXTURES / "corel", name="Corel5k")
    assert data.split("test").item_ids == ["test/000000", "test/000001", "test/000003"]
    assert data.features["arff"].shape == (6, 5)
    assert data.features["arff"][0].tolist() == [1, 0, 0, 1, 0]
    assert data.label_sets()[0] == ["city", "mountain"]
    assert data.label_sets()[3] == ["mountain"]
    assert data.label_sets()[4] == ["sky"]
    assert any("dropped (duplicates=auto)" in note for note in data.notes)
    kept = read_mulan(FIXTURES / "corel", name="Corel5k", duplicates="keep")
    assert kept.split("test").n_items == 4


def test_single_file_with_xml_option(tmp_path):
    data = read_mulan(FIXTURES / "toy" / "toy-test.arff")  # toy.xml found beside it
    assert data.n_items == 3 and data.splits == {}
    assert data.item_ids[0] == "row/000000"
    arff = tmp_path / "mine.arff"
    arff.write_bytes((FIXTURES / "toy" / "toy-test.arff").read_bytes())
    with pytest.raises(DatasetFormatError, match=r"mine\.xml: label XML file not found"):
        read_mulan(arff)
    spec = f"mulan:{arff}?xml={FIXTURES / 'toy' / 'toy.xml'}"
    assert read_dataset(spec).n_items == 3


def test_directory_with_several_datasets_needs_name(tmp_path):
    for folder in ("toy", "corel"):
        for file in (FIXTURES / folder).iterdir():
            (tmp_path / file.name).write_bytes(file.read_bytes())
    with pytest.raises(InvalidInputError, match=r"found Corel5k, toy"):
        read_mulan(tmp_path)
    assert read_mulan(tmp_path, name="toy").n_items == 7


def _write_toy(tmp_path: Path, train: str) -> Path:
    (tmp_path / "toy.xml").write_bytes((FIXTURES / "toy" / "toy.xml").read_bytes())
    (tmp_path / "toy-test.arff").write_bytes((FIXTURES / "toy" / "toy-test.arff").read_bytes())
    (tmp_path / "toy-train.arff").write_text(train)
    return tmp_path / "toy-train.arff"


HEADER = (
    "@relation MultiLabelData\n"
    "@attribute Att1 numeric\n@attribute Att2 numeric\n@attribute Att3 numeric\n"
    "@attribute Att4 numeric\n"
    "@attribute Beach {0,1}\n@attribute Sunset {0,1}\n@attribute FallFoliage {0,1}\n"
    "@data\n"
)


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        ("0.1,0.2,0.3,0.4,1,0,0\n0.1,0.2,0.3,1,0,0\n", 11, "expected 7 comma-separated values"),
        ("0.1,0.2,0.3,0.4,1,0,0\n0.1,0.2,0.3,0.4,2,0,0\n", 11, "label 'Beach': expected 0 or 1"),
        ("0.1,0.2,abc,0.4,1,0,0\n", 10, "attribute 'Att3': expected a number, found 'abc'"),
        ("{0 0.5,4 1}\n{0 0.5,9 1}\n", 11, "sparse entry '9 1'"),
        ("{0 0.5,4 1\n", 10, "sparse row must end with '}'"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, rows, line, message):
    arff = _write_toy(tmp_path, HEADER + rows)
    with pytest.raises(DatasetFormatError) as error:
        read_mulan(tmp_path)
    assert error.value.path == arff and error.value.line == line
    assert message in str(error.value)
    assert f"toy-train.arff, line {line}:" in str(error.value)


def test_bad_header_and_xml(tmp_path):
    arff = _write_toy(tmp_path, HEADER.replace("@attribute Att2 numeric", "@attribute Att2 string"))
    with pytest.raises(DatasetFormatError, match=r"line 3: attribute 'Att2' has type 'string'"):
        read_mulan(tmp_path)
    arff.write_text(HEADER.replace("@attribute Sunset {0,1}\n", ""))
    with pytest.raises(DatasetFormatError, match=r"toy\.xml, line 4: label 'Sunset' is not an"):
        read_mulan(tmp_path)
    (tmp_path / "toy.xml").write_text('<labels><label name="Beach"></labels>')
    with pytest.raises(DatasetFormatError, match=r"toy\.xml, line 1: invalid XML"):
        read_mulan(tmp_path)


def test_missing_split_file(tmp_path):
    _write_toy(tmp_path, HEADER)
    (tmp_path / "toy-test.arff").unlink()
    with pytest.raises(DatasetFormatError, match=r"toy-test\.arff: file not found"):
        read_mulan(tmp_path)


# ------------------------------------------------------------------ real data


def test_real_scene(shared_data):
    data = read_mulan(shared_data / "mulan", name="scene")
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 1211, "test": 1196}
    assert data.features["arff"].shape == (2407, 294)
    assert data.vocabulary.names == ("Beach", "Sunset", "FallFoliage", "Field", "Mountain", "Urban")
    assert data.label_counts().min() >= 1
    assert any("scene-train.arff: 2 row(s) exactly repeat" in note for note in data.notes)


def test_real_corel5k_matches_duygulu(shared_data):
    with pytest.warns(UserWarning, match="row 298"):
        data = read_mulan(shared_data / "mulan", name="Corel5k")
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 4500, "test": 499}
    assert data.features["arff"].shape == (4999, 499)
    assert len(data.vocabulary) == 374
    assert "test/000298" not in data.item_ids
    # After dropping the repeated row, Mulan's rows are Duygulu's images in order.
    duygulu = read_corel5k(shared_data / "corel5k", labels="duygulu")
    assert list(data.vocabulary) == list(duygulu.vocabulary)
    assert data.label_sets() == duygulu.label_sets()
    # The dense test file holds the same rows as the sparse one.
    with pytest.warns(UserWarning):
        dense = read_mulan(shared_data / "mulan" / "Corel5k-test.arff")
    test = data.split("test")
    assert np.array_equal(dense.features["arff"], test.features["arff"])
    assert (dense.labels != test.labels).nnz == 0
