"""Metadata neighbourhoods and the metadata paper's models (phototag.models.neighbourhood)."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp
from nuswide_fixture import make_nuswide_fixture

from phototag.data import AnnotationSet, Vocabulary
from phototag.errors import InvalidInputError
from phototag.models import create_annotator
from phototag.models.base import Annotator
from phototag.models.neighbourhood.neighbours import (
    cosine_neighbours,
    jaccard_distances,
    jaccard_neighbours,
    sample_subsets,
)
from phototag.models.neighbourhood.network import ARCHITECTURES

FAST = {"features": "f", "m": 3, "max_rank": 6, "hidden": 16, "lr": 1e-2, "epochs": 4,
        "n_samples": 4}  # fmt: skip


def _binary(rows: list[list[int]], width: int) -> sp.csr_matrix:
    dense = np.zeros((len(rows), width), np.float32)
    for i, row in enumerate(rows):
        dense[i, row] = 1
    return sp.csr_matrix(dense)


def test_jaccard_by_hand():
    # {a,b}, {a,b,c}, {c}, {d}, {}: |∩|/|∪| by hand
    tags = _binary([[0, 1], [0, 1, 2], [2], [3], []], 4)
    third, two_thirds = Fraction(1, 3), Fraction(2, 3)
    expected = 1 - np.array([[1, two_thirds, 0, 0, 0], [two_thirds, 1, third, 0, 0],
                             [0, third, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0]],
                            dtype=float)  # fmt: skip
    assert np.allclose(jaccard_distances(tags, tags), expected)
    distances, indices = jaccard_neighbours(None, tags, 2, seed=0)
    assert indices[0, 0] == 1 and distances[0, 0] == pytest.approx(1 / 3)
    assert indices[1, 0] == 0 and indices[1, 1] == 2
    assert distances[1].tolist() == pytest.approx([1 / 3, 2 / 3])
    assert (indices != np.arange(5)[:, None]).all()  # left out of its own list
    assert distances[3].tolist() == [1.0, 1.0] and (indices[3] >= 0).all()  # filled


def test_jaccard_counts_tags_outside_the_vocabulary():
    database = _binary([[0], [0, 1]], 2)
    query = _binary([[0]], 2)
    _, plain = jaccard_neighbours(query, database, 1)
    assert plain[0, 0] == 0  # {a} vs {a}: distance 0
    distances, _ = jaccard_neighbours(query, database, 2, query_sizes=np.array([3]))
    # the query has 3 tags, 1 of them known: |∩| = 1, |∪| = 3 + 1 - 1 and 3 + 2 - 1
    assert distances[0].tolist() == pytest.approx([1 - 1 / 3, 1 - 1 / 4])


def test_jaccard_against_brute_force():
    rng = np.random.default_rng(0)
    tags = sp.csr_matrix((rng.random((300, 40)) < 0.08).astype(np.float32))
    distances, indices = jaccard_neighbours(None, tags, 7, seed=3)
    full = jaccard_distances(tags, tags)
    np.fill_diagonal(full, np.inf)
    assert np.allclose(np.sort(full, axis=1)[:, :7], distances)
    assert np.allclose(full[np.arange(300)[:, None], indices], distances)
    assert (np.diff(distances, axis=1) >= 0).all()
    queries = sp.csr_matrix((rng.random((20, 40)) < 0.1).astype(np.float32))
    d, _ = jaccard_neighbours(queries, tags, 5)
    assert np.allclose(np.sort(jaccard_distances(queries, tags), axis=1)[:, :5], d)


def test_group_ties_are_random_members_of_the_group():
    groups = _binary([[i // 10] for i in range(40)], 4)
    _, indices = jaccard_neighbours(None, groups, 5, seed=1)
    assert (indices // 10 == np.arange(40)[:, None] // 10).all()
    assert len({tuple(sorted(row)) for row in indices[:10]}) > 1  # not always the first five


def test_cosine_by_hand():
    vectors = np.array([[1, 0], [1, 1], [0, 1], [-1, 0]], np.float32)
    distances, indices = cosine_neighbours(None, vectors, 2)
    assert indices[0].tolist() == [1, 2]
    assert distances[0].tolist() == pytest.approx([1 - 1 / np.sqrt(2), 1.0], abs=1e-6)
    d, i = cosine_neighbours(np.array([[0, 2]], np.float32), vectors, 1)
    assert i[0, 0] == 2 and d[0, 0] == pytest.approx(0, abs=1e-6)


def test_cosine_ivf_agrees_with_exact_search():
    """The IVF index (large databases) finds nearly the exact neighbours, leaves each
    item out of its own list and fills every slot, even with lists too small for k."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 8))
    vectors = centres[rng.integers(20, size=3000)] + 0.3 * rng.standard_normal((3000, 8))
    vectors = vectors.astype(np.float32)
    vectors[::500] = 0  # items without tags: at 0 from each other, 0.5 from the rest
    exact_d, exact_i = cosine_neighbours(None, vectors, 10, method="exact")
    ivf_d, ivf_i = cosine_neighbours(None, vectors, 10, method="ivf", nprobe=8)
    assert (ivf_i >= 0).all() and (ivf_i != np.arange(3000)[:, None]).all()
    found = (ivf_d <= exact_d[:, -1:] + 1e-5).mean()  # share within the exact k-th distance
    assert found > 0.95
    zero = np.arange(0, 3000, 500)
    assert np.array_equal(ivf_i[zero, :5], exact_i[zero, :5])  # the other zero items
    assert np.allclose(ivf_d[zero], exact_d[zero], atol=1e-6)  # then any item, at 0.5
    assert ivf_d[zero, :5].max() == 0 and ivf_d[zero, 5:].min() == pytest.approx(0.5)
    # 2 lists of about 50 items, one probed: 90 neighbours come from the exact search
    d, i = cosine_neighbours(None, vectors[:100], 90, method="ivf", nprobe=1)
    exact_d, exact_i = cosine_neighbours(None, vectors[:100], 90, method="exact")
    assert (i >= 0).all() and (i != np.arange(100)[:, None]).all()
    assert np.allclose(d, exact_d, atol=1e-5)
    q = vectors[:5] + 0.01
    assert np.array_equal(
        cosine_neighbours(q, vectors[:100], 90, method="ivf", nprobe=1)[1],
        cosine_neighbours(q, vectors[:100], 90, method="exact")[1],
    )
    with pytest.raises(InvalidInputError):
        cosine_neighbours(None, vectors, 3, method="hnsw")


def test_subsets_are_size_m_within_the_m_nearest_in_order():
    subsets = sample_subsets(500, 6, 3, 8, np.random.default_rng(0))
    assert subsets.shape == (500, 8, 3)
    assert subsets.min() >= 0 and subsets.max() < 6
    assert (np.diff(subsets, axis=2) > 0).all()  # distinct, nearest first
    counts = np.bincount(subsets.ravel(), minlength=6) / subsets.size
    assert np.allclose(counts, 1 / 6, atol=0.01)  # each of the M nearest equally likely
    assert len({tuple(s) for s in subsets.reshape(-1, 3)}) == 20  # all C(6, 3) subsets


def toy(n: int = 160, seed: int = 0, words: tuple[str, ...] | None = None) -> AnnotationSet:
    """Labels with informative tags (tag 3j marks label j), features and groups."""
    rng = np.random.default_rng(seed)
    n_labels, n_tags = 4, 12
    labels = rng.random((n, n_labels)) < 0.25
    labels[np.arange(n), rng.integers(n_labels, size=n)] = True
    tags = rng.random((n, n_tags)) < 0.05
    for j in range(n_labels):
        tags[:, 3 * j] |= labels[:, j] & (rng.random(n) < 0.8)
    features = labels @ rng.standard_normal((n_labels, 8)) + rng.standard_normal((n, 8))
    words = words or tuple(f"t{j}" for j in range(n_tags))
    return AnnotationSet(
        "toy", [f"i{i}" for i in range(n)], Vocabulary([f"l{j}" for j in range(n_labels)]),
        sp.csr_matrix(labels), tag_vocabulary=Vocabulary(words), user_tags=sp.csr_matrix(tags),
        features={"f": features.astype(np.float32)},
        metadata={"group": np.array([f"g{i % 5}" for i in range(n)])},
    )  # fmt: skip


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_each_model_fits_and_round_trips(architecture, tmp_path):
    train, test = toy(), toy(40, seed=1)
    model = create_annotator("neighbourhood", architecture=architecture, **FAST).fit(train)
    scores = model.scores(test)
    assert scores.shape == (40, 4) and np.isfinite(scores).all()
    assert 0 < len(model.history_) <= 4
    back = Annotator.load(model.save(tmp_path / "model"))
    assert np.array_equal(back.scores(test), scores)  # seeded neighbourhood samples
    assert json.loads((tmp_path / "model" / "config.json").read_text())["model"] == "neighbourhood"


def test_ltn_learns_from_tag_neighbourhoods():
    train, test = toy(400), toy(100, seed=1)
    test.features["f"] = np.zeros_like(test.features["f"])  # test photos show nothing
    settings = {**FAST, "epochs": 30, "min_epochs": 30, "validation_fraction": 0.0}
    from phototag.evaluation.metrics import label_average_precision_score

    plain = create_annotator("neighbourhood", architecture="v_only", **settings).fit(train)
    ltn = create_annotator("neighbourhood", architecture="ltn", **settings).fit(train)
    ap = [label_average_precision_score(test.labels, m.scores(test)) for m in (plain, ltn)]
    assert ap[1] > ap[0] + 0.1


def test_inputs_follow_the_encodings():
    visual = create_annotator("neighbourhood", architecture="ltn", neighbourhood="group")
    assert visual.required_inputs().metadata == ("group",)
    assert not visual.required_inputs().user_tags  # a visual model reads no tags
    joint = create_annotator("neighbourhood", architecture="ltwin", neighbourhood="group")
    assert joint.required_inputs().user_tags and joint.required_inputs().features
    tags_only = create_annotator("neighbourhood", features=None)
    assert tags_only.required_inputs().features == () and tags_only.required_inputs().user_tags


def test_group_models_need_groups_at_annotate_time():
    train = toy()
    model = create_annotator("neighbourhood", architecture="ltwin", neighbourhood="group",
                             metadata="group", **FAST).fit(train)  # fmt: skip
    test = toy(20, seed=2)
    test.metadata["group"] = np.array(["g1"] * 10 + ["unseen"] * 10)
    assert model.scores(test).shape == (20, 4)
    del test.metadata["group"]
    with pytest.raises(InvalidInputError, match="group"):
        model.scores(test)


def test_bad_parameters():
    for bad in ({"architecture": "lstm"}, {"m": 30, "max_rank": 24}, {"dropout": 1.5},
                {"neighbourhood": ""}, {"lr": 0}, {"features": 3}):  # fmt: skip
        with pytest.raises(InvalidInputError):
            create_annotator("neighbourhood", **bad)


def _vector_file(path, words_and_vectors: dict[str, list[float]]) -> str:
    lines = [f"{len(words_and_vectors)} 3"]
    lines += [f"{w} " + " ".join(map(str, v)) for w, v in words_and_vectors.items()]
    path.write_text("\n".join(lines) + "\n")
    return f"file:{path}"


def test_a_joint_model_with_embeddings_survives_a_new_tag_vocabulary(tmp_path):
    """Trained on tags t0..t11, the model annotates photos whose tags are a renamed,
    reordered vocabulary with new words (synonyms with the same vectors): with an
    embedding π the scores do not change; with binary vectors (id) the new words are
    unknown and the scores change."""
    rng = np.random.default_rng(5)
    old = [f"t{j}" for j in range(12)]
    new = [f"new{j}" for j in range(12)]
    table = {w: rng.standard_normal(3).round(4).tolist() for w in old}
    spec = _vector_file(tmp_path / "vectors.txt", {**table, **dict(zip(new, table.values(),
                                                                      strict=True))})  # fmt: skip
    train, test = toy(), toy(30, seed=1)
    order = rng.permutation(12)  # renamed words, in another column order
    renamed = AnnotationSet(
        "renamed", test.item_ids, test.vocabulary, test.labels,
        tag_vocabulary=Vocabulary([new[j] for j in order]),
        user_tags=sp.csr_matrix(test.user_tags)[:, order], features=test.features,
    )  # fmt: skip
    for metadata, same in ((spec, True), ("id", False)):
        model = create_annotator("neighbourhood", architecture="ltwin", neighbourhood=spec,
                                 metadata=metadata, **FAST).fit(train)  # fmt: skip
        before, after = model.scores(test), model.scores(renamed)
        assert np.allclose(before, after, atol=1e-5) == same
        back = Annotator.load(model.save(tmp_path / metadata.replace("/", "_")))
        assert np.allclose(back.scores(renamed), after, atol=1e-5)


@pytest.mark.integration
def test_nuswide_end_to_end(tmp_path, capsys):
    """The documented NUS-WIDE command (train, then evaluate at top-3) on a fixture in
    the official layout: real JPEGs -> encoder features, user tags -> neighbourhoods."""
    from phototag.app.cli import main

    fixture = make_nuswide_fixture(tmp_path / "nuswide", n_train=16, n_test=6)
    out = tmp_path / "model"
    params = ["--param", "architecture=ltwin", "--param", "features=efficientnet_lite0",
              "--param", "m=3", "--param", "max_rank=6", "--param", "epochs=2",
              "--param", "hidden=32"]  # fmt: skip
    store = ["--store", str(tmp_path / "store"), "--runtime", "torch", "--workers", "0"]
    assert main(["train", "--dataset", fixture.spec, "--model", "neighbourhood", *params,
                 "--out", str(out), *store]) == 0  # fmt: skip
    assert main(["evaluate", "--dataset", fixture.spec, "--model", str(out), "--split", "test",
                 "--protocol", "top3", "--json", *store]) == 0  # fmt: skip
    metrics = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert 0 <= metrics["mAP_label"] <= 1 and 0 <= metrics["I-P"] <= 1
    model = Annotator.load(out)
    assert model.get_config()["architecture"] == "ltwin" and len(model.tag_vocabulary_) > 0


def test_study_tables_render():
    from phototag.models.neighbourhood import benchmark

    row = {"name": "LTN n:id", "metrics": dict.fromkeys(
        ["mAP_label", "mAP_image", "C-R", "C-P", "I-R", "I-P"], 0.5)}  # fmt: skip
    saved = {"command": "phototag benchmark neighbourhood", "seconds": 60, "rows": [row]}
    text = benchmark.markdown({"corel5k": saved})
    assert "| LTN n:id | 50.00 |" in text and "LTwin n:w2v f:w2v | 63.13" in text
    assert set(benchmark.FOLDERS) == set(benchmark.PARTS)
    rated = benchmark.markdown({"corel5k": {**saved, "rows": [{**row, "lr": 1e-4}]}})
    assert "| model | mAP_lab | mAP_img | rec_lab | prec_lab | rec_img | prec_img | lr |" in rated
    assert "| LTN n:id | 50.00 | 50.00 | 50.00 | 50.00 | 50.00 | 50.00 | 0.0001 |" in rated


def test_study_trains_the_lstm_models_at_the_papers_rate_for_longer():
    from phototag.models.neighbourhood import benchmark

    assert benchmark.study_settings("lzip", 15) == {"lr": 1e-4, "epochs": 150, "patience": 10}
    assert benchmark.study_settings("ltn", 15) == {"lr": 1e-3, "epochs": 15, "patience": 3}
    assert set(benchmark.RECURRENT) == {"rtn", "ltwin_rnn", "ltwin_2rnn", "lzip"}
