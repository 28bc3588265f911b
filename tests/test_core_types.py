import numpy as np
import pytest
import scipy.sparse as sp

from phototag.data import AnnotationSet, Vocabulary, from_label_sets, merge_splits, multi_hot
from phototag.errors import DatasetFormatError, InvalidInputError


def toy_set() -> AnnotationSet:
    return from_label_sets(
        "toy",
        ["a.jpg", "b.jpg", "c.jpg", "d.jpg"],
        [["sky", "sea"], [], ["sea"], ["tree", "sky"]],
        vocabulary=Vocabulary(["sky", "sea", "tree", "car"]),
        features={"enc": np.arange(8, dtype=np.float32).reshape(4, 2)},
        metadata={"group": np.array([0, 0, 1, 1])},
        splits={"train": [0, 1, 2], "test": [3]},
    )


class TestVocabulary:
    def test_ids_and_names(self):
        vocab = Vocabulary(["sky", "sea"])
        assert vocab.index("sea") == 1 and vocab[0] == "sky" and len(vocab) == 2
        assert "sky" in vocab and "car" not in vocab
        assert vocab.indices(["sea", "sky"]).tolist() == [1, 0]
        assert vocab.indices(["sea", "car"], unknown="skip").tolist() == [1]

    def test_unknown_label_names_the_label(self):
        with pytest.raises(InvalidInputError, match="'car'"):
            Vocabulary(["sky"]).index("car")

    @pytest.mark.parametrize("names", [["a", "a"], ["a", ""], ["a", 3]])
    def test_rejects_duplicates_and_empty(self, names):
        with pytest.raises(InvalidInputError):
            Vocabulary(names)

    def test_json_and_text_round_trip(self, tmp_path):
        vocab = Vocabulary(["sky", "sea", "été"])
        vocab.save(tmp_path / "v.json")
        assert Vocabulary.load(tmp_path / "v.json") == vocab
        (tmp_path / "v.txt").write_text("sky\nsea\n\nété\n", encoding="utf-8")
        assert Vocabulary.load(tmp_path / "v.txt") == vocab


class TestAnnotationSet:
    def test_statistics(self):
        data = toy_set()
        assert data.n_items == 4 and data.n_labels == 4
        assert data.label_counts().tolist() == [2, 0, 1, 2]
        assert data.label_frequencies().tolist() == [2, 2, 1, 0]
        assert data.label_sets()[3] == ["sky", "tree"]
        summary = data.summary()
        assert summary["label_cardinality"] == pytest.approx(1.25)
        assert summary["items_without_labels"] == 1 and summary["labels_without_items"] == 1
        assert summary["splits"] == {"train": 3, "test": 1}

    def test_split_keeps_everything_aligned(self):
        test = toy_set().split("test")
        assert test.item_ids == ["d.jpg"]
        assert test.label_sets() == [["sky", "tree"]]
        assert test.features["enc"].tolist() == [[6.0, 7.0]]
        assert test.metadata["group"].tolist() == [1]
        assert test.splits["test"].tolist() == [0] and test.splits["train"].tolist() == []

    def test_unknown_split_lists_available(self):
        with pytest.raises(InvalidInputError, match="test, train"):
            toy_set().split("valid")

    def test_save_load_round_trip(self, tmp_path):
        data = toy_set()
        data.tag_vocabulary = None
        data.save(tmp_path)
        loaded = AnnotationSet.load(tmp_path)
        assert loaded.item_ids == data.item_ids and loaded.vocabulary == data.vocabulary
        assert (loaded.labels != data.labels).nnz == 0
        assert loaded.features["enc"].tolist() == data.features["enc"].tolist()
        assert loaded.splits["train"].tolist() == [0, 1, 2]

    def test_user_tags_round_trip(self, tmp_path):
        data = toy_set()
        tags = Vocabulary(["blue", "holiday"])
        with_tags = AnnotationSet(
            name="t",
            item_ids=data.item_ids,
            vocabulary=data.vocabulary,
            labels=data.labels,
            tag_vocabulary=tags,
            user_tags=multi_hot([[0], [0, 1], [], [1]], 2),
        )
        with_tags.save(tmp_path)
        loaded = AnnotationSet.load(tmp_path)
        assert loaded.tag_vocabulary == tags
        assert loaded.user_tags.toarray().tolist() == with_tags.user_tags.toarray().tolist()

    def test_load_rejects_other_files(self, tmp_path):
        (tmp_path / "annotations.json").write_text("{not json")
        with pytest.raises(DatasetFormatError, match="annotations.json"):
            AnnotationSet.load(tmp_path)

    def test_shape_checks(self):
        with pytest.raises(InvalidInputError, match="labels"):
            AnnotationSet("x", ["a"], Vocabulary(["s"]), sp.csr_matrix((2, 1), dtype=bool))
        with pytest.raises(InvalidInputError, match="features"):
            from_label_sets("x", ["a"], [["s"]], features={"f": np.zeros((2, 3))})
        with pytest.raises(InvalidInputError, match="splits"):
            from_label_sets("x", ["a"], [["s"]], splits={"test": [3]})

    def test_merge_splits(self):
        vocab = Vocabulary(["a", "b"])
        train = from_label_sets("x", ["1", "2"], [["a"], ["b"]], vocabulary=vocab)
        test = from_label_sets("x", ["3"], [["a", "b"]], vocabulary=vocab)
        merged = merge_splits("x", {"train": train, "test": test})
        assert merged.splits["test"].tolist() == [2]
        assert merged.split("test").label_sets() == [["a", "b"]]

    def test_multi_hot_collapses_duplicates(self):
        matrix = multi_hot([[1, 1, 0], []], 3)
        assert matrix.toarray().tolist() == [[True, True, False], [False, False, False]]
