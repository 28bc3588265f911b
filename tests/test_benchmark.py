import numpy as np

from phototag.benchmark import PUBLISHED_COREL5K, markdown_table, run_benchmark
from phototag.data import Vocabulary, from_label_sets


def test_run_benchmark_and_table():
    vocab = Vocabulary(["a", "b", "c"])
    train = from_label_sets("t", list("wxyz"), [["a"], ["a", "b"], ["a"], ["c"]], vocabulary=vocab)
    test = from_label_sets("t", list("pq"), [["a"], ["b"]], vocabulary=vocab)
    rows = run_benchmark(train, test, {"prior": {"smoothing": 0.0}}, k=1)
    (row,) = rows
    # the prior predicts "a" for both test images: a is right once, b and c are never predicted
    assert row.precision == np.float64(0.5 / 2)  # C-P over the 2 labels present in test
    assert row.recall == 0.5 and row.n_plus == 1
    table = markdown_table(rows, "toy")
    assert "**prior** (ours) | toy | 25.0 | 50.0" in table
    assert table.count("(published)") == len(PUBLISHED_COREL5K)
