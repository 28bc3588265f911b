"""Filling what a model reads (`ModelInputs`) into an `AnnotationSet` of photos.

The one place `annotate`, `serve`, `evaluate`, `train` and the Ray engine turn photo
files into model inputs: pooled features and spatial maps from the feature store
(computed once, in one decode per photo, when missing), the photo's own keywords as
user tags, and its album (the folder it is in) as ``metadata["group"]``. A part the set
already has (a dataset's own user tags or features) is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from phototag.data import AnnotationSet, Vocabulary, multi_hot
from phototag.data.inputs import PHOTO_METADATA, MapSpec, ModelInputs
from phototag.errors import InvalidInputError
from phototag.features import ENCODER_BATCH_SIZE

if TYPE_CHECKING:  # the encoders import PyTorch: only when photos are read
    from phototag.features.encoders import ImageEncoder
    from phototag.features.extract import FeatureSource


@dataclass
class InputsReport:
    """What filling inputs did: ``(path, reason)`` of every photo left out, and one
    summary line per feature source."""

    failures: list[tuple[str, str]] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)


def with_inputs(
    data: AnnotationSet,
    inputs: ModelInputs,
    *,
    store_root: str | Path | None = None,
    runtime: str = "onnx",
    dtype: str = "float32",
    batch_size: int = ENCODER_BATCH_SIZE,
    workers: int | None = None,
    progress: bool = False,
    sources: Mapping[str, FeatureSource] | None = None,
    store_maps: bool = True,
) -> tuple[AnnotationSet, InputsReport]:
    """`data` with every part of `inputs` it lacks filled from its photos.

    `sources` are feature sources already built, by feature name (a service keeps its
    encoders loaded); the others are built on `runtime`. Stage maps go through the
    feature-map store, computed once and reused by every later fit; with `store_maps`
    False they are computed in memory and not kept (annotating: M3's five maps take
    1.1 MB per photo). Photos that cannot be decoded, or whose keywords cannot be read
    when `inputs` needs them, are left out of the returned set and listed in the report.
    """
    report = InputsReport()
    missing = ModelInputs(
        features=tuple(k for k in inputs.features if k not in data.features),
        maps=tuple(s for s in inputs.maps if s.key not in data.maps),
        user_tags=inputs.user_tags and data.user_tags is None,
        metadata=tuple(k for k in inputs.metadata if k not in data.metadata),
    )
    if missing == ModelInputs():
        return data, report
    if data.image_paths is None:
        raise InvalidInputError(
            "data", f"{', '.join(data.missing_inputs(inputs))}, or photos to compute them from",
            f"{data.name} (labels only)",
            "Give the dataset reader the image folder, e.g. NAME:PATH?images=DIR.",
        )  # fmt: skip
    options = dict(store_root=store_root, runtime=runtime, batch_size=batch_size,
                   workers=workers, progress=progress)  # fmt: skip
    sources = dict(sources or {})
    for key in missing.features:
        data = _with_features(data, key, sources, dtype, options, report)
    fill_maps = _with_maps if store_maps else _with_maps_in_memory
    for encoder, specs in _by_encoder(missing.maps).items():
        data = fill_maps(data, encoder, specs, sources, options, report)
    if missing.user_tags:
        data = _with_keywords(data, report)
    for key in missing.metadata:
        data = _with_photo_metadata(data, key)
    return data, report


def _source(name: str, sources: dict[str, FeatureSource], runtime: str) -> FeatureSource:
    if name not in sources:
        from phototag.features.extract import create_source

        sources[name] = create_source(name, runtime=runtime)
    return sources[name]


def _with_features(
    data: AnnotationSet,
    key: str,
    sources: dict[str, FeatureSource],
    dtype: str,
    options: dict,
    report: InputsReport,
) -> AnnotationSet:
    from phototag.features.attach import with_features

    source = _source(key, sources, options["runtime"])
    data, extraction = with_features(data, source, key=key, dtype=dtype, **options)
    report.failures.extend(extraction.failures)
    report.summaries.append(f"{key}: {extraction.summary()}")
    return data


def _image_encoder(name: str, sources: dict[str, FeatureSource], runtime: str) -> ImageEncoder:
    """The image encoder named `name` (maps come from encoders, not descriptors)."""
    from phototag.features.encoders import ImageEncoder

    encoder = _source(name, sources, runtime)
    if not isinstance(encoder, ImageEncoder):
        raise InvalidInputError("maps", "an image encoder's maps", f"{name} (a descriptor)")
    return encoder


def _by_encoder(specs: Sequence[MapSpec]) -> dict[str, list[MapSpec]]:
    grouped: dict[str, list[MapSpec]] = {}
    for spec in specs:
        grouped.setdefault(spec.encoder, []).append(spec)
    return grouped


def _with_maps(
    data: AnnotationSet,
    encoder_name: str,
    specs: list[MapSpec],
    sources: dict[str, FeatureSource],
    options: dict,
    report: InputsReport,
) -> AnnotationSet:
    """The maps of `specs` (all of one encoder) from the feature-map store, computed
    with the encoder's pooled vectors in one pass where missing."""
    from phototag.features.extract import extract_features, open_store
    from phototag.features.maps import FeatureMapStore, map_shapes
    from phototag.features.store import default_store_root

    encoder = _image_encoder(encoder_name, sources, options["runtime"])
    root = default_store_root() if options["store_root"] is None else Path(options["store_root"])
    shapes = map_shapes(encoder, sorted({spec.stage for spec in specs}))
    stores: list[FeatureMapStore] = []
    try:
        for spec in specs:
            shape = shapes[spec.stage]
            stores.append(FeatureMapStore(root, encoder.feature_id, spec.stage, spec.view, shape))
        with open_store(root, encoder) as pooled:
            digests, extraction = extract_features(
                data.image_paths or [], encoder, pooled, maps=stores,
                batch_size=options["batch_size"], workers=options["workers"],
                progress=options["progress"],
            )  # fmt: skip
        kept = np.flatnonzero([digest is not None for digest in digests])
        stored = [digests[i] for i in kept]
        mapped = {spec.key: store.mapped(stored) for spec, store in zip(specs, stores, strict=True)}  # type: ignore[arg-type]
    finally:
        for store in stores:
            store.close()
    report.failures.extend(extraction.failures)
    report.summaries.append(f"{encoder_name} maps: {extraction.summary()}")
    result = data.subset(kept, name=data.name)
    result.maps.update(mapped)
    result.notes.extend(f"left out, no maps: {reason}" for _, reason in extraction.failures)
    return result


def _with_maps_in_memory(
    data: AnnotationSet,
    encoder_name: str,
    specs: list[MapSpec],
    sources: dict[str, FeatureSource],
    options: dict,
    report: InputsReport,
) -> AnnotationSet:
    """The maps of `specs` (all of one encoder) computed from the photos, not stored."""
    from phototag.features.extract import decode_photos
    from phototag.features.maps import stage_maps

    encoder = _image_encoder(encoder_name, sources, options["runtime"])
    pixels, kept, failures = decode_photos(data.image_paths or [], encoder.preprocess,
                                           options["workers"])  # fmt: skip
    computed: dict[str, list[np.ndarray]] = {spec.key: [] for spec in specs}
    for start in range(0, len(pixels), options["batch_size"]):
        batch = stage_maps(encoder, pixels[start : start + options["batch_size"]], specs)
        for key, maps in batch.items():
            computed[key].append(maps)
    report.failures.extend(failures)
    result = data.subset(kept, name=data.name)
    for key, parts in computed.items():  # no photo decoded: an empty stand-in
        result.maps[key] = np.concatenate(parts) if parts else np.zeros((0, 1, 1, 1), np.float16)
    return result


def _with_keywords(data: AnnotationSet, report: InputsReport) -> AnnotationSet:
    """User tags from each photo's own keywords (not phototag's), lower-cased leaf
    terms; photos whose metadata cannot be read completely are left out."""
    from phototag.metadata import MetadataError, read_keywords

    words: list[list[str]] = []
    kept: list[int] = []
    for i, path in enumerate(data.image_paths or []):
        try:
            user = read_keywords(path).user
        except (MetadataError, OSError) as error:
            report.failures.append((path, str(error)))
            continue
        kept.append(i)
        words.append(list(dict.fromkeys(word.casefold() for word in user)))
    vocabulary = Vocabulary(sorted({word for row in words for word in row}))
    tags = multi_hot([vocabulary.indices(row) for row in words], len(vocabulary))
    subset = data.subset(kept, name=data.name)
    return replace(subset, tag_vocabulary=vocabulary, user_tags=tags)


def _with_photo_metadata(data: AnnotationSet, key: str) -> AnnotationSet:
    if key not in PHOTO_METADATA:
        raise InvalidInputError(
            "metadata", f"metadata a photo file has ({', '.join(PHOTO_METADATA)})", repr(key),
            f"Use a dataset reader that provides {key!r}.",
        )  # fmt: skip
    folders = np.array([str(Path(path).parent) for path in data.image_paths or []], dtype=str)
    return replace(data, metadata={**data.metadata, key: folders})
