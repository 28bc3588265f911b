import json

import numpy as np
import pytest

from phototag.data import from_label_sets
from phototag.errors import InvalidInputError, NotFittedError
from phototag.evaluation.decoding import Threshold
from phototag.fileio import DamagedFileError
from phototag.models import Annotator, available_annotators, create_annotator


@pytest.fixture
def train():
    return from_label_sets("toy", list("abcd"), [["sky", "sea"], ["sky"], ["sky", "tree"], []])


def test_registry_lists_and_creates(train):
    assert "prior" in available_annotators()
    model = create_annotator("prior", smoothing=0.0)
    assert model.get_config() == {"smoothing": 0.0}


def test_registry_finds_a_new_family_subpackage_by_itself(tmp_path, monkeypatch):
    """A subpackage of phototag.models registers its annotators without being listed."""
    import sys

    import phototag.models
    from phototag.models import registry

    family = tmp_path / "toy_family"
    family.mkdir()
    (family / "__init__.py").write_text(
        "from phototag.models.prior import PriorAnnotator\n"
        "from phototag.models.registry import register_annotator\n\n"
        "@register_annotator('toy_family_model')\n"
        "class ToyFamilyAnnotator(PriorAnnotator):\n"
        "    pass\n"
    )
    monkeypatch.setattr(phototag.models, "__path__", [*phototag.models.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "phototag.models.toy_family", raising=False)
    try:
        assert "toy_family_model" in available_annotators()
        assert create_annotator("toy_family_model").name == "toy_family_model"
    finally:
        registry._MODELS.pop("toy_family_model", None)
        sys.modules.pop("phototag.models.toy_family", None)


def test_unknown_model_and_argument_are_clear_errors():
    with pytest.raises(InvalidInputError, match="'nope'"):
        create_annotator("nope")
    with pytest.raises(InvalidInputError, match="alpha"):
        create_annotator("prior", alpha=1)


def test_prior_scores_are_label_frequencies(train):
    model = create_annotator("prior", smoothing=0.0).fit(train)
    scores = model.scores(train)
    assert scores.dtype == np.float32 and scores.shape == (4, 3)
    # vocabulary is sorted: sea, sky, tree
    assert scores[0].tolist() == pytest.approx([0.25, 0.75, 0.25])
    assert model.annotate(train)[0][0] == ("sky", pytest.approx(0.75))


def test_unfitted_model_raises(train):
    with pytest.raises(NotFittedError, match="fit"):
        create_annotator("prior").scores(train)


def test_save_load_round_trip_is_pickle_free(train, tmp_path):
    model = create_annotator("prior", smoothing=0.5).fit(train)
    model.decoder_ = Threshold(0.3)
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "weights.safetensors"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"] == "prior" and config["config"] == {"smoothing": 0.5}
    loaded = Annotator.load(tmp_path)
    assert loaded.vocabulary_ == model.vocabulary_
    assert loaded.decoder_ == Threshold(0.3)
    assert np.array_equal(loaded.scores(train), model.scores(train))
    assert loaded.annotate(train) == model.annotate(train)


def test_load_rejects_non_model_directory(tmp_path):
    with pytest.raises(DamagedFileError, match="not a saved model: no config.json"):
        Annotator.load(tmp_path)
    (tmp_path / "config.json").write_text('{"format": "other"}')
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(DamagedFileError, match="config.json: not a phototag model config"):
        Annotator.load(tmp_path)


def test_clone_changes_parameters_and_shares_state_only_when_asked():
    rng = np.random.default_rng(0)
    words = ["sky", "sea", "cat", "cup"]
    data = from_label_sets(
        "t",
        [f"i{i}" for i in range(40)],
        [list(rng.choice(words, 2, replace=False)) for _ in range(40)],
    )
    data.features["f"] = rng.random((40, 8), dtype=np.float32)
    train, test = data.subset(np.arange(30)), data.subset(np.arange(30, 40))
    model = create_annotator("jec", features="f", k=5).fit(train)
    fresh = model.clone(k=3)
    assert not fresh.is_fitted and fresh.get_config() == {**model.get_config(), "k": 3}
    shared = model.clone(keep_state=True, k=3)  # k only changes the neighbour vote
    expected = create_annotator("jec", features="f", k=3).fit(train).scores(test)
    np.testing.assert_array_equal(shared.scores(test), expected)
    assert model.k == 5 and model.scores(test).tolist() != expected.tolist()
    with pytest.raises(InvalidInputError, match="sigma"):
        model.clone(sigma=1.0)
    with pytest.raises(NotFittedError):
        fresh.clone(keep_state=True)
