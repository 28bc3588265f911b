import numpy as np

from phototag.data import Vocabulary, from_label_sets
from phototag.evaluation.benchmark import (
    PUBLISHED_COREL5K,
    ModelSpec,
    markdown_table,
    run_benchmark,
)
from phototag.models import create_annotator


def test_run_benchmark_and_table():
    vocab = Vocabulary(["a", "b", "c"])
    train = from_label_sets("t", list("wxyz"), [["a"], ["a", "b"], ["a"], ["c"]], vocabulary=vocab)
    test = from_label_sets("t", list("pq"), [["a"], ["b"]], vocabulary=vocab)
    rows = run_benchmark(train, test, {"prior": {"smoothing": 0.0}}, k=1, factory=create_annotator)
    (row,) = rows
    # the prior predicts "a" for both test images: a is right once, b and c are never predicted
    assert row.precision == np.float64(0.5 / 2)  # C-P over the 2 labels present in test
    assert row.recall == 0.5 and row.n_plus == 1
    table = markdown_table(rows)
    assert "**prior** (ours) |  | 25.0 | 50.0" in table
    assert table.count("(published)") == len(PUBLISHED_COREL5K)


def test_cross_validation_picks_the_grid_point_on_train_only():
    rng = np.random.default_rng(0)
    vocab = Vocabulary(["a", "b"])
    # two clusters with their own label, "b" rare: ML-kNN with k=1 recovers them, with
    # k=25 (most of a fold) the majority label swamps the votes
    centers = np.array([[5.0, 0.0], [0.0, 5.0]])
    which = (rng.random(60) < 0.2).astype(int)
    labels = [["a"] if w == 0 else ["b"] for w in which]
    data = from_label_sets("t", [str(i) for i in range(60)], labels, vocabulary=vocab)
    data.features["x"] = (centers[which] + rng.normal(0, 0.5, (60, 2))).astype(np.float32)
    train, test = data.subset(np.arange(45)), data.subset(np.arange(45, 60))
    lines: list[str] = []
    spec = ModelSpec({"features": "x", "metric": "l2"}, grid={"k": [25, 1]})
    (row,) = run_benchmark(
        train, test, {"mlknn": spec}, k=1, factory=create_annotator, progress=lines.append
    )
    assert row.config == {"features": "x", "metric": "l2", "k": 1}
    assert row.f1 == 1.0 and row.cv_seconds > 0
    assert "cross-validation chose {'k': 1}" in lines[0]


def test_rows_with_descriptors_read_them_next_to_the_image_features():
    spec = ModelSpec(model="tagprop", descriptors={"hsv_hist": "chi2", "gist": "l2"})
    assert spec.with_image_features("lite").config == {
        "features": ["lite", "hsv_hist", "gist"],
        "metric": ["cosine", "chi2", "l2"],
    }
    assert ModelSpec().with_image_features("lite").config == {"features": "lite"}
    given = ModelSpec({"features": "mine"}, descriptors={"gist": "l2"})
    assert given.with_image_features("lite") is given
    rng = np.random.default_rng(0)
    vocab = Vocabulary(["a", "b"])
    data = from_label_sets("t", list("abcdefgh"), [["a"], ["b"]] * 4, vocabulary=vocab)
    data.features["x"] = rng.random((8, 3)).astype(np.float32)
    data.features["hsv_hist"] = rng.random((8, 4)).astype(np.float32)
    spec = ModelSpec({"k": 2}, model="jec", descriptors={"hsv_hist": "chi2"})
    (row,) = run_benchmark(
        data, data, {"jec+hsv": spec.with_image_features("x")}, k=1, factory=create_annotator
    )
    assert row.model == "jec+hsv" and row.features == "x + hsv_hist"
    assert "**jec+hsv** (ours) | x + hsv_hist |" in markdown_table([row])
