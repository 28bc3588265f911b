"""Recurrent label decoders: CNN-RNN (Wang et al. 2016) and JVSP, joint visual-semantic
propagation by a visual-guided LSTM; docs/models/recurrent.md."""

from phototag.models.recurrent.annotators import CNNRNNAnnotator, JVSPAnnotator

__all__ = ["CNNRNNAnnotator", "JVSPAnnotator"]
