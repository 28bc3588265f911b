"""CNN-RNN and JVSP: label orders, teacher-forcing sequences, the diversity loss, beam
search, the JVSP equations' switches, and fitting on maps that carry the labels."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from phototag.data import Vocabulary, from_label_sets
from phototag.data.inputs import MapSpec, ModelInputs
from phototag.errors import InvalidInputError
from phototag.evaluation.decoding import OwnLabelSets
from phototag.models import Annotator
from phototag.models.recurrent import CNNRNNAnnotator, JVSPAnnotator
from phototag.models.recurrent.benchmark import (
    markdown,
    official_concepts,
    per_label,
    run_mirflickr_photos,
)
from phototag.models.recurrent.data import label_rank, ordered_labels
from phototag.models.recurrent.network import (
    IGNORE,
    JVSP,
    SequenceNetwork,
    StepOutput,
    StepState,
    beam_search,
    diversity_loss,
    label_sequences,
)

FAST = {"encoder": "toy", "stage": "head", "dim": 32, "epochs": 40, "batch_size": 16,
        "lr": 1e-2, "lr_step": 20, "dropout": 0.0, "validation_fraction": 0.0,
        "device": "cpu"}  # fmt: skip
NAMES = ["a", "b", "c", "d"]


def synthetic(n: int = 64, seed: int = 0):
    """Items with 1-3 of 4 labels; label j lights up channel j in region j of a 3 x 3
    map of 6 channels."""
    rng = np.random.default_rng(seed)
    sets = [sorted(rng.choice(NAMES, rng.integers(1, 4), replace=False)) for _ in range(n)]
    data = from_label_sets("toy", [str(i) for i in range(n)], sets, Vocabulary(NAMES))
    dense = data.labels.toarray().astype(np.float32)
    maps = rng.normal(0, 0.1, (n, 6, 9)).astype(np.float32)
    for j in range(4):
        maps[:, j, j] += 2 * dense[:, j]
    data.maps[MapSpec("toy", "head").key] = maps.reshape(n, 6, 3, 3)
    return data


def test_label_orders_sort_each_image_by_training_frequency():
    labels = sp.csr_matrix(np.array([[1, 1, 1, 0], [1, 0, 1, 0], [1, 0, 0, 1]], bool))
    frequencies = np.asarray(labels.sum(axis=0)).ravel()  # 3, 1, 2, 1
    frequent = label_rank(frequencies, "frequent_first")
    rare = label_rank(frequencies, "rare_first")
    assert ordered_labels(labels, frequent) == [[0, 2, 1], [0, 2], [0, 3]]
    assert ordered_labels(labels, rare) == [[1, 2, 0], [2, 0], [3, 0]]  # ties by index


def test_sequences_start_with_the_start_token_and_end_with_the_end_token():
    inputs, targets = label_sequences([[2, 0], [1]], end=4, start=5)
    assert inputs.tolist() == [[5, 2, 0], [5, 1, 4]]
    assert targets.tolist() == [[2, 0, 4], [1, 4, IGNORE]]


def test_diversity_loss_counts_focused_overlap_of_adjacent_valid_steps():
    attention = torch.tensor([[[0.5, 0.5, 0.0], [0.6, 0.395, 0.005], [0.0, 0.0, 1.0]]])
    valid = torch.tensor([[True, True, True]])
    # pairs (1,2): 0.5*0.6 + 0.5*0.395 (0.005 < beta is not focused); (2,3): 0
    expected = (0.5 * 0.6 + 0.5 * 0.395 + 0.0) / 2
    assert float(diversity_loss(attention, valid, 0.01)) == pytest.approx(expected)
    only_first_pair = torch.tensor([[True, True, False]])
    assert float(diversity_loss(attention, only_first_pair, 0.01)) == pytest.approx(0.4975)
    assert float(diversity_loss(attention, valid, 0.7)) == 0.0


class _Scripted(SequenceNetwork):
    """Fixed log-probabilities per step: step t scores the labels by `table[t]`."""

    def __init__(self, table: list[list[float]]) -> None:
        super().__init__()
        self.table = torch.tensor(table).log()
        self.n_labels = self.table.shape[1] - 1

    def context(self, maps):
        return (maps,)

    def initial_state(self, context):
        zeros = torch.zeros(len(context[0]), 1)
        return StepState(zeros, zeros, zeros, torch.zeros(len(context[0])))

    def step(self, context, state, previous):
        t = int(state.steps[0])
        logits = self.table[t].expand(len(previous), -1)
        return StepOutput(logits, state._replace(steps=state.steps + 1), None)


def test_beam_search_chooses_k_distinct_labels_or_stops_at_the_end_token():
    # labels 0-2 and the end token (index 3); step 2 prefers the end token
    network = _Scripted([[0.5, 0.3, 0.1, 0.1], [0.6, 0.1, 0.2, 0.1], [0.1, 0.1, 0.1, 0.7]])
    maps = torch.zeros(2, 1)
    top = beam_search(network, maps, beam=1, steps=3, stop_at_end=False)
    assert top.sequences.tolist() == [[0, 2, 1]] * 2  # never repeats label 0
    assert top.label_sets.all()
    assert np.allclose(top.scores[0].numpy(), [0.6, 0.3, 0.2])  # the best step's probability
    greedy = beam_search(network, maps, beam=1, steps=3, stop_at_end=True)
    assert greedy.sequences[0].tolist() == [0, 2, -1]  # 0.5 * 0.2 * 0.7
    ended = beam_search(network, maps, beam=3, steps=3, stop_at_end=True)
    assert ended.sequences[0].tolist() == [1, 0, -1]  # 0.3 * 0.6 * 0.7: the beam finds it
    assert ended.label_sets[0].tolist() == [True, True, False]
    # at most as many steps as labels: top-5 of 3 labels gives the 3
    assert beam_search(network, maps, beam=2, steps=5, stop_at_end=False).label_sets.all()


def test_knowledge_guidance_is_zero_at_the_first_step_and_switchable():
    torch.manual_seed(0)
    network = JVSP(channels=6, n_labels=4, dim=8, dropout=0.0).eval()
    maps, inputs = torch.randn(2, 6, 3, 3), torch.tensor([[5, 1, 2], [5, 0, 3]])
    logits, attention = network(maps, inputs)
    assert logits.shape == (2, 3, 5) and attention.shape == (2, 3, 9)
    assert torch.allclose(attention.sum(2), torch.ones(2, 3))
    with torch.no_grad():
        network.knowledge_projection.weight.mul_(3)
    changed, _ = network(maps, inputs)
    assert torch.allclose(changed[:, 0], logits[:, 0])  # K_1 = 0
    assert not torch.allclose(changed[:, 1:], logits[:, 1:])
    network.knowledge = False
    without, _ = network(maps, inputs)
    with torch.no_grad():
        network.knowledge_projection.weight.mul_(3)
    assert torch.allclose(network(maps, inputs)[0], without)
    plain = JVSP(channels=6, n_labels=4, dim=8, visual_lstm=False)
    assert plain.lstm.input_size == 8 and network.lstm.input_size == 16


def test_settings_are_checked():
    with pytest.raises(InvalidInputError, match="order"):
        JVSPAnnotator(order="random")
    with pytest.raises(InvalidInputError, match="knowledge"):
        JVSPAnnotator(knowledge="yes")  # type: ignore[arg-type]
    assert CNNRNNAnnotator().required_inputs() == ModelInputs(
        maps=(MapSpec("efficientnet_lite2", "head"),)
    )


@pytest.mark.parametrize("model_class", [JVSPAnnotator, CNNRNNAnnotator])
def test_fit_learns_label_sets_that_stop_at_the_end_and_round_trips(model_class, tmp_path):
    data = synthetic()
    model = model_class(**FAST, stop_at_end=True, order="frequent_first").fit(data)
    assert isinstance(model.decoder_, OwnLabelSets)
    prediction = model.predict(data)
    truth = data.labels.toarray()
    exact = (prediction.label_sets == truth).all(axis=1).mean()
    assert exact > 0.8, exact  # the map tells the labels, the end token their number
    ranked = np.take_along_axis(truth, np.argsort(-prediction.scores, axis=1), axis=1)
    assert ranked[:, 0].mean() > 0.9  # the per-label scores rank a true label first
    loaded = Annotator.load(model.save(tmp_path / "model"))
    again = loaded.predict(data)
    assert (again.label_sets == prediction.label_sets).all()
    assert np.allclose(again.scores, prediction.scores, atol=1e-6)
    top2 = loaded.clone(keep_state=True, stop_at_end=False, k=2).predict(data)
    assert (top2.label_sets.sum(axis=1) == 2).all()


def test_the_study_gives_mean_rows_per_model_and_renders_the_tables():
    data = synthetic(n=48)
    data.features["toy"] = data.maps[MapSpec("toy", "head").key].mean(axis=(2, 3))
    data.splits = {}
    halves = [(data.subset(range(0, 36)), data.subset(range(36, 48))),
              (data.subset(range(12, 48)), data.subset(range(0, 12)))]  # fmt: skip
    settings = {k: v for k, v in FAST.items() if k != "epochs"}
    rows = run_mirflickr_photos(halves, features="toy", epochs=2, progress=lambda _: None,
                                **settings)  # fmt: skip
    assert [r["name"] for r in rows] == ["CNN-RNN", "JVSP", "CNN+logistic"]
    assert all(r["runs"] == 2 and r["std"]["C-F1"] >= 0 for r in rows)
    corel = [{**rows[1], "small_objects": per_label(halves[0][1], np.ones((12, 4), bool), ["b"]),
              "decode_per_second": 321.0, "epochs": 2}]  # fmt: skip
    text = markdown({
        "corel5k": {"rows": corel, "command": "phototag benchmark recurrent --part corel5k"},
        "mirflickr-photos": {"rows": rows, "command": "phototag benchmark recurrent"},
    })  # fmt: skip
    assert "| CNN-RNN | " in text and " ± " in text and "| JVSP (paper) | 50.3 |" in text
    truth_b = int(halves[0][1].labels.toarray()[:, 1].sum())
    assert f"| b | {truth_b} | " in text and "JVSP 321" in text


def test_per_label_precision_and_recall_and_official_concepts():
    data = from_label_sets("toy", ["0", "1", "2"], [["a"], ["a", "b"], ["b"]],
                           Vocabulary(["a", "b", "a_r1"]))  # fmt: skip
    chosen = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]], bool)
    result = per_label(data, chosen, ["a", "b", "zebra"])
    assert result == {"a": {"precision": 1.0, "recall": 0.5, "images": 2},
                      "b": {"precision": 0.5, "recall": 0.5, "images": 2}}  # fmt: skip
    concepts = official_concepts(data)
    assert list(concepts.vocabulary) == ["a", "b"] and concepts.labels.shape == (3, 2)


def test_label_embeddings_start_from_word_vectors_where_a_label_has_one():
    torch.manual_seed(0)
    network = JVSP(channels=6, n_labels=4, dim=8, dropout=0.0)
    before = network.refine_embedding.weight.detach().clone()
    vectors = torch.randn(4, 3)
    found = torch.tensor([True, True, False, True])
    network.initialise_labels(vectors, found)
    centred = vectors[found] - vectors[found].mean(0)
    for table in (network.label_embedding, network.refine_embedding):
        rows = table.weight.detach()[:4][found]
        assert torch.allclose(rows[:, 3:], torch.zeros(3, 5))  # 3-d vectors, zero-padded
        ratio = rows[:, :3] / centred
        assert torch.allclose(ratio, ratio[0, 0].expand_as(ratio), atol=1e-5)  # one scale
    after = network.refine_embedding.weight.detach()
    assert torch.equal(after[2], before[2]) and torch.equal(after[4:], before[4:])
    wide = torch.randn(4, 20)  # more dimensions than the tables: principal directions
    network.initialise_labels(wide, torch.ones(4, dtype=torch.bool))
    gram = network.label_embedding.weight.detach()[:4] @ network.label_embedding.weight[:4].T
    centred_wide = wide - wide.mean(0)
    expected = centred_wide @ centred_wide.T
    assert torch.allclose(gram / gram[0, 0], expected / expected[0, 0], atol=1e-4)


def test_the_model_reads_its_word_embedding_spec():
    with pytest.raises(InvalidInputError, match="embedding"):
        JVSPAnnotator(embedding="")
    data = synthetic(n=16)
    settings = {**FAST, "epochs": 1, "lr": 1e-9}
    plain = JVSPAnnotator(**settings).fit(data).network_.label_embedding.weight[:4]
    glove = JVSPAnnotator(**settings, embedding="glove50").fit(data).network_.label_embedding
    assert not torch.allclose(plain, glove.weight[:4])
    # 4 labels span at most 4 principal directions of the 50-d vectors; the rest is zero
    assert glove.weight[:4, 4:].abs().max() < 1e-6
