"""Reader for phototag's own format: a directory written by `AnnotationSet.save`."""

from __future__ import annotations

from pathlib import Path

from phototag.data.annotation_set import AnnotationSet
from phototag.data.readers import register_reader


@register_reader("annotations")
def read_annotations(path: Path) -> AnnotationSet:
    """A set saved by AnnotationSet.save (annotations.json + annotations.npz)."""
    return AnnotationSet.load(path)
