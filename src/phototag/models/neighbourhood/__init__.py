"""Neighbourhoods from social metadata (Tesan, Coscia & Ballan): v-only, LTN, RTN, LTN+Vecs,
LTN+AllVecs, LTwin, LTwin+RNN, LTwin+2RNN and LZip; docs/models/neighbourhood.md."""

from phototag.models.neighbourhood.annotators import NeighbourhoodAnnotator

__all__ = ["NeighbourhoodAnnotator"]
