"""Evaluation: metrics by kind, decoders (scores -> label sets), predictions read from files,
model selection by cross-validation, scoring a model on a split, and the papers' benchmarks.

It sits below the models (they decode with its decoders and tune with its metrics), so it
takes any model by what it does (`protocols`), never by importing `phototag.models`.
"""
