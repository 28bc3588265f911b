"""No keyword phototag suggests can hurt the person in the photo: words for ethnicity,
religion, nationality, body or health, dated or derogatory names (issue 14)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phototag.data import Vocabulary
from phototag.data.sensitive import is_sensitive
from phototag.evaluation.decoding import Quantity, Threshold, TopK
from phototag.evaluation.predictions import Prediction
from phototag.models.base import decoded_tags
from phototag.pretrained import available_pretrained, load_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
#: Words no photo of a person should get from a tool, one per kind the list covers.
HURTFUL = ["indian", "Indians", "african", "Native American", "eskimo", "oriental", "negro",
           "buddhist", "Muslim", "jewish", "Mexican", "chinese", "fat", "obese", "ugly",
           "disabled", "retarded", "midget", "People|Indian", "People/Ethnic",
           "gypsies"]  # fmt: skip
#: Everyday words, some close to the listed ones, that stay keywords.
EVERYDAY = ["black", "white", "people", "man", "woman", "girl", "baby", "monks", "buddha",
            "temple", "church", "mosque", "scotland", "india", "africa", "dance", "festival",
            "Animals|Pets|Cat", "costume", "bus", "glass", "nativity"]  # fmt: skip


@pytest.mark.parametrize("word", HURTFUL)
def test_hurtful_words_are_listed(word):
    assert is_sensitive(word)


@pytest.mark.parametrize("word", EVERYDAY)
def test_everyday_words_are_not(word):
    assert not is_sensitive(word)


@pytest.mark.parametrize(
    ("decoder", "expected"),
    [(TopK(2), [["people", "dance"], ["dance", "people"]]),
     (Threshold(0.5), [["people", "dance"], ["dance"]]),
     (Quantity(), [["people"], ["dance", "people"]])],
)  # fmt: skip
def test_a_model_scoring_a_hurtful_word_highest_never_suggests_it(decoder, expected):
    """The hurtful words rank below every other word: a top-k or a label count takes the
    next words, a threshold keeps what passes."""
    vocabulary = Vocabulary(["indian", "people", "dance", "african"])
    scores = np.array([[0.99, 0.8, 0.7, 0.95], [0.9, 0.1, 0.6, 0.2]], dtype=np.float32)
    prediction = Prediction(scores, quantities=np.array([1.0, 2.0]))
    tags = decoded_tags(prediction, vocabulary, decoder)
    assert [[label for label, _ in row] for row in tags] == expected
    assert tags[0][0] == ("people", pytest.approx(0.8))  # the model's own scores


@pytest.mark.parametrize("name", available_pretrained())
def test_no_shipped_model_suggests_a_hurtful_word(name):
    """Every label of a shipped model that is listed is ranked first on purpose: the
    keywords still leave it out (and the example photos get none of them)."""
    from phototag.library.annotation import annotate_files

    model = load_model(name)
    names = list(model.vocabulary_)
    listed = [j for j, label in enumerate(names) if is_sensitive(label)]
    scores = np.zeros((max(1, len(listed)), len(names)), dtype=np.float32)
    for row, column in enumerate(listed):
        scores[row, column] = 1.0
    for row in decoded_tags(Prediction(scores), model.vocabulary_, TopK(len(names))):
        assert not [label for label, _ in row if is_sensitive(label)]
    results = annotate_files(sorted(EXAMPLES.glob("*.jpg")), model, TopK(len(names)),
                             runtime="torch", workers=0, progress=False)  # fmt: skip
    for result in results:
        assert result.error is None and not [t for t, _ in result.tags if is_sensitive(t)]
