"""Open-vocabulary annotation: ImageNet classes mapped through WordNet onto any words."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from phototag.data import AnnotationSet, Vocabulary
from phototag.errors import InvalidInputError, NotFittedError, PhototagError
from phototag.evaluation.decoding import TopK
from phototag.features.encoders import create_encoder, imagenet_class, imagenet_classes
from phototag.models import Annotator, available_annotators, create_annotator
from phototag.models.open_vocabulary import (
    ImageNetWordNetAnnotator,
    UncoveredWordsWarning,
    read_word_list,
    word_class_matrix,
    wordnet_database,
)

ON_CI = os.environ.get("CI", "").strip().lower() == "true"
WORDS = ["cat", "dog", "cup", "coffee", "animal", "vehicle", "sky"]
ENCODER = "efficientnet_lite0"
OFFSETS = [c.wordnet_offset for c in imagenet_classes()]
TABBY = imagenet_class("n02123045").index
ESPRESSO = imagenet_class("n07920052").index
TIGER = imagenet_class("n02129604").index
COMPUTER_MOUSE = imagenet_class("n03793489").index
ICE_BEAR = imagenet_class("n02134084").index


def require(available: bool, reason: str) -> None:
    """Skip when an installed resource is missing; on CI (CI=true) that is a failure."""
    if not available:
        if ON_CI:
            pytest.fail(reason)
        pytest.skip(reason)


def unlabelled(features: np.ndarray, words: list[str], key: str = ENCODER) -> AnnotationSet:
    n = len(features)
    return AnnotationSet(
        name="photos",
        item_ids=[f"photo{i}" for i in range(n)],
        vocabulary=Vocabulary(words),
        labels=sp.csr_matrix((n, len(words)), dtype=bool),
        features={key: features},
    )


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def wordnet():
    try:
        return wordnet_database()
    except PhototagError as error:
        require(False, f"WordNet 3.0 files (Debian's wordnet-base) are missing: {error}")
        raise


@pytest.fixture(scope="module")
def encoder():
    return create_encoder(ENCODER)


@pytest.fixture(scope="module")
def photos():
    """Public-domain photos shipped with scikit-image: a cat and a cup of espresso."""
    data = pytest.importorskip("skimage.data")
    return [data.chelsea(), data.coffee()]


@pytest.fixture(scope="module")
def photo_set(encoder, photos):
    return unlabelled(encoder.encode(photos), WORDS)


@pytest.fixture(scope="module")
def model(wordnet, encoder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncoveredWordsWarning)
        return ImageNetWordNetAnnotator.from_vocabulary(
            WORDS, ENCODER, encoder=encoder, wordnet=wordnet
        )


# ------------------------------------------------------------- scoring maths
def toy_model(temperature: float = 1.0) -> ImageNetWordNetAnnotator:
    """Three classes, two features; word 'a' covers class 0, word 'ab' covers 0 and 1."""
    model = ImageNetWordNetAnnotator(
        features="toy", vocabulary=["a", "ab", "none"], temperature=temperature
    )
    model.vocabulary_ = Vocabulary(["a", "ab", "none"])
    model.decoder_ = TopK(5)
    model.classifier_weight_ = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], dtype=np.float32)
    model.classifier_bias_ = np.array([0.0, 0.5, 0.0], dtype=np.float32)
    model.class_to_label_ = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32)
    model.word_lemmas_ = ["a", "ab", None]
    model.word_synsets_ = [["a.n.01"], ["ab.n.01"], []]
    model.encoder_id_ = "toy"
    return model


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_scores_are_summed_class_probabilities(temperature):
    model = toy_model(temperature)
    x = np.array([[2.0, 0.0], [0.0, 0.0], [-1.0, 3.0]], dtype=np.float32)
    logits = (x.astype(np.float64) @ model.classifier_weight_.T + model.classifier_bias_) / (
        temperature
    )
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    scores = model.scores(unlabelled(x, ["a", "ab", "none"], key="toy"))
    np.testing.assert_allclose(scores, np.stack([p[:, 0], p[:, 0] + p[:, 1], 0 * p[:, 0]], 1), 1e-6)
    assert scores.dtype == np.float32 and (scores[:, 1] >= scores[:, 0]).all()
    report = model.coverage_report()
    assert report.uncovered == ["none"] and report["none"].reason == "not a WordNet noun"
    assert report["ab"].classes == (0, 1)


def test_configuration_is_validated():
    with pytest.raises(InvalidInputError, match="senses"):
        ImageNetWordNetAnnotator(senses="most")
    with pytest.raises(InvalidInputError, match="temperature"):
        ImageNetWordNetAnnotator(temperature=0)
    with pytest.raises(InvalidInputError, match="a list of words"):
        ImageNetWordNetAnnotator(vocabulary="cat")
    with pytest.raises(InvalidInputError, match="unique"):
        ImageNetWordNetAnnotator(vocabulary=["cat", "cat"])
    with pytest.raises(InvalidInputError, match="vocabulary"):
        ImageNetWordNetAnnotator().build()
    with pytest.raises(NotFittedError):
        ImageNetWordNetAnnotator().coverage_report()
    model = toy_model()
    with pytest.raises(InvalidInputError, match=r"features\['toy'\]"):
        model.scores(unlabelled(np.zeros((1, 2)), ["x"], key="other"))
    with pytest.raises(InvalidInputError, match="2 columns"):
        model.scores(unlabelled(np.zeros((1, 3)), ["x"], key="toy"))
    assert "imagenet_wordnet" in available_annotators()


def test_word_list_file(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("# my words\ncat\n\n  polar bear \ncat\nSky\n", encoding="utf-8")
    assert read_word_list(path) == ["cat", "polar bear", "Sky"]
    (tmp_path / "empty.txt").write_text("# nothing\n\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="at least one word"):
        read_word_list(tmp_path / "empty.txt")


def test_missing_wordnet_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("WORDNET_DIR", str(tmp_path))
    with pytest.raises(PhototagError, match="wordnet-base") as error:
        wordnet_database()
    assert "imagenet_wordnet" in str(error.value) and "WORDNET_DIR" in str(error.value)


# ---------------------------------------------------------- WordNet mapping
def test_hypernym_mapping_of_hand_picked_classes(wordnet):
    words = ["cat", "feline", "animal", "coffee", "beverage", "dog", "vehicle", "Cats"]
    matrix, _ = word_class_matrix(words, OFFSETS, wordnet=wordnet)
    column = dict(zip(words, matrix.T, strict=True))
    assert {w for w in words if column[w][TABBY]} == {"cat", "feline", "animal", "Cats"}
    assert {w for w in words if column[w][ESPRESSO]} == {"coffee", "beverage"}
    assert (column["Cats"] == column["cat"]).all()  # WordNet's morphology: cats -> cat
    # hyponym monotonicity: every class under cat (or feline) is under animal
    assert not (column["cat"] & ~column["animal"]).any()
    assert not (column["feline"] & ~column["animal"]).any()
    assert column["dog"].sum() > 100 and not (column["dog"] & column["cat"]).any()


def test_word_forms_and_sense_policy(wordnet):
    words = ["Polar Bear", "polar-bears", "mouse", "tiger", "sky", "zzqxv", "baby elephant"]
    every, report = word_class_matrix(words, OFFSETS, "all", wordnet)
    first, first_report = word_class_matrix(words, OFFSETS, "first", wordnet)
    assert report["Polar Bear"].lemma == "polar_bear" and every[ICE_BEAR, 0]
    assert report["polar-bears"].lemma == "polar_bear" and every[ICE_BEAR, 1]
    # every noun sense: the computer mouse and the big cat count; first sense only: they
    # do not (mouse.n.01 is the rodent, tiger.n.01 "a fierce or audacious person")
    assert every[COMPUTER_MOUSE, 2] and every[TIGER, 3]
    assert not first[:, 2].any() and not first[:, 3].any()
    assert first_report["tiger"].synsets == ("tiger.n.01",)
    assert report["sky"].synsets == ("sky.n.01",) and not report["sky"].covered
    assert report["sky"].reason == "no ImageNet class among its hyponyms"
    assert report["zzqxv"].lemma is None and report["zzqxv"].reason == "not a WordNet noun"
    assert report["baby elephant"].lemma == "elephant"  # phrase -> its head noun
    assert "African elephant" in report["baby elephant"].class_names
    assert report.uncovered == ["sky", "zzqxv"]


def test_uncovered_words_are_reported_once(wordnet, encoder):
    with pytest.warns(UncoveredWordsWarning) as caught:
        model = ImageNetWordNetAnnotator.from_vocabulary(
            ["cat", "sky", "zzqxv"], ENCODER, encoder=encoder, wordnet=wordnet
        )
    assert len(caught) == 1
    assert "'sky'" in str(caught[0].message) and "'zzqxv'" in str(caught[0].message)
    assert model.coverage_report().uncovered == ["sky", "zzqxv"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncoveredWordsWarning)
        ImageNetWordNetAnnotator.from_vocabulary(["cat"], ENCODER, encoder=encoder, wordnet=wordnet)


# ------------------------------------------------------------- real photos
def test_probabilities_match_the_encoder(model, encoder, photos, photo_set):
    expected = encoder.class_probabilities(encoder.transform(photos)).numpy()
    np.testing.assert_allclose(model.class_probabilities(photo_set), expected, atol=1e-6)
    assert model.classifier_weight_.shape == (1000, 1280)
    assert model.class_to_label_.shape == (1000, len(WORDS))


def test_open_vocabulary_annotates_the_photos(model, photo_set):
    scores = model.scores(photo_set)
    assert scores.shape == (2, len(WORDS)) and scores.dtype == np.float32
    assert (scores >= 0).all() and (scores <= 1).all()
    j = {w: i for i, w in enumerate(WORDS)}
    assert (scores[:, j["animal"]] >= scores[:, j["cat"]] - 1e-6).all()
    assert (scores[:, j["sky"]] == 0).all()
    chelsea, coffee = ([word for word, _ in tags] for tags in model.annotate(photo_set))
    assert set(chelsea[:2]) == {"cat", "animal"}
    assert scores[0, j["cat"]] > 0.5
    assert {"cup", "coffee"} & set(coffee[:2])
    assert model.coverage_report().uncovered == ["sky"]


def test_save_load_round_trip(model, photo_set, tmp_path):
    model.save(tmp_path / "open")
    loaded = Annotator.load(tmp_path / "open")
    assert (
        isinstance(loaded, ImageNetWordNetAnnotator) and loaded.get_config() == model.get_config()
    )
    np.testing.assert_array_equal(loaded.scores(photo_set), model.scores(photo_set))
    assert loaded.coverage_report() == model.coverage_report()
    assert loaded.encoder_id_ == model.encoder_id_


def test_fit_takes_the_words_of_the_training_set(model, photo_set):
    labels = sp.csr_matrix(np.eye(2, len(WORDS), dtype=bool))  # not used
    train = AnnotationSet(
        "train", ["a", "b"], Vocabulary(WORDS), labels, features=dict(photo_set.features)
    )
    fitted = create_annotator("imagenet_wordnet", features=ENCODER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncoveredWordsWarning)
        fitted.fit(train)
    assert fitted.vocabulary is None and list(fitted.vocabulary_) == WORDS
    np.testing.assert_array_equal(fitted.scores(photo_set), model.scores(photo_set))
    other = create_annotator("imagenet_wordnet", features=ENCODER, vocabulary=["cat"])
    with pytest.raises(InvalidInputError, match="configured"):
        other.fit(train)
