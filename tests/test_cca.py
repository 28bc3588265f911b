"""CCA, KCCA and CCA-KNN: numerics against direct computations, scoring, persistence, data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg as sla
from sklearn.cross_decomposition import CCA as SklearnCCA

from phototag.data import AnnotationSet, Vocabulary, multi_hot
from phototag.errors import InvalidInputError, NotFittedError
from phototag.evaluation.decoding import TopK
from phototag.evaluation.metrics import overall_f1_score
from phototag.evaluation.model_selection import cv_folds, parameter_grid, select_by_cv
from phototag.models import Annotator, available_annotators, create_annotator
from phototag.models.cca import label_embedding_matrix
from phototag.models.cca import linalg as la


# ----------------------------------------------------------------------------- helpers
def planted_views(n=3000, p=6, q=4, rho=(0.9, 0.6), seed=0):
    """Two views sharing a latent z with population canonical correlations `rho`.

    x = [z scaled, noise] rotated, t = [z, noise] rotated: the canonical correlations are
    exactly `rho` in the population (independent unit-variance coordinates otherwise).
    """
    rng = np.random.default_rng(seed)
    r = len(rho)
    z = rng.standard_normal((n, r))
    rho = np.asarray(rho)
    # corr(x_i, t_i) = rho_i with x_i = z_i, t_i = rho_i z_i + sqrt(1 - rho_i^2) e_i
    x_core = np.hstack([z, rng.standard_normal((n, p - r))])
    t_core = np.hstack(
        [
            rho * z + np.sqrt(1 - rho**2) * rng.standard_normal((n, r)),
            rng.standard_normal((n, q - r)),
        ]
    )
    ax = rng.standard_normal((p, p)) + 3 * np.eye(p)
    at = rng.standard_normal((q, q)) + 3 * np.eye(q)
    return x_core @ ax, t_core @ at, rho


def centred(a):
    return a - a.mean(axis=0)


def labelled_set(n=300, n_labels=6, dim=12, seed=0, nonneg=False, name="toy"):
    """Items whose labels depend on a latent that also drives the features."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    logits = z @ rng.standard_normal((3, n_labels)) * 2 - 0.5
    labels = rng.random((n, n_labels)) < 1 / (1 + np.exp(-logits))
    labels[np.arange(n), np.argmax(logits, axis=1)] = True
    x = z @ rng.standard_normal((3, dim)) + 0.5 * rng.standard_normal((n, dim))
    if nonneg:
        x = np.exp(x / 2)
    vocab = Vocabulary([f"w{j}" for j in range(n_labels)])
    return AnnotationSet(
        name=name,
        item_ids=[f"{name}{i}" for i in range(n)],
        vocabulary=vocab,
        labels=multi_hot([np.flatnonzero(r) for r in labels], n_labels),
        features={"feat": x.astype(np.float32)},
    )


# ------------------------------------------------------------------------- linear CCA
def test_cca_recovers_planted_correlations_and_matches_direct_eigensolver():
    x, t, rho = planted_views()
    xc, tc = centred(x), centred(t)
    sol = la.regularized_cca(xc, tc, 0.0, 0.0)
    direct = direct_cca(xc, tc)
    np.testing.assert_allclose(sol.correlations, direct, atol=1e-9)
    # planted: two strong correlations, the rest near zero (sampling noise ~ 1/sqrt(n))
    np.testing.assert_allclose(sol.correlations[:2], rho, atol=0.03)
    assert np.all(sol.correlations[2:] < 0.08)
    # projected training data: correlations are the canonical ones, pairs are uncorrelated
    u, v = xc @ sol.weights_x, tc @ sol.weights_t
    joint = np.corrcoef(u.T, v.T)
    d = u.shape[1]
    np.testing.assert_allclose(np.diag(joint[:d, d:]), sol.correlations, atol=1e-9)
    np.testing.assert_allclose(joint[:d, :d], np.eye(d), atol=1e-9)
    off = joint[:d, d:] - np.diag(np.diag(joint[:d, d:]))
    assert np.abs(off).max() < 1e-9
    np.testing.assert_allclose(u.T @ u / len(u), np.eye(d), atol=1e-9)


def direct_cca(x: np.ndarray, t: np.ndarray, reg_x: float = 0.0, reg_t: float = 0.0) -> np.ndarray:
    """Canonical correlations from Eq. (2) as written, via a dense generalised eigensolver.

    Slow and less stable than `regularized_cca`: the reference it is compared against.
    """
    n = x.shape[0]
    cxx, ctt, cxt = x.T @ x / n, t.T @ t / n, x.T @ t / n
    cxx = cxx + la.ridge(cxx, reg_x) * np.eye(len(cxx))
    ctt = ctt + la.ridge(ctt, reg_t) * np.eye(len(ctt))
    lhs = cxt @ np.linalg.solve(ctt, cxt.T)
    eta = sla.eigh(lhs, cxx, eigvals_only=True)[::-1]
    return np.sqrt(np.clip(eta[: min(x.shape[1], t.shape[1])], 0.0, None))


def test_cca_agrees_with_scikit_learn_on_leading_pairs():
    x, t, _ = planted_views(n=1500, seed=1)
    sol = la.regularized_cca(centred(x), centred(t), 0.0, 0.0, dim=2)
    ref = SklearnCCA(n_components=2, max_iter=2000, tol=1e-12).fit(x, t)
    xs, ts = ref.transform(x, t)
    ref_corr = [np.corrcoef(xs[:, i], ts[:, i])[0, 1] for i in range(2)]
    np.testing.assert_allclose(ref_corr, sol.correlations, atol=1e-4)
    # same directions up to sign and scale
    u = centred(x) @ sol.weights_x
    for i in range(2):
        assert abs(np.corrcoef(u[:, i], xs[:, i])[0, 1]) > 0.9999


def test_regularisation_limits():
    x, t, _ = planted_views(n=800, seed=2)
    xc, tc = centred(x), centred(t)
    exact = la.regularized_cca(xc, tc, 0.0, 0.0).correlations
    tiny = la.regularized_cca(xc, tc, 1e-12, 1e-12).correlations
    np.testing.assert_allclose(tiny, exact, atol=1e-9)
    # regularised direct solver agrees for any ridge
    np.testing.assert_allclose(
        la.regularized_cca(xc, tc, 0.3, 0.05).correlations,
        direct_cca(xc, tc, 0.3, 0.05),
        atol=1e-9,
    )
    # more ridge -> smaller regularised correlations
    values = [la.regularized_cca(xc, tc, r, r).correlations[0] for r in (0, 1e-3, 1e-1, 10, 1e3)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    # infinite ridge: directions -> PLS (SVD of the cross-covariance), rho * lambda -> sigma
    big = la.regularized_cca(xc, tc, 1e8, 1e8)
    cxt = xc.T @ tc / len(xc)
    a, s, bt = np.linalg.svd(cxt, full_matrices=False)
    wx = big.weights_x / np.linalg.norm(big.weights_x, axis=0)
    np.testing.assert_allclose(np.abs(np.sum(wx * a[:, : wx.shape[1]], axis=0)), 1.0, atol=1e-6)
    scale = np.sqrt(big.ridge_x * big.ridge_t)
    np.testing.assert_allclose(big.correlations * scale, s[: len(big.correlations)], rtol=1e-6)


def test_unregularised_singular_view_is_a_clear_error():
    x, t, _ = planted_views(n=200)
    t = np.hstack([t, t[:, :1]])  # collinear column
    with pytest.raises(InvalidInputError, match="reg_t"):
        la.regularized_cca(centred(x), centred(t), 0.0, 0.0)


# ------------------------------------------------------------------------------- KCCA
def test_linear_kernel_full_rank_kcca_equals_linear_cca():
    data = labelled_set(n=200, dim=8, seed=3)
    common = dict(features="feat", normalize=None, reg_x=1e-3, reg_t=1e-2)
    cca = create_annotator("cca", **common).fit(data)
    kcca = create_annotator("kcca", kernel="linear", n_landmarks=200, **common).fit(data)
    np.testing.assert_allclose(kcca.correlations_, cca.correlations_, atol=1e-7)
    np.testing.assert_allclose(np.abs(kcca.transform(data)), np.abs(cca.transform(data)), atol=1e-6)
    np.testing.assert_allclose(kcca.scores(data), cca.scores(data), atol=1e-5)


def _exact_kcca_correlations(x, t, kernel, gamma, reg_x, reg_t):
    """Regularised KCCA (Eq. 3) with the full centred n x n kernel, primal in K^1/2."""
    n = len(x)
    k = la.kernel_matrix(kernel, x, x, gamma)
    h = np.eye(n) - 1.0 / n
    lam, vec = sla.eigh(h @ k @ h)
    keep = lam > 1e-10 * lam[-1]
    phi = vec[:, keep] * np.sqrt(lam[keep])  # phi phi^T = centred kernel
    return la.regularized_cca(phi, centred(t), reg_x, reg_t).correlations


@pytest.mark.integration
def test_nystroem_kcca_converges_to_exact_kcca():
    data = labelled_set(n=240, dim=10, seed=4, nonneg=True)
    x = data.features["feat"].astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = data.labels.toarray().astype(np.float64)

    def fitted(m, gamma=None):
        return create_annotator(
            "kcca", features="feat", kernel="chi2", n_landmarks=m, gamma=gamma, reg_x=1e-2,
            reg_t=1e-2,
        ).fit(data)  # fmt: skip

    full = fitted(240)
    exact = _exact_kcca_correlations(x, t, "chi2", full.gamma_, 1e-2, 1e-2)
    np.testing.assert_allclose(full.correlations_, exact[: len(full.correlations_)], atol=1e-6)
    # same kernel width for every m; error shrinks as landmarks are added
    errors = [
        np.abs(fitted(m, full.gamma_).correlations_ - full.correlations_).max()
        for m in (8, 30, 120, 200)
    ]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.01, errors


def test_kcca_kernel_choice_and_chi2_validation():
    data = labelled_set(n=80, seed=5)  # has negative features
    model = create_annotator("kcca", features="feat", n_landmarks=30).fit(data)
    assert model.image_map_ == "rbf" and model.gamma_ > 0
    with pytest.raises(InvalidInputError, match="non-negative"):
        create_annotator("kcca", features="feat", kernel="chi2").fit(data)
    positive = labelled_set(n=80, seed=5, nonneg=True)
    model = create_annotator("kcca", features="feat", n_landmarks=30).fit(positive)
    assert model.image_map_ == "chi2" and model.landmarks_.shape == (30, 12)


def test_chi2_distances_match_definition():
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 7)), rng.random((4, 7))
    a[0, :3] = b[1, :3] = 0.0
    expected = np.array(
        [
            [np.sum(np.divide((u - v) ** 2, u + v, out=np.zeros(7), where=u + v > 0)) for v in b]
            for u in a
        ]
    )
    np.testing.assert_allclose(la.chi2_distances(a, b), expected, atol=1e-12)


# ---------------------------------------------------------------------------- scoring
def _hand_case():
    """Five training items, one test item, and a hand-made distance row."""
    vocab = Vocabulary(["a", "b", "c"])
    label_sets = [[0, 1], [1], [2], [0], [0, 2]]
    rng = np.random.default_rng(0)
    train = AnnotationSet(
        name="hand",
        item_ids=list("01234"),
        vocabulary=vocab,
        labels=multi_hot(label_sets, 3),
        features={"feat": rng.standard_normal((5, 3)).astype(np.float32)},
    )
    test = train.subset([0])
    dist = np.array([[0.3, 0.1, 0.9, 0.5, 0.6]], dtype=np.float32)
    return train, test, dist


@pytest.mark.parametrize(
    ("k", "vote", "expected"),
    [
        # clusters a = {0, 3, 4}, b = {0, 1}, c = {2, 4}
        # k=1: nearest a -> 0 (0.3), b -> 1 (0.1), c -> 4 (0.6); N = {0, 1, 4}
        (1, "label", {"a": [0.3], "b": [0.1], "c": [0.6]}),
        (1, "neighbours", {"a": [0.3, 0.6], "b": [0.3, 0.1], "c": [0.6]}),
        # k=2: a -> {0, 3}, b -> {0, 1}, c -> {4, 2}; N = all five
        (2, "label", {"a": [0.3, 0.5], "b": [0.3, 0.1], "c": [0.6, 0.9]}),
        (2, "neighbours", {"a": [0.3, 0.5, 0.6], "b": [0.3, 0.1], "c": [0.9, 0.6]}),
    ],
)
def test_cca_knn_votes_on_a_hand_built_case(k, vote, expected):
    train, test, dist = _hand_case()
    model = create_annotator("cca_knn", features="feat", k=k, vote=vote, sigma=0.5).fit(train)
    model._distance_blocks = lambda inputs: iter([(0, 1, dist)])
    scores = model.scores(test)[0]
    want = [sum(np.exp(-d / 0.5) for d in expected[w]) for w in "abc"]
    np.testing.assert_allclose(scores, want, rtol=1e-6)


def test_cca_transfer_scores_follow_the_greedy_procedure():
    train, test, dist = _hand_case()
    model = create_annotator("cca", features="feat").fit(train)
    model._distance_blocks = lambda inputs: iter([(0, 1, dist)])
    # nearest item 1 gives b; next item 0 gives a (b already); then item 3 (a), 4 gives c
    chosen = model.annotate(test, TopK(3))[0]
    assert [label for label, _ in chosen] == ["b", "a", "c"]
    # labels of the same neighbour are ranked by training frequency: a (3) before c (2)
    model._distance_blocks = lambda inputs: iter([(0, 1, np.array([[0.9, 0.9, 0.9, 0.9, 0.05]]))])
    assert [label for label, _ in model.annotate(test, TopK(2))[0]] == ["a", "c"]


def test_cca_knn_matches_brute_force_on_real_projections():
    data = labelled_set(n=150, seed=6)
    train, test = data.subset(range(100)), data.subset(range(100, 150))
    model = create_annotator("cca_knn", features="feat", k=3, sigma=0.7).fit(train)
    q = la.prepare_rows(model.transform(test), "correlation").astype(np.float64)
    ref = model.reference_.astype(np.float64)
    y = train.labels.toarray()
    expected = np.zeros((50, y.shape[1]))
    for i in range(50):
        d = 1 - ref @ q[i]
        neighbourhood = set()
        for w in range(y.shape[1]):
            members = np.flatnonzero(y[:, w])
            neighbourhood |= set(members[np.argsort(d[members], kind="stable")[:3]].tolist())
        for j in neighbourhood:
            expected[i] += np.exp(-d[j] / 0.7) * y[j]
    np.testing.assert_allclose(model.scores(test), expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- API and persistence
MODELS = [
    ("cca", {}),
    ("cca", {"method": "label_distance", "match": "image", "distance": "cosine"}),
    ("kcca", {"n_landmarks": 50}),
    ("cca_knn", {"k": 3}),
    ("cca_knn", {"base": "kcca", "n_landmarks": 40, "vote": "label"}),
]


@pytest.mark.parametrize(("name", "config"), MODELS)
def test_save_load_round_trip_gives_identical_scores(name, config, tmp_path):
    data = labelled_set(n=120, seed=7, nonneg=True)
    model = create_annotator(name, features="feat", dim=4, **config).fit(data)
    model.save(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model"] == name and saved["config"]["features"] == "feat"
    loaded = Annotator.load(tmp_path)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.scores(data), model.scores(data))
    assert loaded.annotate(data)[:5] == model.annotate(data)[:5]


def test_registered_unfitted_and_missing_features_errors():
    assert {"cca", "kcca", "cca_knn"} <= set(available_annotators())
    data = labelled_set(n=40)
    with pytest.raises(NotFittedError, match="fit"):
        create_annotator("cca_knn", features="feat").scores(data)
    with pytest.raises(InvalidInputError, match="'feat'") as info:
        create_annotator("cca").fit(data)  # default key efficientnet_lite2 is absent
    assert "efficientnet_lite2" in str(info.value)
    model = create_annotator("cca", features="feat").fit(data)
    other = data.subset(range(5))
    other.features = {"other": np.zeros((5, 12), np.float32)}
    with pytest.raises(InvalidInputError, match="'other'"):
        model.scores(other)
    other.features = {"feat": np.zeros((5, 3), np.float32)}
    with pytest.raises(InvalidInputError, match="12 columns"):
        model.scores(other)


@pytest.mark.parametrize(
    ("name", "config", "argument"),
    [
        ("cca", {"reg_x": -1.0}, "reg_x"),
        ("cca", {"dim": 0}, "dim"),
        ("cca", {"match": "words"}, "match"),
        ("kcca", {"kernel": "poly"}, "kernel"),
        ("cca_knn", {"k": 0}, "k"),
        ("cca_knn", {"base": "pca"}, "base"),
        ("cca_knn", {"sigma": 0}, "sigma"),
    ],
)
def test_invalid_configuration_is_rejected(name, config, argument):
    with pytest.raises(InvalidInputError, match=argument):
        create_annotator(name, **config)


def test_numpy_hyperparameters_become_json_values():
    model = create_annotator("cca_knn", k=np.int64(4), sigma=np.float32(0.5), dim=np.int32(3))
    assert json.dumps(model.get_config())
    assert type(model.k) is int and type(model.dim) is int and type(model.sigma) is float


def test_word_embedding_text_view_from_npy(tmp_path):
    data = labelled_set(n=100, seed=8)
    vectors = np.random.default_rng(0).standard_normal((len(data.vocabulary) + 2, 5))
    np.save(tmp_path / "vec.npy", vectors)
    words = tmp_path / "words.txt"
    words.write_text("\n".join(reversed(data.vocabulary.names)) + "\n")
    matrix, summary = label_embedding_matrix(
        f"npy:{tmp_path / 'vec.npy'}?words={words}", data.vocabulary
    )
    np.testing.assert_array_equal(matrix, vectors[: len(data.vocabulary)][::-1])
    assert "6/6" in summary
    with pytest.raises(InvalidInputError, match="words="):
        label_embedding_matrix(f"npy:{tmp_path / 'vec.npy'}", data.vocabulary)
    spec = f"npy:{tmp_path / 'vec.npy'}?words={words}"
    model = create_annotator("cca_knn", features="feat", embedding=spec).fit(data)
    assert model.text_view_.startswith("W2V") and model.label_embeddings_.shape == (6, 5)
    # text view = mean of the labels' vectors
    first = data.labels[0].indices
    t = model._text_view(data.labels[:1])
    np.testing.assert_allclose(t[0], matrix[first].mean(axis=0), atol=1e-6)
    model.save(tmp_path / "m")
    loaded = Annotator.load(tmp_path / "m")  # the npy file is not needed any more
    (tmp_path / "vec.npy").unlink()
    np.testing.assert_array_equal(loaded.scores(data), model.scores(data))


def test_labels_without_vectors_warn_and_get_zero_rows(tmp_path):
    vocab = Vocabulary(["sky", "sea", "yeti"])
    np.save(tmp_path / "vec.npy", np.ones((2, 3)))
    (tmp_path / "words.txt").write_text("sea\nsky\n")
    with pytest.warns(UserWarning, match="1 of 3 labels have no vector"):
        matrix, _ = label_embedding_matrix(
            f"npy:{tmp_path / 'vec.npy'}?words={tmp_path / 'words.txt'}", vocab
        )
    assert matrix[2].tolist() == [0.0, 0.0, 0.0] and matrix[0].tolist() == [1.0, 1.0, 1.0]


# -------------------------------------------------------------------------------- CV
@pytest.mark.integration
def test_cross_validation_helper():
    data = labelled_set(n=240, seed=10)
    assert parameter_grid({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert len(parameter_grid([{"a": [1]}, {"b": [2, 3]}])) == 3
    folds = cv_folds(10, 3, seed=1)
    assert sorted(np.concatenate([held for _, held in folds]).tolist()) == list(range(10))
    assert all(len(np.intersect1d(fit, held)) == 0 for fit, held in folds)

    def factory(**params):
        return create_annotator("cca_knn", features="feat", **params)

    grid = {"reg_x": [1e-3, 1e-1], "k": [1, 10], "sigma": [0.05, 1.0]}
    result = select_by_cv(factory, grid, data, metric="O-F1")
    assert result.metric == "O-F1" and len(result.results) == 8
    # sharing one fit per fold across scoring-only parameters changes nothing
    shared = select_by_cv(factory, grid, data, metric="O-F1", score_only=("k", "sigma"))
    assert [r["folds"] for r in shared.results] == [r["folds"] for r in result.results]
    assert shared.best_params == result.best_params
    assert result.best_score == max(r["mean"] for r in result.results)
    assert result.best_params in [r["params"] for r in result.results]
    loss = select_by_cv(factory, {"k": [1, 10]}, data, metric="hamming_loss", decoder=TopK(2))
    assert not loss.higher_is_better
    assert loss.best_score == min(r["mean"] for r in loss.results)
    with pytest.raises(InvalidInputError, match="metric"):
        select_by_cv(factory, {"k": [1]}, data, metric="accuracy")


# ----------------------------------------------------------------------- real data
@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("cca", {}),
        ("kcca", {"n_landmarks": 500}),
        ("cca_knn", {}),
        ("cca_knn", {"base": "kcca", "n_landmarks": 500}),
    ],
)
def test_models_beat_the_label_prior_on_mulan_scene(scene, name, config):
    train, test = scene
    decoder = TopK(2)
    prior = create_annotator("prior").fit(train)
    baseline = overall_f1_score(test.labels, decoder.decode(prior.scores(test)))
    model = create_annotator(name, features="arff", **config).fit(train)
    f1 = overall_f1_score(test.labels, decoder.decode(model.scores(test)))
    assert f1 > baseline + 0.25, (f1, baseline)


def test_corel5k_glove300_rows_follow_the_vocabulary_file(shared_data):
    split = shared_data / "corel5k" / "split260"
    vocab = Vocabulary(
        w for w in (split / "corel5k_vocabulary.txt").read_text().splitlines() if w.strip()
    )
    raw = np.load(split / "vocabulary_glove300.npy")
    assert raw.shape == (262, 300) and len(vocab) == 260
    spec = f"npy:{split / 'vocabulary_glove300.npy'}?words={split / 'corel5k_vocabulary.txt'}"
    matrix, _ = label_embedding_matrix(spec, vocab)
    np.testing.assert_array_equal(matrix, raw[:260])
