"""Attach stored encoder features to an `AnnotationSet`, computing what is missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phototag.data import AnnotationSet
from phototag.errors import InvalidInputError
from phototag.features.encoders import ImageEncoder, create_encoder
from phototag.features.extract import ExtractionReport, extract_features
from phototag.features.store import FeatureStore, default_store_root


def with_encoder_features(
    data: AnnotationSet,
    encoder: str | ImageEncoder,
    *,
    store_root: str | Path | None = None,
    runtime: str = "onnx",
    dtype: str = "float32",
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[AnnotationSet, ExtractionReport]:
    """`data` with ``features[encoder.name]`` filled from the feature store.

    Features not stored yet are computed (and stored) first, with the encoder built by
    name on `runtime` (ONNX Runtime by default: several times faster than eager PyTorch
    for the same features). Items whose photo cannot be decoded are left out of the
    returned set, and listed in its notes and the report.
    """
    if data.image_paths is None:
        raise InvalidInputError(
            "dataset",
            "a dataset with images",
            f"{data.name} (labels only)",
            "Give the reader the image folder, e.g. NAME:PATH?images=DIR.",
        )
    if isinstance(encoder, str):
        encoder = create_encoder(encoder, runtime=runtime)
    root = default_store_root() if store_root is None else Path(store_root)
    with FeatureStore(root, encoder.feature_id, encoder.num_features, dtype) as store:
        digests, report = extract_features(
            data.image_paths,
            encoder,
            store,
            batch_size=batch_size,
            workers=workers,
            progress=progress,
        )
        keep = np.array([d is not None for d in digests])
        vectors, _ = store.get([d for d in digests if d is not None])
    result = data.subset(np.flatnonzero(keep), name=data.name)  # a copy, even when complete
    result.features[encoder.name] = vectors
    result.notes.extend(f"left out, no features: {reason}" for _, reason in report.failures)
    return result, report
