"""The linear tag classifier and the late-fusion ensemble: toy cases, choices, persistence,
real data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phototag.data import from_label_sets
from phototag.errors import InvalidInputError
from phototag.evaluation.decoding import TopK
from phototag.evaluation.metrics import annotation_report
from phototag.models import Annotator, create_annotator
from phototag.models.ensemble import fit_logistic, rescaled
from phototag.models.linear import asymmetric_loss


def linear_set(n: int = 240, seed: int = 0, name: str = "lin"):
    """Three words, each present when one direction of a 6-d feature is positive."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    words = ["sky", "sea", "tree"]
    labels = [[w for j, w in enumerate(words) if row[j] > 0.3] or ["sky"] for row in x]
    return from_label_sets(name, [f"{name}{i}" for i in range(n)], labels, features={"f": x})


def rare_word_set(n: int = 300, seed: int = 0, name: str = "rare"):
    """Four clusters; in one, a rare word replaces a common one on a quarter of the photos."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for i in range(n):
        c = i % 4
        rows.append(np.eye(4)[c] * 3 + 0.3 * rng.standard_normal(4))
        base = ["sky", "sea", "tree", "car"][c]
        labels.append([base, "kite"] if c == 0 and i % 16 == 0 else [base, "cloud"])
    x = np.asarray(rows, dtype=np.float32)
    return from_label_sets(name, [f"{name}{i}" for i in range(n)], labels, features={"f": x})


# ------------------------------------------------------------------- linear tagger
def test_asymmetric_loss_reduces_to_cross_entropy():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.2, 1.5]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    expected = (
        torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / 2
    )
    assert torch.allclose(asymmetric_loss(logits, targets, gamma_neg=0, clip=0), expected)
    # focusing and clipping only ever lower the cost of negatives
    assert asymmetric_loss(logits, targets) < expected


def test_linear_tagger_learns_directions_and_round_trips(tmp_path):
    train, test = linear_set(), linear_set(seed=1, name="t")
    model = create_annotator("linear", features="f", epochs=40).fit(train)
    scores = model.scores(test)
    assert scores.min() >= 0 and scores.max() <= 1
    map_label = annotation_report(test.labels, scores > 0.5, scores)["mAP_label"]
    assert map_label > 0.85, map_label
    again = create_annotator("linear", features="f", epochs=40).fit(train).scores(test)
    np.testing.assert_array_equal(scores, again)  # zero start + seeded order
    loaded = Annotator.load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.scores(test), scores, rtol=1e-6)


def test_linear_tagger_rejects_bad_settings_and_inputs():
    with pytest.raises(InvalidInputError, match="epochs"):
        create_annotator("linear", epochs=0)
    model = create_annotator("linear", features="f", epochs=1).fit(linear_set())
    wrong = from_label_sets("w", ["a"], [["sky"]], features={"f": np.zeros((1, 3), np.float32)})
    with pytest.raises(InvalidInputError, match="6 columns"):
        model.scores(wrong)
    with pytest.raises(InvalidInputError, match="features"):
        model.scores(from_label_sets("w", ["a"], [["sky"]]))


# ------------------------------------------------------------------------ ensemble
def test_rescaled_and_logistic_fit():
    np.testing.assert_allclose(rescaled(np.array([[1.0, 3.0, 2.0], [4.0, 4.0, 4.0]])),
                               [[0.0, 1.0, 0.5], [0.0, 0.0, 0.0]])  # fmt: skip
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 20000)
    y = rng.uniform(size=x.size) < 1 / (1 + np.exp(-(3.0 * x - 0.5)))
    a, b = fit_logistic(x, y)
    assert a == pytest.approx(3.0, abs=0.15) and b == pytest.approx(-0.5, abs=0.08)


WEIGHTS = (0, 0.25, 0.5, 0.75, 1)
EXPONENTS = (0, 0.1, 0.2, 0.3, 0.4)
MEMBERS = [{"model": "2pknn", "k1": 2, "metric": "l2"}, {"model": "linear", "epochs": 30}]


def test_ensemble_given_weights_mixes_rescaled_member_scores():
    train, test = linear_set(), linear_set(seed=1, name="t")
    model = create_annotator(
        "ensemble", members=MEMBERS, features="f", weights=[0.5, 1.0], prior_exponent=0.0
    ).fit(train)
    members = [
        create_annotator("2pknn", features="f", k1=2, metric="l2").fit(train),
        create_annotator("linear", features="f", epochs=30).fit(train),
    ]
    fused = 0.5 * rescaled(members[0].scores(test)) + rescaled(members[1].scores(test))
    a, b = model.calibration_
    expected = 1 / (1 + np.exp(-(a * fused + b)))
    np.testing.assert_allclose(model.scores(test), expected, rtol=1e-5, atol=1e-6)
    assert a > 0  # a higher fused score means a more likely label


@pytest.mark.parametrize("metric", ["C-F1", "O-F1"])
def test_ensemble_choice_is_the_best_grid_point_on_held_out_data(tmp_path, metric):
    train, valid, test = (
        rare_word_set(),
        rare_word_set(seed=1, name="v"),
        rare_word_set(seed=2, name="t"),
    )
    model = create_annotator("ensemble", members=MEMBERS, features="f", top_k=2, metric=metric)
    model.fit(train, valid)
    # recompute every grid point by hand on the validation photos
    scores = [rescaled(m.fit(train).scores(valid)) for m in model._new_members()]
    counts = train.label_frequencies() + 1.0
    grid = [(w0, w1, e) for w0 in WEIGHTS for w1 in WEIGHTS if max(w0, w1) == 1 for e in EXPONENTS]
    best = max(
        annotation_report(valid.labels, TopK(2).decode(fused * counts**-e), None)[metric]
        for w0, w1, e in grid
        for fused in [w0 * scores[0] + w1 * scores[1]]
    )
    assert model.selection_score_ == pytest.approx(best)
    loaded = Annotator.load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.scores(test), model.scores(test), rtol=1e-6)
    assert loaded.required_inputs().features == ("f",)


@pytest.mark.parametrize(("exponent", "predicted"), [(0.0, False), (1.0, True)])
def test_the_prior_exponent_lifts_rare_words(exponent, predicted):
    train, test = rare_word_set(), rare_word_set(seed=2, name="t")
    model = create_annotator(
        "ensemble", members=MEMBERS[:1], features="f", prior_exponent=exponent
    ).fit(train)
    kite = train.vocabulary.index("kite")
    assert TopK(2).decode(model.scores(test))[:, kite].any() == predicted


def test_ensemble_cross_validates_and_drops_zero_weight_members(tmp_path):
    train = linear_set()
    members = [*MEMBERS, {"model": "prior"}]
    model = create_annotator("ensemble", members=members, features="f", weights=[1, 1, 0]).fit(
        train
    )
    assert model.active_.tolist() == [0, 1] and len(model.members_) == 2
    loaded = Annotator.load(model.save(tmp_path / "m"))
    assert len(loaded.members_) == 2
    np.testing.assert_allclose(loaded.scores(train), model.scores(train), rtol=1e-6)


def test_ensemble_rejects_bad_configurations():
    with pytest.raises(InvalidInputError, match="members"):
        create_annotator("ensemble", members=[])
    with pytest.raises(InvalidInputError, match=r"members\[0\]"):
        create_annotator("ensemble", members=["2pknn"])
    with pytest.raises(InvalidInputError, match="weights"):
        create_annotator("ensemble", members=MEMBERS, weights=[1.0])
    with pytest.raises(InvalidInputError, match="metric"):
        create_annotator("ensemble", members=MEMBERS, metric="mAP_label")
    with pytest.raises(InvalidInputError, match="prior_exponent"):
        create_annotator("ensemble", members=MEMBERS, prior_exponent=-1)


def test_ensemble_beats_its_members_on_mulan_scene(scene):
    train, test = scene
    members = [{"model": "2pknn", "k1": 5}, {"model": "linear"}]
    model = create_annotator("ensemble", members=members, features="arff", top_k=2).fit(train)

    def f1(scores):
        return annotation_report(test.labels, TopK(2).decode(scores), None)["C-F1"]

    single = []
    for spec in members:
        params = {k: v for k, v in spec.items() if k != "model"}
        member = create_annotator(spec["model"], features="arff", **params).fit(train)
        single.append(f1(member.scores(test)))
    assert f1(model.scores(test)) >= max(single) - 0.01, (f1(model.scores(test)), single)
