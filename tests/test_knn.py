"""The nearest-neighbour annotators: hand-checked toy cases, gradients, persistence, real data."""

from __future__ import annotations

import numpy as np
import pytest

from phototag.data import from_label_sets
from phototag.errors import InvalidInputError, NotFittedError
from phototag.evaluation.decoding import TopK
from phototag.evaluation.metrics import class_f1_score, overall_f1_score
from phototag.models import Annotator, available_annotators, create_annotator
from phototag.models.knn import JECAnnotator
from phototag.models.knn.twopass import TripletProblem
from phototag.search import pairwise_distances

KNN_MODELS = ("jec", "tagprop", "2pknn", "2pknn_ml", "mlknn")
# small configurations for toy data (the defaults are sized for Corel-5k)
TINY = {
    "jec": {"k": 3},
    "tagprop": {"k": 6, "max_iter": 50},
    "2pknn": {"k1": 2},
    "2pknn_ml": {"k1": 2, "ml_groups": 2, "ml_impostors": 3},
    "mlknn": {"k": 3},
}

CLUSTERS = {  # centre -> labels of the images around it
    (0.0, 0.0): ["sky", "sea"],
    (5.0, 0.0): ["tree", "grass"],
    (0.0, 5.0): ["car", "road"],
    (5.0, 5.0): ["sky", "tree"],
}


def toy_set(n_per_cluster: int = 6, seed: int = 0, name: str = "toy", extra_dims: int = 2):
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for centre, names in CLUSTERS.items():
        for _ in range(n_per_cluster):
            point = np.array(centre) + 0.4 * rng.standard_normal(2)
            rows.append(np.concatenate([point, 0.1 * rng.standard_normal(extra_dims)]))
            labels.append(names)
    x = np.asarray(rows, dtype=np.float32)
    ids = [f"{name}{i}" for i in range(len(x))]
    return from_label_sets(name, ids, labels, features={"f": x, "g": np.abs(x) + 0.1})


def create(name: str, **extra):
    """A small model on the toy features (Euclidean clusters, hence metric l2)."""
    return create_annotator(name, features="f", metric="l2", **{**TINY[name], **extra})


@pytest.fixture(scope="module")
def toy():
    return toy_set()


@pytest.fixture(scope="module")
def fitted(toy):
    return {name: create(name).fit(toy) for name in KNN_MODELS}


def test_models_are_registered():
    assert set(KNN_MODELS) <= set(available_annotators())


@pytest.mark.parametrize("name", KNN_MODELS)
def test_a_copy_of_a_training_image_gets_its_labels_first(name, toy, fitted):
    scores = fitted[name].scores(toy)
    top2 = TopK(2).decode(scores)
    assert np.array_equal(top2, toy.labels.toarray())


@pytest.mark.parametrize("name", KNN_MODELS)
def test_save_load_round_trip_gives_identical_scores(name, toy, fitted, tmp_path):
    query = toy_set(seed=1, name="query")
    model = fitted[name]
    loaded = Annotator.load(model.save(tmp_path / name))
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    assert np.array_equal(loaded.scores(query), model.scores(query))


@pytest.mark.parametrize("name", KNN_MODELS)
def test_float16_storage_halves_features_and_scores_alike(name, toy, fitted, tmp_path):
    query = toy_set(seed=1, name="query")
    model = create(name, feature_dtype="float16").fit(toy)
    assert model.train_features_0_.dtype == np.float16
    loaded = Annotator.load(model.save(tmp_path / name))
    assert loaded.train_features_0_.dtype == np.float16
    assert np.array_equal(loaded.scores(query), model.scores(query))
    assert np.array_equal(TopK(2).decode(model.scores(query)), query.labels.toarray())


@pytest.mark.parametrize("name", KNN_MODELS)
def test_unfitted_and_missing_features_are_clear_errors(name, toy, fitted):
    with pytest.raises(NotFittedError, match="fit"):
        create(name).scores(toy)
    other = toy_set(name="other")
    other.features = {"cnn": other.features["f"], "gist": other.features["g"]}
    with pytest.raises(InvalidInputError, match=r"features\['f'\].*'cnn', 'gist'"):
        fitted[name].scores(other)
    with pytest.raises(InvalidInputError, match=r"features\['missing'\]"):
        create_annotator(name, features="missing").fit(toy)
    wrong = toy_set(name="wrong", extra_dims=3)
    with pytest.raises(InvalidInputError, match="4 columns"):
        fitted[name].scores(wrong)


def test_bad_configuration_is_rejected():
    with pytest.raises(InvalidInputError, match="metric"):
        create_annotator("jec", metric="hamming")
    with pytest.raises(InvalidInputError, match="one metric or one per feature"):
        create_annotator("jec", features=["f", "g"], metric=["l2", "l1", "cosine"])
    with pytest.raises(InvalidInputError, match="ivf"):
        create_annotator("tagprop", features=["f", "g"], search="ivf")
    with pytest.raises(InvalidInputError, match="weighting"):
        create_annotator("tagprop", weighting="softmax")


# ----------------------------------------------------------------------------------- JEC
def test_jec_greedy_transfer_by_hand():
    #            item: 0        1           2            3           4
    label_sets = [["a", "b"], ["c", "d"], ["c", "e"], ["a", "c"], ["e", "f"]]
    x = np.array([[0.0], [1.0], [2.0], [10.0], [20.0]], dtype=np.float32)
    train = from_label_sets("t", list("01234"), label_sets, features={"f": x})
    model = create_annotator("jec", features="f", metric="l2", k=3).fit(train)
    # query at 0.1: neighbours 0 (a, b), then 1 (c, d), 2 (c, e)
    scores = model.greedy_scores(np.array([[0, 1, 2]]))[0]
    names = model.vocabulary_.names
    order = [names[j] for j in np.argsort(-scores, kind="stable")]
    # tier 1: a (freq 2) before b (freq 1). Tier 2: c co-occurs with a once and appears in two
    # neighbours (1 x 2 = 2); d and e never co-occur with a or b (0): local frequency 1 each,
    # then training frequency: e (2) before d (1). Then f (the rest, by frequency).
    assert order == ["a", "b", "c", "e", "d", "f"]
    query = from_label_sets(
        "q", ["q"], [[]], vocabulary=train.vocabulary, features={"f": x[:1] + 0.1}
    )
    assert np.array_equal(model.scores(query)[0], scores.astype(np.float32))
    assert [label for label, _ in model.annotate(query, TopK(3))[0]] == ["a", "b", "c"]


def test_jec_scales_each_feature_by_its_max_and_adds_them(toy):
    model = create_annotator("jec", features=["f", "g"], metric=["l2", "l1"], k=4).fit(toy)
    query = toy_set(seed=3, name="q")
    xf, xg = toy.features["f"], toy.features["g"]
    df = pairwise_distances(xf, xf, "l2")
    dg = pairwise_distances(xg, xg, "l1")
    assert model.distance_scale_[0] == pytest.approx(df.max(), rel=1e-5)
    assert model.distance_scale_[1] == pytest.approx(dg.max(), rel=1e-5)
    combined = (
        pairwise_distances(query.features["f"], xf, "l2") / df.max()
        + pairwise_distances(query.features["g"], xg, "l1") / dg.max()
    ) / 2
    d, i = model.neighbours([query.features["f"], query.features["g"]], 4)
    assert np.allclose(d, np.sort(combined, axis=1)[:, :4], atol=1e-5)
    assert np.array_equal(i, np.argsort(combined, axis=1, kind="stable")[:, :4])


# -------------------------------------------------------------------------------- ML-kNN
def test_mlknn_posterior_matches_a_hand_computation():
    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.5]], dtype=np.float32)
    label_sets = [["a"], ["a"], ["a", "b"], ["b"], ["b"], ["a"]]
    train = from_label_sets("t", list("012345"), label_sets, features={"f": x})
    model = create_annotator("mlknn", features="f", metric="l2", k=2, smoothing=1.0).fit(train)
    y = train.labels.toarray()
    # leave-one-out 2-NN by hand: 0->{1,2} 1->{0,2} 2->{1,0} 3->{4,5} 4->{3,5} 5->{4,3}
    nn = {0: [1, 2], 1: [0, 2], 2: [1, 0], 3: [4, 5], 4: [3, 5], 5: [4, 3]}
    k, s, m = 2, 1.0, 6
    counts = np.array([[y[nn[i]][:, label].sum() for label in range(2)] for i in range(m)])
    query = from_label_sets(
        "q",
        ["q"],
        [[]],
        vocabulary=train.vocabulary,
        features={"f": np.array([[10.4]], np.float32)},
    )
    # query neighbours: 3 (b) and 4 (b) -> counts a: 0, b: 2
    query_counts = [0, 2]
    expected = []
    for label in range(2):
        prior = (s + y[:, label].sum()) / (2 * s + m)
        c_pos = [
            sum(1 for i in range(m) if y[i, label] and counts[i, label] == j) for j in range(k + 1)
        ]
        c_neg = [
            sum(1 for i in range(m) if not y[i, label] and counts[i, label] == j)
            for j in range(k + 1)
        ]
        j = query_counts[label]
        like_pos = (s + c_pos[j]) / (s * (k + 1) + sum(c_pos))
        like_neg = (s + c_neg[j]) / (s * (k + 1) + sum(c_neg))
        expected.append(prior * like_pos / (prior * like_pos + (1 - prior) * like_neg))
    assert model.scores(query)[0] == pytest.approx(expected, rel=1e-6)
    # label a spelled out: prior (1 + 4) / (2 + 6) = 5/8; leave-one-out counts of a are 2, 2, 2,
    # 0 for the a-images and 1, 1 for the others, so P(count 0 | a) = (1 + 1) / (3 + 4) and
    # P(count 0 | not a) = (1 + 0) / (3 + 2)
    assert expected[0] == pytest.approx((5 / 8 * 2 / 7) / (5 / 8 * 2 / 7 + 3 / 8 * 1 / 5))


# ------------------------------------------------------------------------------- TagProp
@pytest.mark.parametrize("weighting", ["distance", "rank"])
@pytest.mark.parametrize("sigmoid", [False, True])
def test_tagprop_gradient_matches_finite_differences(toy, weighting, sigmoid):
    model = create_annotator(
        "tagprop", features=["f", "g"], metric=["l2", "l1"], k=8, weighting=weighting, max_iter=3
    ).fit(toy)
    problem = model.problem()
    rng = np.random.default_rng(0)
    n_labels = len(toy.vocabulary)
    parts = [rng.random(problem.n_weights) * 2]
    if sigmoid:
        parts += [rng.random(n_labels) * 4, rng.standard_normal(n_labels)]
    params = np.concatenate(parts)
    _, grad = problem.value_and_grad(params, sigmoid)
    step = 1e-6
    numeric = np.array(
        [
            (
                problem.value_and_grad(params + step * e, sigmoid)[0]
                - problem.value_and_grad(params - step * e, sigmoid)[0]
            )
            / (2 * step)
            for e in np.eye(len(params))
        ]
    )
    assert np.allclose(grad, numeric, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("weighting", ["distance", "rank"])
def test_tagprop_training_raises_the_log_likelihood(weighting):
    train = toy_set(n_per_cluster=10, seed=4)
    model = create_annotator("tagprop", features="f", metric="l2", k=20, weighting=weighting).fit(
        train
    )
    problem = model.problem()
    uniform = np.zeros(problem.n_weights)  # equal weights for the K neighbours
    before = -problem.value_and_grad(uniform, False)[0]
    info = model.fit_info_
    assert info["loglik_plain"] >= info["loglik_initial"] - 1e-12
    assert info["loglik_plain"] > before + 0.05
    assert info["loglik_sigmoid"] > info["loglik_sigmoid_initial"] + 0.05
    plain = create_annotator(
        "tagprop", features="f", metric="l2", k=20, weighting=weighting, word_sigmoids=False
    )
    plain.fit(train)
    assert not hasattr(plain, "word_alpha_")
    assert plain.fit_info_["loglik_plain"] == pytest.approx(info["loglik_plain"])


# --------------------------------------------------------------------------------- 2PKNN
@pytest.mark.parametrize("name", ["2pknn", "2pknn_ml"])
def test_2pknn_semantic_groups_hold_only_images_with_the_label(name, toy, fitted):
    model = fitted[name]
    query = toy_set(seed=5, name="q")
    groups = model.semantic_neighbourhoods(query)
    y = toy.labels.toarray().astype(bool)
    assert groups.shape == (query.n_items, len(toy.vocabulary), model.k1)
    # every image chosen for label l carries l, and they are the k1 nearest such images
    dist = np.concatenate([d for _, d in model.distance_blocks([query.features["f"]])])
    for label in range(y.shape[1]):
        members = np.flatnonzero(y[:, label])
        chosen = groups[:, label]
        assert y[chosen, label].all()
        nearest = members[np.argsort(dist[:, members], axis=1, kind="stable")[:, : model.k1]]
        assert np.array_equal(np.sort(chosen, axis=1), np.sort(nearest, axis=1))


def test_2pknn_group_smaller_than_k1_is_padded():
    x = np.array([[0.0], [1.0], [2.0]], dtype=np.float32)
    train = from_label_sets("t", list("abc"), [["rare", "x"], ["x"], ["x"]], features={"f": x})
    model = create_annotator("2pknn", features="f", metric="l2", k1=2, temperature=1.0).fit(train)
    groups = model.semantic_neighbourhoods(train)
    rare = train.vocabulary.index("rare")
    assert groups[:, rare].tolist() == [[0, -1]] * 3


def test_2pknn_ml_triplet_gradient_and_descent():
    rng = np.random.default_rng(0)
    targets = rng.random((5, 4, 3))
    impostors = rng.random((5, 2, 3))
    problem = TripletProblem(
        targets, rng.random((5, 4)) > 0.2, impostors, rng.random((5, 2)) > 0.2, mu=0.5
    )
    w = rng.random(3) + 0.5
    _, grad = problem.value_and_grad(w)
    numeric = [
        (problem.value_and_grad(w + 1e-6 * e)[0] - problem.value_and_grad(w - 1e-6 * e)[0]) / 2e-6
        for e in np.eye(3)
    ]
    assert np.allclose(grad, numeric, atol=1e-6)
    solved = problem.solve(np.ones(3))
    assert (solved >= 0).all()
    assert problem.value_and_grad(solved)[0] <= problem.value_and_grad(np.ones(3))[0]


def test_ivf_search_inside_a_model(toy):
    model = create_annotator(
        "mlknn", features="f", metric="l2", k=3, search="ivf", nlist=2, nprobe=2
    ).fit(toy)
    assert np.array_equal(TopK(2).decode(model.scores(toy)), toy.labels.toarray())


# ---------------------------------------------------------------------- real data (Mulan)
def _top2_f1(model, test):
    predicted = TopK(2).decode(model.scores(test))
    return class_f1_score(test.labels, predicted), overall_f1_score(test.labels, predicted)


@pytest.fixture(scope="module")
def prior_f1(scene):
    train, test = scene
    return _top2_f1(create_annotator("prior").fit(train), test)


@pytest.mark.parametrize("name", KNN_MODELS)
def test_beats_the_prior_on_mulan_scene(name, scene, prior_f1):
    train, test = scene
    model = create_annotator(name, features="arff").fit(train)
    c_f1, o_f1 = _top2_f1(model, test)
    prior_c, prior_o = prior_f1  # about 0.11 and 0.25
    assert c_f1 > prior_c + 0.35, (c_f1, prior_c)
    assert o_f1 > prior_o + 0.25, (o_f1, prior_o)
    assert isinstance(model, JECAnnotator) or model.scores(test).max() <= 1.0


@pytest.mark.parametrize("name", ["tagprop", "2pknn_ml"])
def test_metric_learning_prefers_the_informative_feature(name):
    rng = np.random.default_rng(7)
    centres = np.array(list(CLUSTERS), dtype=np.float32)
    cluster = rng.integers(0, len(centres), 120)
    names = list(CLUSTERS.values())
    features = {
        "f": centres[cluster] + 2.0 * rng.standard_normal((120, 2)).astype(np.float32),
        "noise": 3.0 * rng.standard_normal((120, 2)).astype(np.float32),
    }
    train = from_label_sets(
        "t", [str(i) for i in range(120)], [names[c] for c in cluster], features=features
    )
    extra = {"k": 20} if name == "tagprop" else {"k1": 3, "ml_impostors": 5}
    model = create_annotator(name, features=["f", "noise"], metric="l2", **extra).fit(train)
    weights = model.weights_ if name == "tagprop" else model.metric_weights_
    assert weights[0] > 3 * weights[1], weights
