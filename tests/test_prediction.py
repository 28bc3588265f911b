"""The model contract's output: `predict` -> `Prediction` (scores, quantities, label sets),
decoded whole, so a model's own label counts or sequences reach `annotate` and `evaluate`."""

import numpy as np
import pytest

from phototag.data import AnnotationSet, from_label_sets
from phototag.errors import InvalidInputError
from phototag.evaluation.decoding import OwnLabelSets, Quantity, TopK
from phototag.evaluation.evaluate import evaluate_model
from phototag.evaluation.predictions import Prediction
from phototag.models.base import Annotator

SCORES = np.array([[0.9, 0.8, 0.1], [0.2, 0.7, 0.6]], dtype=np.float32)


class CountingModel(Annotator):
    """Fixed scores, one predicted label count per item and its own label sets."""

    name = "counting-test"

    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        self.seen_ = np.ones(1)

    def _scores(self, inputs: AnnotationSet) -> np.ndarray:
        return SCORES[: inputs.n_items]

    def _predict(self, inputs: AnnotationSet) -> Prediction:
        own = np.array([[False, False, True], [True, False, False]])
        return Prediction(self._scores(inputs), own, np.array([1.0, 2.0]))


@pytest.fixture
def data():
    return from_label_sets("t", ["a", "b"], [["sky", "sea"], ["sea", "cat"]])


def test_predict_carries_quantities_and_label_sets_to_the_decoders(data):
    model = CountingModel().fit(data)
    prediction = model.predict(data)
    assert prediction.scores.dtype == np.float32 and prediction.quantities.tolist() == [1, 2]
    cat, sea, sky = data.vocabulary.names  # sorted
    by_count = [[t for t, _ in row] for row in model.annotate(data, Quantity())]
    assert by_count == [[cat], [sea, sky]]
    model.decoder_ = OwnLabelSets()
    assert [[t for t, _ in row] for row in model.annotate(data)] == [[sky], [cat]]
    assert [[t for t, _ in row] for row in model.annotate(data, TopK(1))] == [[cat], [sea]]
    own = evaluate_model(model, data, protocol="model").metrics
    top = evaluate_model(model, data, protocol="top2").metrics
    assert (own["O-P"], own["O-R"]) == (1.0, 0.5)  # sky for a, cat for b: both right
    assert (top["O-P"], top["O-R"]) == (0.5, 0.5)


def test_own_label_sets_need_a_model_that_makes_them(data):
    with pytest.raises(InvalidInputError, match="does not choose its own label sets"):
        OwnLabelSets().decode_prediction(Prediction(SCORES))
    with pytest.raises(InvalidInputError, match="scores alone"):
        OwnLabelSets().decode(SCORES)


def test_a_prediction_checks_its_shapes():
    with pytest.raises(InvalidInputError, match="quantities"):
        Prediction(SCORES, quantities=np.ones(3))
    with pytest.raises(InvalidInputError, match="label_sets"):
        Prediction(SCORES, label_sets=np.ones((2, 2), dtype=bool))
    with pytest.raises(InvalidInputError, match="neither"):
        Prediction()


def test_moved_columns_keep_label_sets_and_fill_the_rest():
    prediction = Prediction(SCORES, SCORES > 0.5, np.array([1.0, 2.0]))
    moved = prediction.moved(np.array([2, 0]), np.array([0, 3]), 4, fill=-1.0)
    expected = np.array([[0.1, -1, -1, 0.9], [0.6, -1, -1, 0.2]], dtype=np.float32)
    np.testing.assert_array_equal(moved.scores, expected)
    assert moved.label_sets.tolist() == [[False, False, False, True], [True, False, False, False]]
    assert moved.quantities is prediction.quantities
