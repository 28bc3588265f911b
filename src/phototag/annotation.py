"""Annotating photo files with a trained model: files in, ranked keywords out.

Photos are processed in chunks, so output streams and memory stays bounded on any
library size; their encoder features go through the feature store, so annotating the
same photos again (with this or another model on the same encoder) decodes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import scipy.sparse as sp
from tqdm.auto import tqdm

from phototag.data import AnnotationSet
from phototag.decoding import Decoder
from phototag.features.attach import with_encoder_features
from phototag.features.encoders import ImageEncoder, create_encoder
from phototag.models.base import Annotator


@dataclass(frozen=True)
class FileAnnotation:
    """A photo's suggested keywords, best first, or the reason it could not be read."""

    path: str
    tags: tuple[tuple[str, float], ...] = ()
    error: str | None = None


def annotate_files(
    paths: Sequence[str | Path],
    model: Annotator,
    decoder: Decoder | None = None,
    *,
    store_root: str | Path | None = None,
    runtime: str = "onnx",
    batch_size: int = 32,
    workers: int | None = None,
    chunk_size: int = 512,
    progress: bool = True,
) -> Iterator[FileAnnotation]:
    """Yield one `FileAnnotation` per path, in order; unreadable photos carry an error.

    `decoder` defaults to the model's own (``model.decoder_``).
    """
    encoders: list[ImageEncoder] = [
        create_encoder(name, runtime=runtime) for name in model.required_features()
    ]
    bar = tqdm(total=len(paths), desc="annotating", unit="photo", disable=not progress)
    try:
        for start in range(0, len(paths), chunk_size):
            chunk = [str(p) for p in paths[start : start + chunk_size]]
            yield from _annotate_chunk(
                chunk, model, decoder, encoders,
                dict(store_root=store_root, batch_size=batch_size, workers=workers),
            )  # fmt: skip
            bar.update(len(chunk))
    finally:
        bar.close()


def _annotate_chunk(
    paths: list[str],
    model: Annotator,
    decoder: Decoder | None,
    encoders: list[ImageEncoder],
    options: dict,
) -> Iterator[FileAnnotation]:
    data = AnnotationSet(
        name="photos",
        item_ids=paths,
        vocabulary=model.vocabulary_,
        labels=sp.csr_matrix((len(paths), len(model.vocabulary_)), dtype=bool),
        image_paths=paths,
    )
    errors: dict[str, str] = {}
    for encoder in encoders:
        data, report = with_encoder_features(data, encoder, progress=False, **options)
        errors.update(report.failures)
    tags = dict(zip(data.item_ids, model.annotate(data, decoder), strict=True)) if len(data) else {}
    for path in paths:
        if path in tags:
            yield FileAnnotation(path, tuple(tags[path]))
        else:
            yield FileAnnotation(path, error=errors.get(path, "no features"))
