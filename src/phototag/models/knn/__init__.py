"""Nearest-neighbour annotators: JEC, TagProp (+sigma-ML), 2PKNN (+ML) and ML-kNN."""

from phototag.models.knn.annotators import (
    JECAnnotator,
    MLKNNAnnotator,
    TagPropAnnotator,
    TwoPassKNNAnnotator,
    TwoPassKNNMLAnnotator,
)
from phototag.models.knn.base import NeighborAnnotator

__all__ = [
    "JECAnnotator",
    "MLKNNAnnotator",
    "NeighborAnnotator",
    "TagPropAnnotator",
    "TwoPassKNNAnnotator",
    "TwoPassKNNMLAnnotator",
]
