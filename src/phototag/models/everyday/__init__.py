"""The everyday model: keywords people use for their photos, from ImageNet rules and
heads trained on real photos, as calibrated probabilities; docs/models/everyday.md."""

from phototag.data.everyday import EverydayWord, read_table
from phototag.models.everyday.annotators import EverydayAnnotator

__all__ = ["EverydayAnnotator", "EverydayWord", "read_table"]
