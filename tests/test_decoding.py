import numpy as np
import pytest

from phototag.errors import InvalidInputError
from phototag.evaluation.decoding import (
    LabelThresholds,
    Quantity,
    Threshold,
    TopK,
    decoder_from_config,
    parse_protocol,
    top_m,
)


def brute_force_top_m(scores, m):
    """Reference: stable sort by (-score, label id)."""
    mask = np.zeros(scores.shape, dtype=bool)
    for i, row in enumerate(scores):
        order = np.lexsort((np.arange(len(row)), -row))
        mask[i, order[: m[i]]] = True
    return mask


def test_top_k_breaks_ties_by_lower_label_id():
    scores = np.array([[0.1, 0.5, 0.5, 0.2], [1.0, 1.0, 1.0, 1.0]])
    assert TopK(2).decode(scores).astype(int).tolist() == [[0, 1, 1, 0], [1, 1, 0, 0]]
    assert TopK(1).decode(scores).astype(int).tolist() == [[0, 1, 0, 0], [1, 0, 0, 0]]


def test_top_m_matches_brute_force_with_many_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(300, 12)).astype(np.float32)
    m = rng.integers(0, 14, size=300)
    expected = brute_force_top_m(scores, np.clip(m, 0, 12))
    assert np.array_equal(top_m(scores, m), expected)


def test_top_k_larger_than_vocabulary_takes_everything():
    assert TopK(10).decode(np.zeros((2, 3))).all()


def test_threshold_is_inclusive():
    scores = np.array([[0.5, 0.49, 0.9]])
    assert Threshold(0.5).decode(scores).tolist() == [[True, False, True]]


def test_quantity_rounds_half_up_and_keeps_minimum():
    scores = np.tile(np.array([[0.4, 0.3, 0.2, 0.1]]), (4, 1))
    chosen = Quantity().decode(scores, np.array([0.2, 1.5, 2.49, 9.0]))
    assert chosen.sum(axis=1).tolist() == [1, 2, 2, 4]
    assert Quantity(minimum=0).decode(scores, np.array([0.2, 0, 0, 0])).sum() == 0
    with pytest.raises(InvalidInputError, match="quantities"):
        Quantity().decode(scores)


def test_calibrated_thresholds_maximise_per_label_f1():
    rng = np.random.default_rng(1)
    y_true = rng.random((200, 5)) < 0.3
    y_score = y_true * 0.3 + rng.random((200, 5))
    y_true[:, 4] = False
    decoder = LabelThresholds.calibrate(y_true, y_score)
    assert decoder.thresholds[4] == np.inf
    chosen = decoder.decode(y_score)
    for j in range(4):
        f1 = 2 * (chosen[:, j] & y_true[:, j]).sum() / (chosen[:, j].sum() + y_true[:, j].sum())
        # brute force over every distinct cut
        best = max(
            2
            * ((y_score[:, j] >= t) & y_true[:, j]).sum()
            / ((y_score[:, j] >= t).sum() + y_true[:, j].sum())
            for t in np.unique(y_score[:, j])
        )
        assert f1 == pytest.approx(best)


def test_calibration_never_splits_ties():
    y_true = np.array([[1], [0], [1], [0]])
    y_score = np.array([[0.9], [0.5], [0.5], [0.1]])
    threshold = LabelThresholds.calibrate(y_true, y_score).thresholds[0]
    # cuts: {0.9} -> F1 2/3; {0.9, 0.5, 0.5} -> F1 0.8; the tie at 0.5 is never split
    assert threshold == pytest.approx(0.3)


def test_decoder_config_round_trip():
    for decoder in (TopK(3), Threshold(0.25), Quantity(2), LabelThresholds([0.1, 0.2])):
        restored = decoder_from_config(decoder.to_config())
        assert restored.to_config() == decoder.to_config()


@pytest.mark.parametrize(
    ("text", "expected"), [("top5", TopK(5)), ("TOP3", TopK(3)), ("threshold:0.3", Threshold(0.3))]
)
def test_parse_protocol(text, expected):
    assert parse_protocol(text) == expected


@pytest.mark.parametrize("text", ["top", "topx", "threshold:abc", "best"])
def test_parse_protocol_rejects(text):
    with pytest.raises(InvalidInputError, match="--protocol"):
        parse_protocol(text)


def test_nan_scores_are_rejected_with_position():
    with pytest.raises(InvalidInputError, match="row 1, column 0"):
        TopK(1).decode(np.array([[0.1, 0.2], [np.nan, 0.1]]))


def test_label_thresholds_keep_at_most_max_labels_best_first():
    decoder = LabelThresholds(np.array([0.5, 0.5, 0.5, 0.9]), max_labels=2)
    scores = np.array([[0.6, 0.9, 0.7, 0.95], [0.1, 0.2, 0.6, 0.3]], dtype=np.float32)
    assert decoder.decode(scores).tolist() == [[False, True, False, True],
                                               [False, False, True, False]]  # fmt: skip
    again = decoder_from_config(decoder.to_config())
    assert again.max_labels == 2 and again.thresholds.tolist() == [0.5, 0.5, 0.5, 0.9]


def test_precision_calibration_takes_the_lowest_cut_right_often_enough():
    # one label, scores sorted: right, right, wrong, right, wrong, wrong, right
    truth = np.array([[1], [1], [0], [1], [0], [0], [1]], dtype=bool)
    scores = np.array([[0.9], [0.8], [0.7], [0.6], [0.5], [0.4], [0.3]], dtype=np.float32)
    # precision at each cut: 1, 1, 2/3, 3/4, 3/5, 1/2, 4/7
    at_75 = LabelThresholds.calibrate(truth, scores, min_precision=0.75).thresholds
    assert at_75[0] == pytest.approx(0.55)  # 4 predictions, 3 right
    at_90 = LabelThresholds.calibrate(truth, scores, min_precision=0.9).thresholds
    assert at_90[0] == pytest.approx(0.75)  # the two first, both right
    strict = LabelThresholds.calibrate(truth, scores, min_precision=0.9, min_correct=3)
    assert strict.thresholds[0] == np.inf  # never 3 right at 90%: never written
    f1 = LabelThresholds.calibrate(truth, scores).thresholds  # best F1: 6/8 at the 4th cut
    assert f1[0] == pytest.approx(0.55)
