"""The M3 model (`m3`): stage maps + user tags in, scores + label quantities out, trained
in Algorithm 1's stages; end to end on a NUS-WIDE fixture in the official layout."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from nuswide_fixture import make_nuswide_fixture

from phototag.data import Vocabulary, from_label_sets
from phototag.data.inputs import MapSpec, ModelInputs
from phototag.errors import InvalidInputError
from phototag.evaluation.decoding import Quantity, TopK
from phototag.models import Annotator, create_annotator
from phototag.models.m3 import M3Annotator

STAGES = ["s1", "s2", "s3"]
SHAPES = {"s1": (4, 8, 8), "s2": (6, 4, 4), "s3": (8, 2, 2)}
FAST = dict(encoder="toy", stages=STAGES, epochs=3, batch_size=8, validation_fraction=0.0,
            visual_lr=0.05, textual_lr=0.01, tag_hidden=[16])  # fmt: skip


def synthetic(n: int = 48, seed: int = 0):
    """Items with 1-3 of 4 labels; the maps carry the labels (channel j lights up for
    label j at every scale), user tags are the label words."""
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c", "d"]
    sets = [sorted(rng.choice(names, rng.integers(1, 4), replace=False)) for _ in range(n)]
    data = from_label_sets("toy", [str(i) for i in range(n)], sets, Vocabulary(names))
    dense = data.labels.toarray().astype(np.float32)
    for stage, (c, h, w) in SHAPES.items():
        maps = rng.normal(0, 0.1, (n, c, h, w)).astype(np.float32)
        maps[:, :4] += dense[:, :, None, None]
        data.maps[MapSpec("toy", stage).key] = maps.astype(np.float16)
    data.tag_vocabulary = Vocabulary(["a", "b", "c", "d", "rare"])
    tags = np.hstack([dense, np.zeros((n, 1), np.float32)])
    tags[0, 4] = 1
    data.user_tags = sp.csr_matrix(tags.astype(bool))
    return data


def test_inputs_are_the_stage_maps_and_the_user_tags_with_tags():
    plain = M3Annotator(**FAST)
    assert plain.required_inputs() == ModelInputs(maps=tuple(MapSpec("toy", s) for s in STAGES))
    assert M3Annotator(**FAST, tags=True).required_inputs().user_tags
    lite2 = M3Annotator().required_inputs().maps  # the encoder's five scales by default
    assert [s.stage for s in lite2] == ["stage1", "stage2", "stage3", "stage5", "head"]


@pytest.mark.parametrize("tags", [False, True])
def test_fit_predicts_scores_and_quantities_and_round_trips(tags, tmp_path):
    data = synthetic()
    model = M3Annotator(**FAST, tags=tags, min_tag_count=2).fit(data)
    assert [h["phase"] for h in model.history_][::3] == (
        ["multiscale", "tags", "heads"] if tags else ["multiscale", "heads"]
    )
    prediction = model.predict(data)
    assert prediction.scores.shape == (48, 4) and prediction.quantities.shape == (48,)
    assert isinstance(model.decoder_, Quantity)
    top1 = prediction.scores.argmax(axis=1)
    assert data.labels.toarray()[np.arange(48), top1].mean() > 0.9  # the maps tell the labels
    if tags:
        assert list(model.tag_vocabulary_) == ["a", "b", "c", "d"]  # "rare" seen once
    loaded = Annotator.load(model.save(tmp_path / "m3"))
    again = loaded.predict(data)
    np.testing.assert_allclose(again.scores, prediction.scores, atol=1e-6)
    np.testing.assert_allclose(again.quantities, prediction.quantities, atol=1e-5)


def test_label_quantities_are_learned():
    data = synthetic(n=96)
    model = M3Annotator(**{**FAST, "epochs": 20, "textual_lr": 0.01}).fit(data)
    counts = data.label_counts()
    quantities = model.predict(data).quantities
    error = np.abs(np.round(quantities) - counts).mean()
    baseline = np.abs(np.bincount(counts).argmax() - counts).mean()
    assert error < baseline  # better than always predicting the most common quantity


def test_one_stage_is_the_plain_cnn_and_top_k_without_lqp():
    model = M3Annotator(**{**FAST, "stages": ["s3"], "lqp": False}).fit(synthetic())
    assert isinstance(model.decoder_, TopK) and len(model.network_.fusion.blocks) == 0


def test_clear_errors():
    data = synthetic()
    with pytest.raises(InvalidInputError, match=r"maps\['toy@s1'\]"):
        M3Annotator(**FAST).fit(from_label_sets("x", ["1"], [["a"]]))
    data.user_tags = None
    data.tag_vocabulary = None
    with pytest.raises(InvalidInputError, match="user_tags"):
        M3Annotator(**FAST, tags=True).fit(data)
    for bad in ({"stages": "s1"}, {"tags": 1}, {"epochs": 0}, {"device": "tpu"}):
        with pytest.raises(InvalidInputError):
            create_annotator("m3", **bad)


@pytest.mark.integration
def test_end_to_end_on_nuswide_images_tags_and_lqp(tmp_path, capsys):
    """The complete model (multi-scale maps of real JPEGs + user tags + LQP), from the
    official NUS-WIDE layout through the CLI's train and evaluate."""
    import json

    from phototag.app.cli import main

    fixture = make_nuswide_fixture(tmp_path / "nuswide", n_train=16, n_test=6)
    out = tmp_path / "model"
    params = ["--param", "encoder=efficientnet_lite0", "--param", "tags=true",
              "--param", "epochs=2", "--param", "batch_size=8", "--param", "tag_hidden=[32]",
              "--param", "validation_fraction=0", "--param", "textual_lr=0.01"]  # fmt: skip
    store = ["--store", str(tmp_path / "store"), "--runtime", "torch", "--workers", "0"]
    assert main(["train", "--dataset", fixture.spec, "--model", "m3", *params,
                 "--out", str(out), *store]) == 0  # fmt: skip
    assert main(["evaluate", "--dataset", fixture.spec, "--model", str(out), "--split", "test",
                 "--protocol", "quantity", "--json", *store]) == 0  # fmt: skip
    metrics = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert 0 <= metrics["O-F1"] <= 1 and metrics["N+"] >= 0
    model = Annotator.load(out)
    assert isinstance(model, M3Annotator) and model.tags and len(model.tag_vocabulary_) > 0
    assert [s for s in model.stages_] == ["stage1", "stage2", "stage3", "stage5", "head"]


def test_evaluate_decodes_with_the_predicted_quantities():
    from phototag.evaluation.evaluate import evaluate_model

    data = synthetic(n=96)
    model = M3Annotator(**{**FAST, "epochs": 20, "textual_lr": 0.01}).fit(data)
    by_quantity = evaluate_model(model, data, protocol="quantity").metrics
    top3 = evaluate_model(model, data, protocol="top3").metrics
    assert by_quantity["O-F1"] > top3["O-F1"]  # 1-3 labels per item: fixed top-3 over-tags


def test_tags_alone_need_no_maps(tmp_path):
    data = synthetic()
    data.maps = {}
    model = M3Annotator(
        **{**FAST, "stages": [], "epochs": 10, "textual_lr": 0.05, "quantity_lr": 0.01}, tags=True
    )
    model.fit(data)
    assert model.required_inputs() == ModelInputs(user_tags=True)
    assert model.network_.fusion is None
    assert list(dict.fromkeys(h["phase"] for h in model.history_)) == ["tags", "heads"]
    top1 = model.predict(data).scores.argmax(axis=1)
    assert data.labels.toarray()[np.arange(48), top1].mean() > 0.9  # the tags are the labels
    np.testing.assert_array_equal(
        Annotator.load(model.save(tmp_path / "tags")).scores(data), model.scores(data)
    )
    with pytest.raises(InvalidInputError, match="tags=True"):
        M3Annotator(stages=[])
