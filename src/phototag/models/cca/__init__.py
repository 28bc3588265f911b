"""CCA, kernel CCA and CCA-KNN annotators, and the label embeddings they read."""

from phototag.models.cca.annotators import (
    CCAAnnotator,
    CCAKNNAnnotator,
    KCCAAnnotator,
    label_embedding_matrix,
)

__all__ = ["CCAAnnotator", "CCAKNNAnnotator", "KCCAAnnotator", "label_embedding_matrix"]
