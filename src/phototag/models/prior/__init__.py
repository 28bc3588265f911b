"""The label-frequency prior: the baseline every model must beat."""

from phototag.models.prior.annotators import PriorAnnotator

__all__ = ["PriorAnnotator"]
