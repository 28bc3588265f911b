"""Annotation models; each family keeps its own module and registers by name."""

from phototag.models.base import Annotator
from phototag.models.registry import (
    annotator_class,
    available_annotators,
    create_annotator,
    register_annotator,
)

__all__ = [
    "Annotator",
    "annotator_class",
    "available_annotators",
    "create_annotator",
    "register_annotator",
]
