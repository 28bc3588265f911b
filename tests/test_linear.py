"""The linear classifier's losses (hand-computed cases, finite differences, WARP's sampling
distribution) and its presets, the M3 paper's CNN + logistic / softmax / WARP baselines
(fits, scores, persistence, configuration)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from phototag.data import from_label_sets
from phototag.errors import InvalidInputError
from phototag.models import Annotator, create_annotator
from phototag.models.linear import LinearAnnotator
from phototag.models.linear.losses import (
    asymmetric_loss,
    logistic_loss,
    softmax_loss,
    warp_loss,
    warp_rank_weights,
)

PRESETS = {"linear": "asymmetric", "cnn_logistic": "logistic", "cnn_softmax": "softmax",
           "cnn_warp": "warp"}  # fmt: skip


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------- losses
def test_logistic_loss_hand_computed():
    ln3 = math.log(3)
    logits = torch.tensor([[0.0, ln3], [-ln3, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # item 1: -log s(0) - log(1 - s(ln 3)) = ln 2 + ln 4; item 2: ln(4/3) + ln 2
    expected = (math.log(2) + math.log(4) + math.log(4 / 3) + math.log(2)) / 2
    assert logistic_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_softmax_loss_targets_are_shares_of_the_labels():
    logits = torch.tensor([[0.0, 0.0, math.log(2)], [1.0, 2.0, 3.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    loss = softmax_loss(logits, targets)
    # softmax of item 1 is (1/4, 1/4, 1/2), its target (1/2, 0, 1/2):
    # -(1/2 log 1/4 + 1/2 log 1/2) = 1.5 ln 2; item 2 has no labels and costs nothing
    assert loss.item() == pytest.approx(1.5 * math.log(2) / 2, rel=1e-6)
    loss.backward()
    # d/dz of the mean: (softmax - target) / n for item 1, nothing for item 2
    expected = torch.tensor([[-0.25, 0.25, 0.0], [0.0, 0.0, 0.0]]) / 2
    assert torch.allclose(logits.grad, expected, atol=1e-7)


def test_warp_rank_weights_are_harmonic_numbers():
    assert warp_rank_weights(4).tolist() == pytest.approx([0.0, 1.0, 1.5, 11 / 6])


@pytest.mark.parametrize("seed", range(5))
def test_warp_loss_when_every_negative_violates(seed):
    # 1 item, 4 labels: the positive scores 1, every negative 0.5, so each draw violates
    # by 1 - 1 + 0.5 = 0.5; the first draw does (N = 1), rank floor(3 / 1) = 3,
    # weight L(3) = 1 + 1/2 + 1/3 = 11/6, whichever negative the seed draws
    logits = torch.tensor([[1.0, 0.5, 0.5, 0.5]])
    targets = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    loss = warp_loss(logits, targets, generator=seeded(seed))
    assert loss.item() == pytest.approx(11 / 6 * 0.5)


def test_warp_loss_is_zero_beyond_the_margin_and_without_pairs():
    targets = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert warp_loss(torch.tensor([[3.0, 1.9, 0.0, -2.0]]), targets).item() == 0.0
    no_pairs = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    logits = torch.zeros(2, 4, requires_grad=True)
    loss = warp_loss(logits, no_pairs)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad.abs().sum() == 0


def test_warp_sampling_follows_the_original_distribution():
    # 5 labels, positives {0, 1}, negatives {2, 3, 4}; only label 2 violates for
    # positive 0 (margin 1 - 1 + 0.5 = 0.5), none for positive 1 (scored 3). Draws are
    # uniform over the 3 negatives, so the first violation comes at draw N = n with
    # probability (2/3)^(n-1) / 3 for n <= L - 1 = 4, with rank floor(4 / N) = 4, 2, 1, 1
    # and weight L(rank) = 25/12, 3/2, 1, 1. Expected loss:
    # 0.5 * (25/36 + 2/9 * 3/2 + 4/27 + 8/81) = 413/648.
    n = 30_000
    logits = torch.tensor([[1.0, 3.0, 0.5, -1.0, -1.0]]).repeat(n, 1)
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0]]).repeat(n, 1)
    loss = warp_loss(logits, targets, generator=seeded(0))
    assert loss.item() == pytest.approx(413 / 648, abs=0.01)  # 5 standard errors
    # counting over the 3 negatives instead (rank floor(3 / N), at most 3 draws): 53/108


@pytest.mark.parametrize(
    "loss",
    [
        lambda z, y: asymmetric_loss(z, y, gamma_neg=2.0, clip=0.05),
        lambda z, y: warp_loss(z, y, generator=seeded(3)),
    ],
    ids=["asymmetric", "warp"],
)
def test_hand_written_losses_match_finite_differences(loss):
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(0, 1.5, (4, 6)), requires_grad=True)
    targets = torch.tensor((rng.uniform(size=(4, 6)) < 0.4).astype(np.float64))
    assert loss(logits, targets).item() > 0
    assert torch.autograd.gradcheck(lambda z: loss(z, targets), (logits,), eps=1e-6)


# ------------------------------------------------------------------------ presets
def clusters(n: int, seed: int, name: str):
    """Four equally common words, one per cluster of 8-d features (noise 1, centres 2.5
    apart along the axes): a word-frequency guess or a model that does not learn gets
    a top-1 accuracy of 1/4."""
    rng = np.random.default_rng(seed)
    words = ["sky", "sea", "tree", "car"]
    kinds = np.arange(n) % 4
    x = (2.5 * np.eye(8)[kinds] + rng.standard_normal((n, 8))).astype(np.float32)
    labels = [[words[k]] for k in kinds]
    return from_label_sets(name, [f"{name}{i}" for i in range(n)], labels, features={"f": x})


def top1_accuracy(model: Annotator, data) -> float:
    best = model.scores(data).argmax(axis=1)
    return float(np.mean(data.labels.toarray()[np.arange(data.n_items), best]))


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_learns_separable_words(name, tmp_path):
    train, test = clusters(400, 0, "train"), clusters(400, 1, "test")
    model = create_annotator(name, features="f", epochs=15, lr=1e-2).fit(train)
    assert model.loss == PRESETS[name]
    accuracy = top1_accuracy(model, test)
    assert accuracy > 0.85, accuracy  # the Bayes rate is about 0.93, chance 0.25
    scores = model.scores(test)
    if name == "cnn_softmax":
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    elif name != "cnn_warp":
        assert scores.min() >= 0 and scores.max() <= 1
    again = create_annotator(name, features="f", epochs=15, lr=1e-2).fit(train)
    np.testing.assert_array_equal(again.scores(test), scores)  # seeded order and draws
    loaded = Annotator.load(model.save(tmp_path / name))
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    np.testing.assert_allclose(loaded.scores(test), scores, rtol=1e-6)


def test_presets_are_the_linear_classifier_with_another_default_loss():
    assert create_annotator("linear").loss == "asymmetric"
    warp = create_annotator("cnn_warp", epochs=3)
    assert isinstance(warp, LinearAnnotator) and warp.name == "cnn_warp"
    assert create_annotator("cnn_warp", loss="softmax").loss == "softmax"
    with pytest.raises(InvalidInputError, match="loss"):
        create_annotator("linear", loss="hinge")


def test_config_is_the_constructor_without_runtime_settings():
    config = create_annotator("cnn_softmax").get_config()
    assert list(config) == ["features", "epochs", "lr", "weight_decay", "batch_size", "loss",
                            "gamma_neg", "clip", "seed"]  # fmt: skip
    assert not {"device", "accelerator", "workers", "verbose", "progress"} & set(config)


def test_a_linear_model_saved_before_the_loss_choice_still_loads(tmp_path):
    train = clusters(80, 0, "train")
    model = create_annotator("linear", features="f", epochs=2).fit(train)
    folder = model.save(tmp_path / "old")
    config = json.loads((folder / "config.json").read_text())
    del config["config"]["loss"]  # as written before `loss` existed
    (folder / "config.json").write_text(json.dumps(config))
    loaded = Annotator.load(folder)
    assert loaded.loss == "asymmetric"
    np.testing.assert_array_equal(loaded.scores(train), model.scores(train))
