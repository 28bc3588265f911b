"""M3: multi-scale CNN features, a tag network and label-quantity prediction (Niu et al.
2017); docs/models/m3.md."""

from phototag.models.m3.annotators import M3Annotator

__all__ = ["M3Annotator"]
