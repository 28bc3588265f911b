"""Cross-validated model selection: shared fits for score-only parameters change nothing."""

import numpy as np

from phototag.data import from_label_sets
from phototag.evaluation.model_selection import select_by_cv
from phototag.models import create_annotator


def test_score_only_parameters_share_a_fit_with_identical_results():
    rng = np.random.default_rng(3)
    words = ["sky", "sea", "cat", "cup", "tree"]
    train = from_label_sets(
        "t",
        [f"i{i}" for i in range(60)],
        [list(rng.choice(words, 2, replace=False)) for _ in range(60)],
    )
    train.features["f"] = rng.random((60, 6), dtype=np.float32)

    def factory(**params):
        return create_annotator("jec", features="f", **params)

    grid = {"k": [1, 3, 7]}
    shared = select_by_cv(factory, grid, train, metric="map", score_only=["k"])
    separate = select_by_cv(factory, grid, train, metric="map")
    assert [r["folds"] for r in shared.results] == [r["folds"] for r in separate.results]
    assert len({tuple(r["folds"]) for r in shared.results}) == 3  # k really changed scores
    assert shared.best_params == separate.best_params
