"""The modality-fusion model: EG math by hand, the simplex, ranked pairs and Hamming
thresholds against brute force, a fit that finds the informative modality, the model
file round trip, and the study's tables."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from phototag.data import AnnotationSet, Vocabulary
from phototag.errors import InvalidInputError
from phototag.models import Annotator, create_annotator
from phototag.models.fusion import (
    eg_step,
    hamming_thresholds,
    hinge_losses,
    learn_weights,
    misranked_fraction,
    pair_differences,
    ranked_pairs,
)


# ------------------------------------------------------------------- EG math
def test_eg_step_matches_the_hand_computed_update():
    # alpha = (1/2, 1/2), dS = (0.2, -0.1), margin 0.5 > alpha.dS = 0.05: violated, so
    # alpha_j ~ alpha_j * exp(eta * dS_j) with eta = 1
    alpha = eg_step(np.array([0.5, 0.5]), np.array([[0.2, -0.1]]), margin=0.5, lr=1.0)
    a, b = math.exp(0.2), math.exp(-0.1)
    np.testing.assert_allclose(alpha, [a / (a + b), b / (a + b)], rtol=1e-12)


def test_eg_step_averages_the_violated_pairs_over_the_batch():
    # the second pair is ranked by more than the margin: it adds nothing but counts in the
    # batch mean, so the step is exp(eta * dS_1 / 2)
    differences = np.array([[0.4, -0.2], [1.0, 1.0]])
    alpha = eg_step(np.array([0.5, 0.5]), differences, margin=0.5, lr=1.0)
    a, b = math.exp(0.2), math.exp(-0.1)
    np.testing.assert_allclose(alpha, [a / (a + b), b / (a + b)], rtol=1e-12)
    np.testing.assert_allclose(hinge_losses(np.array([0.5, 0.5]), differences, 0.5), [0.4, 0.0])


def test_eg_step_leaves_alpha_when_every_pair_is_ranked_by_the_margin():
    alpha = np.array([0.3, 0.7])
    assert eg_step(alpha, np.array([[1.0, 1.0]]), margin=0.5, lr=10.0) is alpha


def test_alpha_stays_on_the_simplex():
    rng = np.random.default_rng(0)
    result = learn_weights(rng.normal(size=(500, 5)), margin=0.3, lr=5.0, epochs=2, batch_size=7)
    assert result.history.shape[1] == 5
    np.testing.assert_allclose(result.history[0], 0.2)
    np.testing.assert_allclose(result.history.sum(axis=1), 1.0, rtol=1e-12)
    assert (result.history > 0).all() and np.array_equal(result.history[-1], result.alpha)
    assert result.steps[0] == 0 and result.steps[-1] == 2 * math.ceil(500 / 7)


def test_alpha_moves_to_the_modality_that_ranks_right():
    rng = np.random.default_rng(1)
    good = 0.3 + 0.05 * rng.normal(size=2000)  # ranks every pair right
    noise = 0.3 * rng.normal(size=(2000, 2))  # right half of the time
    differences = np.column_stack([noise[:, 0], good, noise[:, 1]])
    result = learn_weights(differences, margin=0.2, lr=2.0, epochs=2)
    assert result.alpha[1] > 0.9
    assert misranked_fraction(result.alpha, differences) < misranked_fraction(
        np.full(3, 1 / 3), differences
    )


# --------------------------------------------------------------- pairs, cuts
def test_ranked_pairs_are_every_relevant_irrelevant_pair():
    labels = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0], [1, 1, 1, 1]])
    item, relevant, irrelevant = ranked_pairs(labels, max_pairs=100)
    found = sorted(zip(item.tolist(), relevant.tolist(), irrelevant.tolist(), strict=True))
    expected = sorted((i, r, s) for i in range(4) for r in range(4) for s in range(4)
                      if labels[i, r] and not labels[i, s])  # fmt: skip
    assert found == expected
    item, relevant, irrelevant = ranked_pairs(labels, max_pairs=3, seed=2)
    assert len(item) == 3 and (labels[item, relevant] == 1).all()
    assert (labels[item, irrelevant] == 0).all()
    scores = np.arange(4 * 4 * 2, dtype=float).reshape(4, 4, 2)
    np.testing.assert_array_equal(
        pair_differences(scores, (item, relevant, irrelevant)),
        scores[item, relevant] - scores[item, irrelevant],
    )


def test_hamming_thresholds_give_the_fewest_errors_per_label():
    rng = np.random.default_rng(3)
    y = rng.random((60, 5)) < [[0.1, 0.3, 0.5, 0.8, 0.0]]
    scores = np.round(rng.random((60, 5)) + 0.5 * y, 1)  # ties on purpose
    thresholds = hamming_thresholds(y, scores)
    for j in range(5):
        cuts = np.r_[np.inf, np.unique(scores[:, j])]
        best = min(int(np.sum((scores[:, j] >= c) != y[:, j])) for c in cuts)
        assert int(np.sum((scores[:, j] >= thresholds[j]) != y[:, j])) == best
    assert thresholds[4] == np.inf  # a label nobody has is never predicted


# -------------------------------------------------------------------- model
def _toy(n: int = 120, seed: int = 0) -> AnnotationSet:
    """Three labels; feature "good" shows them, "noise" does not; user tags echo them."""
    rng = np.random.default_rng(seed)
    y = rng.random((n, 3)) < 0.35
    y[np.flatnonzero(~y.any(axis=1)), 0] = True
    good = np.hstack([2.0 * y + 0.3 * rng.normal(size=(n, 3)), rng.normal(size=(n, 2))])
    noise = rng.normal(size=(n, 4))
    return AnnotationSet(
        name="toy", item_ids=[str(i) for i in range(n)], vocabulary=Vocabulary(["a", "b", "c"]),
        labels=y, features={"good": good.astype(np.float32), "noise": noise.astype(np.float32)},
        tag_vocabulary=Vocabulary(["ta", "tb", "tc"]), user_tags=y & (rng.random((n, 3)) < 0.8),
    )  # fmt: skip


SMALL = dict(hidden=16, embed=8, epochs=15, lr=3e-3, batch_size=32, device="cpu",
             eg_lrs=[1.0, 5.0], margins=[0.1, 0.3], max_pairs=5000)  # fmt: skip


def test_fusion_weights_the_informative_feature_and_round_trips(tmp_path):
    train, test = _toy(), _toy(40, seed=1)
    model = create_annotator("fusion", features=["good", "noise", "tags"], **SMALL).fit(train)
    names = model.modalities_
    assert names == [
        f"{s}/{f}" for s in ("good", "noise", "tags") for f in ("linear", "cosine", "rbf")
    ]
    alpha = dict(zip(names, model.alpha_, strict=True))
    assert sum(v for k, v in alpha.items() if k.startswith("noise")) < 0.2  # uniform: 1/3
    np.testing.assert_allclose(model.alpha_history_.sum(axis=1), 1.0)
    assert len(model.eg_search_) == 4
    scores = model.scores(test)
    assert scores.shape == (40, 3)
    np.testing.assert_allclose(
        scores, np.einsum("inl,n->il", model.modality_scores(test), model.alpha_), rtol=1e-5
    )
    model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model"] == "fusion" and config["decoder"]["name"] == "label_thresholds"
    loaded = Annotator.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.scores(test), scores, rtol=1e-6)
    np.testing.assert_array_equal(loaded.alpha_, model.alpha_)
    np.testing.assert_array_equal(loaded.alpha_history_, model.alpha_history_)
    assert loaded.annotate(test) == model.annotate(test)
    with pytest.raises(InvalidInputError, match="fitted in this process"):
        loaded.reweighted("uniform")
    uniform = model.reweighted("uniform")
    np.testing.assert_allclose(uniform.alpha_, 1 / 9)
    single = model.reweighted("good/cosine")
    assert single.alpha_[names.index("good/cosine")] == 1.0 and model.alpha_.max() < 1.0


@pytest.mark.parametrize("select", ["hamming", "misranked"])
def test_eg_search_picks_the_lowest_held_out_error(select):
    model = create_annotator("fusion", features=["good", "noise"], eg_select=select, **SMALL)
    model.fit(_toy())
    search = model.eg_search_
    assert len(search) == 4 and all(0 <= p["hamming"] <= 1 for p in search)
    best = search[int(np.argmin([p[select] for p in search]))]  # the first wins ties
    assert model.eg_choice_ == {"eg_lr": best["eg_lr"], "margin": best["margin"]}
    refit = learn_weights(
        pair_differences(model._held_out[0].transpose(0, 2, 1),
                         ranked_pairs(model._held_out[1], model.max_pairs, model.seed)),
        margin=best["margin"], lr=best["eg_lr"], epochs=model.eg_epochs,
        batch_size=model.eg_batch, seed=model.seed,
    )  # fmt: skip
    np.testing.assert_allclose(model.alpha_, refit.alpha)


def test_fusion_checks_its_arguments():
    with pytest.raises(InvalidInputError, match="similarities"):
        create_annotator("fusion", similarities=["dot"])
    with pytest.raises(InvalidInputError, match="combination"):
        create_annotator("fusion", features=["gist"], combination="hsv_hist/rbf")
    with pytest.raises(InvalidInputError, match="mu_cosine"):
        create_annotator("fusion", mu_cosine=0)
    with pytest.raises(InvalidInputError, match="features"):
        create_annotator("fusion", features="gist")
    with pytest.raises(InvalidInputError, match="eg_select"):
        create_annotator("fusion", eg_select="map")
    model = create_annotator("fusion", features=["gist", "efficientnet_lite2@stage3", "tags"])
    inputs = model.required_inputs()
    assert inputs.features == ("gist",) and inputs.user_tags
    assert [spec.key for spec in inputs.maps] == ["efficientnet_lite2@stage3"]


def test_fusion_on_scene_reaches_the_paper(scene):
    """Mulan scene: fusion's Hamming loss at most the paper's 0.134."""
    from phototag.evaluation.metrics import hamming_loss

    train, test = scene
    model = create_annotator("fusion", features=["arff"], epochs=8, folds=2, device="cpu").fit(
        train
    )
    assert hamming_loss(test.labels, model.decoder_.decode_prediction(model.predict(test))) <= 0.134


def test_study_tables_and_alpha_plot(tmp_path):
    from phototag.models.fusion import benchmark

    model = create_annotator("fusion", features=["good", "noise"], **SMALL).fit(_toy())
    rows = benchmark.fusion_rows(model, _toy(40, seed=1), seconds=1.5)
    assert [r["kind"] for r in rows[:3]] == ["fusion", "variant", "uniform"]
    assert len(rows) == 3 + 6 and rows[1]["name"] == "EG, eta/gamma by held-out misranked pairs"
    saved = {"part": "scene", "rows": rows, "seconds": 60.0, "command": "phototag benchmark fusion"}
    text = benchmark.markdown({"scene": saved})
    assert "**fusion (EG)**" in text and "uniform alpha" in text and "| natural scene |" in text
    assert "the best single modality" in text
    png = benchmark.plot_alpha(saved, tmp_path / "alpha.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    # several runs: mean rows, and the targets checked run by run
    again = benchmark.fusion_rows(model, _toy(40, seed=2), seconds=1.0)
    means = [benchmark._mean_row([a, b]) for a, b in zip(rows, again, strict=True)]
    assert means[0]["runs"] == 2 and len(means[0]["eg_choice_runs"]) == 2
    assert means[1]["hamming_runs"] == [r["metrics"]["hamming_loss"] for r in (rows[1], again[1])]
    text = benchmark.markdown({"scene": saved | {"rows": means}})
    assert "Run by run, fusion (EG): below every single modality in" in text


def test_baselines_are_decoded_by_their_rule_and_by_out_of_fold_hamming_thresholds():
    from phototag.models.fusion import benchmark

    rows = benchmark.baseline_rows(
        _toy(), _toy(40, seed=1), knn_features="good", knn_metric="l2", logistic_features="good"
    )
    assert [r["name"] for r in rows] == [
        "ML-kNN (good)", "ML-kNN (good), Hamming thresholds",
        "logistic (good)", "logistic (good), Hamming thresholds",
    ]  # fmt: skip
    assert all(0.0 <= r["metrics"]["hamming_loss"] <= 1.0 for r in rows)
