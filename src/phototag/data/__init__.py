"""Core data types and dataset readers."""

from phototag.data.annotation_set import AnnotationSet, from_label_sets, merge_splits, multi_hot
from phototag.data.vocabulary import Vocabulary

__all__ = ["AnnotationSet", "Vocabulary", "from_label_sets", "merge_splits", "multi_hot"]
