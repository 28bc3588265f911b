"""CNN-R: a CNN regressing images into word-embedding space."""

from phototag.models.regression.annotators import CNNRAnnotator, TrunkMaps, split_backbone

__all__ = ["CNNRAnnotator", "TrunkMaps", "split_backbone"]
