"""CNN-R: regressing images into word-embedding space (docs/models/cnn_r.md)."""

from phototag.models.regression.annotators import CNNRAnnotator, split_backbone

__all__ = ["CNNRAnnotator", "split_backbone"]
