"""Tests for phototag.evaluation.metrics: hand-computed toy cases, scikit-learn references,
batching."""

from __future__ import annotations

import dataclasses
import itertools
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp

from phototag.errors import InvalidInputError
from phototag.evaluation import metrics as M
from phototag.evaluation.metrics import _arrays
from phototag.evaluation.metrics._arrays import _as_binary, _as_scores
from phototag.evaluation.metrics.bounds import _top_k_oracle
from phototag.evaluation.metrics.ranking import _per_image_ap, _per_label_ap

skm = pytest.importorskip("sklearn.metrics")

# --------------------------------------------------------------------------------------------
# A toy case computed by hand.
#   labels:  0: true {0,2} pred {0,2,3} -> tp 2 fp 1 fn 0
#            1: true {1,2} pred {0,1}   -> tp 1 fp 1 fn 1
#            2: true {0}   pred {}      -> tp 0 fp 0 fn 1   (never predicted)
#            3: true {}    pred {1}     -> tp 0 fp 1 fn 0   (absent)
#   images:  0: correct 1 / pred 2 / true 2;  1: 1/2/1;  2: 1/1/2;  3: 0/1/0 (no true labels)
# --------------------------------------------------------------------------------------------

TOY_TRUE = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
TOY_PRED = np.array([[1, 1, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0], [1, 0, 0, 0]])


def _f1(a: Fraction, b: Fraction) -> Fraction:
    return 2 * a * b / (a + b)


CP = (Fraction(2, 3) + Fraction(1, 2) + 0) / 3
CR = (1 + Fraction(1, 2) + 0) / 3
OP, OR = Fraction(3, 6), Fraction(3, 5)
IP = (Fraction(1, 2) + Fraction(1, 2) + 1) / 3
IR = (Fraction(1, 2) + 1 + Fraction(1, 2)) / 3
TOY_EXPECTED = {
    "C-P": CP,
    "C-R": CR,
    "C-F1": _f1(CP, CR),
    "O-P": OP,
    "O-R": OR,
    "O-F1": _f1(OP, OR),
    "I-P": IP,
    "I-R": IR,
    "I-F1": _f1(IP, IR),
    "H-F1": _f1(_f1(CP, CR), _f1(OP, OR)),
    "N+": 2,
    "hamming_loss": Fraction(5, 16),
}


def test_toy_counts():
    c = M.label_counts(TOY_TRUE, TOY_PRED)
    assert c.tp.tolist() == [2, 1, 0, 0]
    assert c.fp.tolist() == [1, 1, 0, 1]
    assert c.fn.tolist() == [0, 1, 1, 0]
    assert c.n_correct.tolist() == [1, 1, 1, 0]
    assert c.n_predicted.tolist() == [2, 2, 1, 1]
    assert c.n_true.tolist() == [2, 1, 2, 0]
    assert (c.n_images, c.n_labels) == (4, 4)


@pytest.mark.parametrize(
    ("func", "key"),
    [
        (M.class_precision_score, "C-P"),
        (M.class_recall_score, "C-R"),
        (M.class_f1_score, "C-F1"),
        (M.overall_precision_score, "O-P"),
        (M.overall_recall_score, "O-R"),
        (M.overall_f1_score, "O-F1"),
        (M.image_precision_score, "I-P"),
        (M.image_recall_score, "I-R"),
        (M.image_f1_score, "I-F1"),
        (M.harmonic_f1_score, "H-F1"),
        (M.n_plus, "N+"),
        (M.hamming_loss, "hamming_loss"),
    ],
)
def test_toy_values(func, key):
    assert func(TOY_TRUE, TOY_PRED) == pytest.approx(float(TOY_EXPECTED[key]), abs=1e-15)


def test_toy_report_keys_order_and_types():
    report = M.annotation_report(TOY_TRUE, TOY_PRED)
    assert tuple(report) == M.REPORT_KEYS == (
        "C-P", "C-R", "C-F1", "O-P", "O-R", "O-F1", "I-P", "I-R", "I-F1", "H-F1", "N+",
        "mAP_label", "mAP_image", "hamming_loss",
    )  # fmt: skip
    assert type(report["N+"]) is int
    for key, value in report.items():
        if key != "N+":
            assert type(value) is float
            assert 0.0 <= value <= 1.0
    for key, expected in TOY_EXPECTED.items():
        assert report[key] == pytest.approx(float(expected), abs=1e-15)


def test_absent_labels_include():
    # Label 3 (absent) joins the average with precision 0 (it was predicted) and recall 0.
    cp = (Fraction(2, 3) + Fraction(1, 2)) / 4
    cr = Fraction(3, 2) / 4
    kw = {"absent_labels": "include"}
    assert M.class_precision_score(TOY_TRUE, TOY_PRED, **kw) == pytest.approx(float(cp))
    assert M.class_recall_score(TOY_TRUE, TOY_PRED, **kw) == pytest.approx(float(cr))
    assert M.class_f1_score(TOY_TRUE, TOY_PRED, **kw) == pytest.approx(float(_f1(cp, cr)))
    assert M.mean_class_f1_score(TOY_TRUE, TOY_PRED, **kw) == pytest.approx(1.3 / 4)
    report = M.annotation_report(TOY_TRUE, TOY_PRED, **kw)
    assert report["C-P"] == pytest.approx(float(cp))
    assert report["H-F1"] == pytest.approx(float(_f1(_f1(cp, cr), _f1(OP, OR))))


def test_mean_class_f1_is_not_class_f1():
    # Per-label F1: 4/5, 1/2, 0 -> mean 13/30; C-F1 is the harmonic mean of the means, 7/16.
    assert M.mean_class_f1_score(TOY_TRUE, TOY_PRED) == pytest.approx(13 / 30)
    assert M.class_f1_score(TOY_TRUE, TOY_PRED) == pytest.approx(7 / 16)


def test_toy_average_precision_hand_computed():
    y_true = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]])
    # Image 0 ranking: label 2 (0.9), label 1 (0.5), label 0 (0.4): AP = (1/1 + 2/3) / 2.
    # Image 1: labels 0 and 1 tie at 0.7, label 2 at 0.1: one step of 2 items, AP = 1/2.
    y_score = np.array([[0.4, 0.5, 0.9], [0.7, 0.7, 0.1], [0.3, 0.2, 0.0]])
    assert M.image_average_precision_score(y_true, y_score) == pytest.approx((5 / 6 + 1 / 2) / 2)
    # Label 0 column: 0.7 (neg), 0.4 (pos), 0.3 (neg): AP = 1/2.
    # Label 1 column: 0.7 (pos), 0.5 (neg), 0.2 (neg): AP = 1.
    # Label 2 column: 0.9 (pos), 0.1, 0.0: AP = 1.
    assert M.label_average_precision_score(y_true, y_score) == pytest.approx(2.5 / 3)
    # A column of ties only: AP = prevalence.
    flat = np.ones((4, 1))
    assert M.label_average_precision_score([[1], [0], [0], [1]], flat) == pytest.approx(0.5)


def test_average_precision_absent_labels():
    y_true = np.array([[1, 0], [0, 0]])
    y_score = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert M.label_average_precision_score(y_true, y_score) == 1.0
    assert M.label_average_precision_score(y_true, y_score, absent_labels="include") == 0.5


def test_image_without_predictions_has_precision_zero():
    y_true = np.array([[1, 0], [0, 1]])
    y_pred = np.array([[1, 0], [0, 0]])
    assert M.image_precision_score(y_true, y_pred) == 0.5
    assert M.image_recall_score(y_true, y_pred) == 0.5


def test_nothing_predicted_gives_zeros():
    y_true = np.array([[1, 0], [0, 1]])
    y_pred = np.zeros((2, 2), dtype=bool)
    report = M.annotation_report(y_true, y_pred)
    for key in ("C-P", "C-R", "C-F1", "O-P", "O-R", "O-F1", "I-P", "I-R", "I-F1", "H-F1"):
        assert report[key] == 0.0
    assert report["N+"] == 0
    assert report["hamming_loss"] == 0.5
    # Constant scores: AP = prevalence (1/2 per label and per image).
    assert report["mAP_label"] == 0.5
    assert report["mAP_image"] == 0.5


def test_everything_excluded_returns_zero():
    y_true = np.zeros((3, 2), dtype=bool)
    y_pred = np.array([[1, 0], [0, 0], [1, 1]])
    report = M.annotation_report(y_true, y_pred, np.ones((3, 2)))
    assert report["C-P"] == report["C-R"] == report["I-P"] == report["I-R"] == 0.0
    assert report["mAP_label"] == report["mAP_image"] == 0.0
    assert report["O-P"] == 0.0
    assert report["hamming_loss"] == 0.5
    # "include": every label is averaged, and every one scores 0.
    assert M.class_precision_score(y_true, y_pred, absent_labels="include") == 0.0


def test_empty_inputs():
    report = M.annotation_report(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)))
    assert all(v == 0 for v in report.values())
    assert M.label_quantity_accuracy_score(np.zeros((0, 3)), []) == 0.0


def test_perfect_prediction():
    rng = np.random.default_rng(0)
    y = rng.random((30, 6)) < 0.3
    y[:, 0] = True
    report = M.annotation_report(y, y, y.astype(np.float32))
    for key in ("C-P", "C-R", "O-P", "O-R", "I-P", "I-R", "H-F1", "mAP_label", "mAP_image"):
        assert report[key] == 1.0
    assert report["hamming_loss"] == 0.0


# --------------------------------------------------------------------------------------------
# scikit-learn references on random data
# --------------------------------------------------------------------------------------------


def _random_case(seed: int, n: int = 300, n_labels: int = 12):
    rng = np.random.default_rng(seed)
    prevalence = rng.uniform(0.02, 0.4, n_labels)
    prevalence[-1] = 0.0  # one absent label
    y_true = rng.random((n, n_labels)) < prevalence
    y_true[:5] = False  # some images without labels
    # Coarse scores -> many ties, within columns and within rows.
    y_score = np.round(0.6 * y_true + rng.random((n, n_labels)), 1)
    y_pred = y_score >= 0.9
    y_pred[5:9] = False  # some images without predictions
    return y_true, y_pred, y_score


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_set_metrics_match_sklearn(seed):
    y_true, y_pred, _ = _random_case(seed)
    present = y_true.any(axis=0)
    p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    c = M.label_counts(y_true, y_pred)
    cp, cr = M.class_precision_score(y_true, y_pred), M.class_recall_score(y_true, y_pred)
    assert cp == pytest.approx(p[present].mean())
    assert cr == pytest.approx(r[present].mean())
    assert M.class_f1_score(y_true, y_pred) == pytest.approx(2 * cp * cr / (cp + cr))
    assert M.mean_class_f1_score(y_true, y_pred) == pytest.approx(f[present].mean())
    assert M.mean_class_f1_score(y_true, y_pred) == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", labels=np.flatnonzero(present))
    )
    include = {"absent_labels": "include"}
    for ours, average_name in [
        (M.class_precision_score, "precision_score"),
        (M.class_recall_score, "recall_score"),
    ]:
        ref = getattr(skm, average_name)(y_true, y_pred, average="macro", zero_division=0)
        assert ours(y_true, y_pred, **include) == pytest.approx(ref)
    assert M.mean_class_f1_score(y_true, y_pred, **include) == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", zero_division=0)
    )
    assert M.overall_precision_score(y_true, y_pred) == pytest.approx(
        skm.precision_score(y_true, y_pred, average="micro")
    )
    assert M.overall_recall_score(y_true, y_pred) == pytest.approx(
        skm.recall_score(y_true, y_pred, average="micro")
    )
    assert M.overall_f1_score(y_true, y_pred) == pytest.approx(
        skm.f1_score(y_true, y_pred, average="micro")
    )
    assert M.hamming_loss(y_true, y_pred) == pytest.approx(skm.hamming_loss(y_true, y_pred))
    assert c.n_plus() == int((r > 0).sum())
    rows = y_true.any(axis=1)
    ip = skm.precision_score(y_true[rows], y_pred[rows], average="samples", zero_division=0)
    ir = skm.recall_score(y_true[rows], y_pred[rows], average="samples", zero_division=0)
    assert M.image_precision_score(y_true, y_pred) == pytest.approx(ip)
    assert M.image_recall_score(y_true, y_pred) == pytest.approx(ir)
    assert M.image_f1_score(y_true, y_pred) == pytest.approx(2 * ip * ir / (ip + ir))


def _sklearn_ap(y_true, y_score, axis):
    if axis == 1:
        y_true, y_score = y_true.T, y_score.T
    return np.array(
        [
            skm.average_precision_score(y_true[:, j], y_score[:, j])
            for j in range(y_true.shape[1])
            if y_true[:, j].any()
        ]
    )


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.float16])
def test_average_precision_matches_sklearn_with_ties(seed, dtype):
    y_true, _, y_score = _random_case(seed, n=120)
    y_score = (y_score * 10).astype(dtype)  # 0..16, heavy ties
    assert np.unique(y_score).size < 20
    per_label = _sklearn_ap(y_true, y_score.astype(np.float64), axis=0)
    per_image = _sklearn_ap(y_true, y_score.astype(np.float64), axis=1)
    np.testing.assert_allclose(
        _per_label_ap(y_true, _as_scores(y_score))[y_true.any(0)], per_label, rtol=1e-12
    )
    np.testing.assert_allclose(
        _per_image_ap(y_true, _as_scores(y_score))[y_true.any(1)], per_image, rtol=1e-12
    )
    assert M.label_average_precision_score(y_true, y_score) == pytest.approx(per_label.mean())
    assert M.image_average_precision_score(y_true, y_score) == pytest.approx(per_image.mean())
    rows = y_true.any(axis=1)
    lrap = skm.label_ranking_average_precision_score(y_true[rows], y_score[rows])
    assert M.image_average_precision_score(y_true, y_score) == pytest.approx(lrap)


def test_average_precision_continuous_scores_and_signed_zero():
    rng = np.random.default_rng(5)
    y_true = rng.random((120, 7)) < 0.3
    y_score = rng.standard_normal((120, 7)).astype(np.float32)
    y_score[:40, :3] = 0.0
    y_score[40:80, :3] = -0.0  # -0.0 == 0.0: one tie group, as in sklearn
    ours = M.annotation_report(y_true, y_true, y_score)
    assert ours["mAP_label"] == pytest.approx(_sklearn_ap(y_true, y_score, 0).mean())
    assert ours["mAP_image"] == pytest.approx(_sklearn_ap(y_true, y_score, 1).mean())


def test_predictions_as_scores_use_closed_form():
    y_true, y_pred, _ = _random_case(3, n=120)
    report = M.annotation_report(y_true, y_pred)
    as_float = y_pred.astype(np.float32)
    assert report["mAP_label"] == pytest.approx(_sklearn_ap(y_true, as_float, 0).mean())
    assert report["mAP_image"] == pytest.approx(_sklearn_ap(y_true, as_float, 1).mean())
    with_scores = M.annotation_report(y_true, y_pred, y_pred)
    assert report == pytest.approx(with_scores)
    include = M.annotation_report(y_true, y_pred, absent_labels="include")
    assert include["mAP_label"] == pytest.approx(
        M.label_average_precision_score(y_true, as_float, absent_labels="include")
    )


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_and_dense_inputs_agree(fmt):
    y_true, y_pred, y_score = _random_case(4)
    dense = M.annotation_report(y_true, y_pred, y_score)
    t = sp.csr_array(y_true).asformat(fmt)
    p = sp.csr_matrix(y_pred.astype(np.int8)).asformat(fmt)
    for a, b in [(t, p), (t, y_pred), (y_true, p)]:
        assert M.annotation_report(a, b, y_score) == dense
        assert M.annotation_report(a, b) == M.annotation_report(y_true, y_pred)
    assert M.top_k_upper_bound(t, 3) == M.top_k_upper_bound(y_true, 3)
    assert M.label_quantity_mse_loss(t, np.full(len(y_true), 2.0)) == pytest.approx(
        M.label_quantity_mse_loss(y_true, np.full(len(y_true), 2.0))
    )


def test_int_and_float_binary_inputs_agree():
    y_true, y_pred, y_score = _random_case(6)
    ref = M.annotation_report(y_true, y_pred, y_score)
    assert M.annotation_report(y_true.astype(int), y_pred.astype(float), y_score) == ref
    assert M.annotation_report(y_true.tolist(), y_pred.tolist(), y_score.tolist()) == ref


def test_small_chunks_give_same_results(monkeypatch):
    y_true, y_pred, y_score = _random_case(7, n=257, n_labels=9)
    ref = M.annotation_report(y_true, y_pred, y_score)
    ref_bound = M.top_k_upper_bound(y_true, 2)
    monkeypatch.setattr(_arrays, "_CHUNK_CELLS", 50)  # a few rows / columns per block
    assert M.annotation_report(y_true, y_pred, y_score) == pytest.approx(ref, rel=1e-12)
    assert M.annotation_report(sp.csr_array(y_true), y_pred, y_score) == pytest.approx(
        ref, rel=1e-12
    )
    assert M.top_k_upper_bound(y_true, 2) == pytest.approx(ref_bound, rel=1e-12)


def test_inputs_are_not_modified():
    y_true, y_pred, y_score = _random_case(8)
    y_score = np.asfortranarray(y_score.astype(np.float32))  # columns are contiguous
    copies = [a.copy() for a in (y_true, y_pred, y_score)]
    M.annotation_report(y_true, y_pred, y_score)
    for a, b in zip((y_true, y_pred, y_score), copies, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------
# Accumulating counts over batches
# --------------------------------------------------------------------------------------------


def test_counts_accumulate_over_batches():
    y_true, y_pred, _ = _random_case(9, n=301)
    whole = M.label_counts(y_true, y_pred)
    bounds = [0, 1, 50, 50, 177, 301]  # includes an empty batch
    batches = [M.label_counts(y_true[a:b], y_pred[a:b]) for a, b in itertools.pairwise(bounds)]
    total = M.LabelCounts.empty(y_true.shape[1])
    for batch in batches:
        total = total + batch
    for summed in (total, sum(batches)):
        for field in ("tp", "fp", "fn", "n_correct", "n_predicted", "n_true"):
            np.testing.assert_array_equal(getattr(summed, field), getattr(whole, field))
        assert summed.report() == M.annotation_report(y_true, y_pred)
    # Averaging per-batch scores would be wrong; the accumulated value is the whole's.
    assert total.image_precision_score() == M.image_precision_score(y_true, y_pred)
    assert total.class_precision_score() == M.class_precision_score(y_true, y_pred)


def test_counts_are_frozen_and_checked():
    c = M.label_counts(TOY_TRUE, TOY_PRED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.tp = np.zeros(4)  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        c.tp[0] = 5
    with pytest.raises(InvalidInputError, match="other"):
        c + M.LabelCounts.empty(3)
    with pytest.raises(InvalidInputError):
        M.LabelCounts([1], [1, 2], [1], [], [], [])
    with pytest.raises(TypeError):
        c + 1


# --------------------------------------------------------------------------------------------
# Fixed-k upper bound
# --------------------------------------------------------------------------------------------


def test_top_k_upper_bound_hand_computed():
    y_true = np.array([[1, 0, 0], [1, 1, 1], [0, 0, 0]])
    bound = M.top_k_upper_bound(y_true, 2)
    assert tuple(bound) == M.REPORT_KEYS[:10]
    assert bound["O-P"] == pytest.approx(3 / 6)  # (1 + 2 + 0) / (3 images * 2)
    assert bound["O-R"] == pytest.approx(3 / 4)
    assert bound["I-P"] == pytest.approx((1 / 2 + 1) / 2)  # the empty image is left out
    assert bound["I-R"] == pytest.approx((1 + 2 / 3) / 2)
    # Image 1 keeps its rarest labels 1 and 2 (label 0 is the most frequent): recalls 1/2, 1, 1.
    assert bound["C-R"] == pytest.approx(5 / 6)
    oracle = _top_k_oracle(_as_binary(y_true, "y_true"), 2)
    assert oracle.sum(axis=1).tolist() == [2, 2, 2]
    assert oracle[1].tolist() == [False, True, True]


def _brute_force(y_true: np.ndarray, k: int) -> dict[str, float]:
    n, n_labels = y_true.shape
    subsets = list(itertools.combinations(range(n_labels), k))
    best: dict[str, float] = {}
    for choice in itertools.product(subsets, repeat=n):
        pred = np.zeros_like(y_true, dtype=bool)
        for i, cols in enumerate(choice):
            pred[i, list(cols)] = True
        report = M.label_counts(y_true, pred).report()
        for key in M.REPORT_KEYS[:10]:
            best[key] = max(best.get(key, 0.0), report[key])
    return best


@pytest.mark.parametrize("seed", range(6))
def test_top_k_upper_bound_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.random((3, 4)) < 0.45
    y_true[0] = [True, True, True, False]  # more than k labels
    k = 2
    bound = M.top_k_upper_bound(y_true, k)
    best = _brute_force(y_true, k)
    for key in ("O-P", "O-R", "O-F1", "I-P", "I-R", "I-F1", "C-R"):
        assert bound[key] == pytest.approx(best[key]), key
    for key in ("C-P", "C-F1", "H-F1"):
        assert bound[key] <= best[key] + 1e-12, key
    oracle = _top_k_oracle(_as_binary(y_true, "y_true"), k)
    assert (oracle.sum(axis=1) == k).all()
    assert M.label_counts(y_true, oracle).report() == pytest.approx(
        {**M.annotation_report(y_true, oracle)}
    )
    report = M.annotation_report(y_true, oracle)
    assert {key: report[key] for key in bound} == pytest.approx(bound)


def test_top_k_upper_bound_uses_harmless_fillers():
    # Label 3 is absent: fillers go there first, so no present label loses precision.
    y_true = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0]])
    bound = M.top_k_upper_bound(y_true, 2)
    assert bound["C-P"] == 1.0
    assert bound["C-R"] == 1.0


@pytest.mark.parametrize("k", [0, 5, 2.0, True, "3"])
def test_top_k_upper_bound_rejects_bad_k(k):
    with pytest.raises(InvalidInputError, match="k"):
        M.top_k_upper_bound(np.eye(4), k)


# --------------------------------------------------------------------------------------------
# Label quantity
# --------------------------------------------------------------------------------------------


def test_label_quantity_metrics():
    y_true = np.array([[1, 1, 1], [1, 0, 0], [0, 0, 0], [1, 1, 0]])  # 3, 1, 0, 2
    q = np.array([2.5, 1.49, -0.2, 2.51])
    # floor(q + 0.5): 3 (half up, numpy would round 2.5 to 2), 1, 0, 3
    assert M.label_quantity_accuracy_score(y_true, q) == 0.75
    assert M.label_quantity_mse_loss(y_true, q) == pytest.approx(
        (0.25 + 0.49**2 + 0.04 + 0.51**2) / 4
    )
    assert M.label_quantity_accuracy_score(y_true, [3, 1, 0, 2]) == 1.0
    with pytest.raises(InvalidInputError, match="predicted_quantity"):
        M.label_quantity_accuracy_score(y_true, [1, 2, 3])
    with pytest.raises(InvalidInputError, match="predicted_quantity"):
        M.label_quantity_mse_loss(y_true, [1, 2, np.nan, 3])


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def test_shape_mismatch():
    with pytest.raises(InvalidInputError, match="y_pred: expected the same shape") as info:
        M.annotation_report(np.zeros((3, 4)), np.zeros((3, 5)))
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidInputError, match="y_score"):
        M.annotation_report(np.zeros((3, 4)), np.zeros((3, 4)), np.zeros((4, 4)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores(bad):
    y_score = np.zeros((3, 4), dtype=np.float32)
    y_score[2, 1] = bad
    with pytest.raises(InvalidInputError, match=r"y_score: expected finite.*row 2, column 1"):
        M.label_average_precision_score(np.eye(3, 4), y_score)
    with pytest.raises(InvalidInputError, match="nan_to_num"):
        M.annotation_report(np.eye(3, 4), np.eye(3, 4), y_score)


@pytest.mark.parametrize("func", [M.hamming_loss, M.class_precision_score, M.label_counts])
def test_one_dimensional_input(func):
    with pytest.raises(InvalidInputError, match=r"y_true: expected a 2-D .*reshape\(1, -1\)"):
        func(np.array([1, 0, 1]), np.array([1, 0, 1]))
    with pytest.raises(InvalidInputError, match="y_pred"):
        func(np.eye(2), np.zeros((2, 2, 2)))


def test_non_binary_and_bad_types():
    with pytest.raises(InvalidInputError, match="y_pred: expected a binary"):
        M.hamming_loss(np.eye(2), np.array([[0.3, 0.9], [0.1, 0.2]]))
    with pytest.raises(InvalidInputError, match="y_true: expected a binary"):
        M.hamming_loss(sp.csr_array(np.array([[2, 0], [0, 1]])), np.eye(2))
    with pytest.raises(InvalidInputError, match="y_true"):
        M.hamming_loss(np.array([["a", "b"]]), np.eye(1, 2))
    with pytest.raises(InvalidInputError, match="toarray"):
        M.image_average_precision_score(np.eye(2), sp.csr_array(np.eye(2)))
    with pytest.raises(InvalidInputError, match="absent_labels"):
        M.class_recall_score(np.eye(2), np.eye(2), absent_labels="ignore")  # type: ignore[arg-type]
