"""A linear tag classifier on frozen features, and its asymmetric loss."""

from phototag.models.linear.annotators import LinearAnnotator, asymmetric_loss

__all__ = ["LinearAnnotator", "asymmetric_loss"]
