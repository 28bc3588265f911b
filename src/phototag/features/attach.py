"""Attach stored features (encoders' or descriptors') to an `AnnotationSet`, computing
what is missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phototag.data import AnnotationSet
from phototag.errors import InvalidInputError
from phototag.features import ENCODER_BATCH_SIZE
from phototag.features.extract import (
    ExtractionReport,
    FeatureSource,
    create_source,
    extract_features,
    open_store,
)
from phototag.features.store import default_store_root


def with_features(
    data: AnnotationSet,
    source: str | FeatureSource,
    *,
    store_root: str | Path | None = None,
    runtime: str = "onnx",
    dtype: str = "float32",
    batch_size: int = ENCODER_BATCH_SIZE,
    workers: int | None = None,
    progress: bool = True,
    key: str | None = None,
) -> tuple[AnnotationSet, ExtractionReport]:
    """`data` with ``features[key]`` filled from the feature store.

    `source` is an image encoder or a classic descriptor, or its feature name
    (``NAME[?key=value&...]``, see `create_source`; an encoder named is built on
    `runtime`: ONNX Runtime by default, several times faster than eager PyTorch for the
    same features). `key` defaults to that feature name, or to the source's name.
    Vectors not stored yet are computed (and stored) first. Items whose photo cannot be
    decoded are left out of the returned set, and listed in its notes and the report.
    """
    if data.image_paths is None:
        raise InvalidInputError(
            "dataset",
            "a dataset with images",
            f"{data.name} (labels only)",
            "Give the reader the image folder, e.g. NAME:PATH?images=DIR.",
        )
    if isinstance(source, str):
        key = key or source
        source = create_source(source, runtime=runtime)
    key = key or source.name
    root = default_store_root() if store_root is None else Path(store_root)
    with open_store(root, source, dtype) as store:
        digests, report = extract_features(
            data.image_paths,
            source,
            store,
            batch_size=batch_size,
            workers=workers,
            progress=progress,
        )
        keep = np.array([d is not None for d in digests])
        vectors, _ = store.get([d for d in digests if d is not None])
    result = data.subset(np.flatnonzero(keep), name=data.name)  # a copy, even when complete
    result.features[key] = vectors
    result.notes.extend(f"left out, no features: {reason}" for _, reason in report.failures)
    return result, report
