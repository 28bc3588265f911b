"""The everyday vocabulary, its rules and the everyday model (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from phototag.data import AnnotationSet, Vocabulary
from phototag.data.everyday import EverydayWord
from phototag.data.sensitive import is_sensitive
from phototag.errors import InvalidInputError
from phototag.features.encoders.imagenet import imagenet_class
from phototag.models.base import Annotator
from phototag.models.everyday import EverydayAnnotator, read_table
from phototag.models.everyday.heads import fit_heads
from phototag.models.everyday.rules import rule_classes
from phototag.models.open_vocabulary import wordnet_database

WORDS = {word.path: word for word in read_table()}


def classes_of(path: str) -> set[str]:
    return {imagenet_class(i).name for i in rule_classes(WORDS[path], wordnet_database())}


def test_the_vocabulary_is_a_hierarchy_of_everyday_keywords():
    assert 100 <= len(WORDS) <= 400
    for path in WORDS:
        assert not is_sensitive(path), path
        parent = path.rpartition("|")[0]
        # every level is a keyword or a grouping level; a keyword never repeats a leaf
        assert parent.count("|") <= 2
    leaves = [path.rsplit("|", 1)[-1].casefold() for path in WORDS]
    assert len(set(leaves)) == len(leaves)


def test_every_rule_resolves_to_imagenet_classes():
    db = wordnet_database()
    for word in WORDS.values():
        if word.imagenet:
            assert rule_classes(word, db), word.path


@pytest.mark.parametrize(
    ("path", "has", "lacks"),
    [
        ("Animals|Pets|Dog", {"beagle", "Chihuahua", "Great Dane"}, {"hotdog", "timber wolf"}),
        ("Animals|Pets|Cat", {"tabby", "Egyptian cat"}, {"tiger", "lion", "lynx"}),
        ("Food & drink|Food", {"pizza", "banana", "bagel"}, {"menu", "hay", "cup", "espresso"}),
        ("Vehicles|Car", {"sports car", "cab", "jeep"}, {"moped", "school bus"}),
        ("Vehicles|Aircraft", {"airliner", "warplane"}, {"balloon"}),
        ("Things|Computer", {"laptop", "desktop computer"}, {"abacus", "slide rule"}),
        ("Animals|Wildlife|Monkey", {"gorilla", "baboon"}, {"scuba diver", "groom"}),
    ],
)
def test_rules_collect_the_right_classes(path, has, lacks):
    """The reviewed rules: a sample of what each includes and leaves out."""
    found = classes_of(path)
    assert has <= found
    assert not lacks & found
    assert len(classes_of("Animals|Pets|Dog")) == 118


def test_rule_tokens_add_and_remove_classes():
    db = wordnet_database()
    word = EverydayWord("Things|Snacks", ("food.n.02", "-edible_fruit.n.01", "n07930864"))
    names = {imagenet_class(i).name for i in rule_classes(word, db)}
    assert "bagel" in names and "cup" in names and "banana" not in names
    with pytest.raises(InvalidInputError, match="n99999999"):
        rule_classes(EverydayWord("Things|X", ("n99999999",)), db)
    with pytest.raises(InvalidInputError, match="sky"):
        rule_classes(EverydayWord("Nature|Sky", ("sky.n.01",)), db)  # no class below it


def test_a_broken_table_line_is_named(tmp_path):
    table = tmp_path / "words.tsv"
    table.write_text("keyword\timagenet\tphotos\nAnimals|Cat\tdomestic_cat.n.01\n")
    with pytest.raises(InvalidInputError, match=r"words.tsv:2"):
        read_table(table)
    table.write_text("Sky\t\tmirflickr\n")
    with pytest.raises(InvalidInputError, match="dataset:label"):
        read_table(table)


def test_fit_heads_learns_each_keyword_on_its_known_rows_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5)).astype(np.float32)
    y = np.column_stack([x[:, 0] > 0, x[:, 1] > 0])
    known = np.ones_like(y)
    known[:200, 1] = False
    y[:200, 1] = ~y[:200, 1]  # unknown rows say the opposite: they must not count
    a, b = fit_heads(x, y, known, np.ones(400), l2=1e-3)
    assert a[0, 0] > 2 and abs(a[1, 0]) < 0.5
    assert a[1, 1] > 2 and abs(a[0, 1]) < 0.5


@pytest.fixture(scope="module")
def synthetic_everyday():
    """Photos whose features make "Nature|Sky" and "People" linearly separable, labelled
    as the everyday reader labels them (half from each dataset)."""
    rng = np.random.default_rng(1)
    n, dim = 300, 1280
    x = rng.normal(scale=0.05, size=(n, dim)).astype(np.float32)
    paths = [word.path for word in read_table()]
    labels = np.zeros((n, len(paths)), dtype=bool)
    sky, people = paths.index("Nature|Sky"), paths.index("People")
    labels[:, sky] = rng.random(n) < 0.4
    labels[:, people] = rng.random(n) < 0.3
    x[:, 7] += labels[:, sky]
    x[:, 11] += labels[:, people]
    origin = np.array(["mirflickr", "corel5k"] * (n // 2))
    return AnnotationSet(
        "everyday",
        [f"p{i}" for i in range(n)],
        Vocabulary(paths),
        sp.csr_matrix(labels),
        features={"efficientnet_lite2": x},
        metadata={"dataset": origin},
    )


@pytest.fixture(scope="module")
def fitted(synthetic_everyday):
    return EverydayAnnotator(folds=3).fit(synthetic_everyday)


def test_the_model_gives_calibrated_probabilities_and_confident_keywords(
    fitted, synthetic_everyday, tmp_path
):
    scores = fitted.scores(synthetic_everyday)
    labels = synthetic_everyday.labels.toarray()
    sky = list(fitted.vocabulary_).index("Nature|Sky")
    assert scores[labels[:, sky], sky].min() > scores[~labels[:, sky], sky].max()
    assert scores[:, sky].mean() == pytest.approx(labels[:, sky].mean(), abs=0.05)  # calibrated
    assert (fitted.decoder_.thresholds >= 0.5).all()  # never below even odds
    assert fitted.decoder_.max_labels == 10
    sources = dict((path, source) for path, source, _ in fitted.describe())
    assert sources["Nature|Sky"] == "photos"
    assert sources["Animals|Pets|Cat"] == "imagenet"
    assert sources["Nature|Forest"] == "none"  # no positives in this set, no rule
    assert scores[:, list(fitted.vocabulary_).index("Nature|Forest")].max() < 1e-6
    loaded = Annotator.load(fitted.save(tmp_path / "model"))
    np.testing.assert_allclose(loaded.scores(synthetic_everyday), scores, atol=1e-6)


def test_a_keyword_is_at_least_as_likely_as_the_keywords_below_it(fitted, synthetic_everyday):
    scores = fitted.scores(synthetic_everyday)
    paths = list(fitted.vocabulary_)
    for d, path in enumerate(paths):
        for a, parent in enumerate(paths):
            if path.startswith(parent + "|"):
                assert (scores[:, a] >= scores[:, d]).all(), (parent, path)


def test_the_model_refuses_a_set_with_other_labels(synthetic_everyday):
    other = AnnotationSet(
        "x", ["a", "b"], Vocabulary(["sky", "sea"]), sp.csr_matrix(np.eye(2, dtype=bool)),
        features={"efficientnet_lite2": np.zeros((2, 1280), np.float32)},
    )  # fmt: skip
    with pytest.raises(InvalidInputError, match="everyday reader"):
        EverydayAnnotator().fit(other)


def test_the_mirflickr_reader_reads_every_photo_with_its_official_labels(shared_data):
    from phototag.data.readers import read_dataset

    photos = read_dataset(f"mirflickr:{shared_data / 'mirflickr25k'}?items=photos")
    assert photos.n_items == 1000 and len(photos.vocabulary) == 38
    assert "portrait_r1" in photos.vocabulary and photos.image_paths[0].endswith("im1.jpg")
    assert (np.asarray(photos.user_tags.sum(axis=1)).ravel() > 0).sum() <= 730
    with pytest.raises(InvalidInputError, match="labels"):
        read_dataset(f"mirflickr:{shared_data / 'mirflickr25k'}?items=photos&labels=lall")


def test_the_everyday_reader_labels_each_photo_with_its_own_dataset(shared_data):
    from phototag.data.readers import read_dataset

    data = read_dataset(f"everyday:{shared_data}")
    assert data.n_items == 5999
    assert (len(data.splits["train"]), len(data.splits["test"])) == (5300, 699)
    assert list(data.vocabulary) == list(WORDS)
    origin = data.metadata["dataset"]
    labels = data.labels.toarray()
    sky, indoor = data.vocabulary.index("Nature|Sky"), data.vocabulary.index("Indoor")
    assert labels[origin == "corel5k", sky].any() and labels[origin == "mirflickr", sky].any()
    assert labels[origin == "mirflickr", indoor].any()
    assert data.item_ids[0].startswith("corel5k/") and data.item_ids[-1].startswith("mirflickr/")


def test_the_documented_rule_table_is_the_shipped_one():
    """docs/models/everyday.md lists every keyword with its class count and threshold."""
    from pathlib import Path

    from phototag.pretrained import load_model

    doc = Path(__file__).resolve().parents[1] / "docs" / "models" / "everyday.md"
    rows = doc.read_text().split("## The rules, keyword by keyword")[1].splitlines()
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows if row.startswith("| ")]
    documented = {c[0].replace(" › ", "|"): (c[1].partition(":")[0], c[3]) for c in cells[1:]}
    shipped = {path: threshold for path, _, threshold in load_model("default").describe()}
    assert list(documented) == list(WORDS) == list(shipped)
    for path, (count, threshold) in documented.items():
        assert count == (str(len(classes_of(path))) if WORDS[path].imagenet else ""), path
        expected = "never" if shipped[path] == np.inf else f"{shipped[path]:.2f}"
        assert threshold == expected, path
