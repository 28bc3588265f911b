"""Late fusion of several annotators with a rare-word correction."""

from phototag.models.ensemble.annotators import EnsembleAnnotator, fit_logistic, rescaled

__all__ = ["EnsembleAnnotator", "fit_logistic", "rescaled"]
