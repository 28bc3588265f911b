"""Open-vocabulary annotation: ImageNet classes mapped onto any words through WordNet."""

from phototag.models.open_vocabulary.annotators import ImageNetWordNetAnnotator, classifier_weights
from phototag.models.open_vocabulary.wordnet import (
    CoverageReport,
    UncoveredWordsWarning,
    WordCoverage,
    lookup_word,
    normalise_word,
    read_word_list,
    word_class_matrix,
    wordnet_database,
)

__all__ = [
    "CoverageReport",
    "ImageNetWordNetAnnotator",
    "UncoveredWordsWarning",
    "WordCoverage",
    "classifier_weights",
    "lookup_word",
    "normalise_word",
    "read_word_list",
    "word_class_matrix",
    "wordnet_database",
]
