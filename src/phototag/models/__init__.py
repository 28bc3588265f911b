"""Annotation models: one subpackage per family, each registering its `*Annotator` classes
by name; `create_annotator(name, **config)` builds one."""

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
