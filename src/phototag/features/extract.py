"""Photos -> stored encoder features: parallel decoding, batched inference, resumable.

Worker processes hash and decode files (JPEGs at reduced size through
`phototag.imaging`) and crop/resize them to the encoder's input, while the main process
runs batched forward passes under ``torch.inference_mode()`` and appends each finished
batch to a `FeatureStore` (and, when asked, its spatial maps to feature-map stores,
from the same decoded pixels). A killed run loses at most the batch in flight; started
again it recomputes nothing already stored.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
from tqdm.auto import tqdm

from phototag.errors import InvalidInputError
from phototag.features import ENCODER_BATCH_SIZE
from phototag.features.descriptors import Descriptor, available_descriptors, create_descriptor
from phototag.features.encoders import ImageEncoder, Preprocess, create_encoder
from phototag.features.encoders.base import POOLED, as_array
from phototag.features.encoders.preprocess import resize_to_input
from phototag.features.maps import FeatureMapStore, view_pixels
from phototag.features.store import FeatureStore, RowStore
from phototag.imaging import ImageLoadError, file_digest, load_image, load_rgb

#: What computes a feature type: an image encoder (pooled features) or a classic descriptor.
FeatureSource = ImageEncoder | Descriptor

#: Photos are described at most this many pixels on their longer side (Corel-5k's
#: 192 x 128 photos as they are; a 24-megapixel photo at 512 x 341, so that a descriptor
#: costs milliseconds and describes the scene, not the sensor noise).
DESCRIPTOR_MAX_SIDE = 512


def parse_source_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split a feature name ``NAME[?key=value&...]`` into the registry name and the
    builder's keywords (numbers parsed as numbers, ``~`` expanded in ``weights``), e.g.
    ``efficientnet_lite2?input_size=384&resize=squash`` or ``resnet101?weights=r101.pth``.
    """
    name, _, query = spec.partition("?")
    options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        for parse in (int, float):
            try:
                options[key] = parse(value)
                break
            except ValueError:
                continue
        else:
            options[key] = str(Path(value).expanduser()) if key == "weights" else value
    return name, options


def is_descriptor(spec: str) -> bool:
    """Whether the feature name `spec` names a classic descriptor (else an encoder)."""
    return parse_source_spec(spec)[0] in available_descriptors()


def create_source(spec: str, runtime: str = "onnx") -> FeatureSource:
    """The encoder or descriptor a feature name ``NAME[?key=value&...]`` stands for
    (`phototag encoders` lists the names; the options are the builder's keywords)."""
    name, options = parse_source_spec(spec)
    if name not in available_descriptors():
        return create_encoder(name, **{"runtime": runtime, **options})
    descriptor = create_descriptor(name, **options)
    if descriptor.requires_fit:
        raise InvalidInputError(
            "features",
            "an encoder or a descriptor that learns nothing",
            repr(spec),
            f"{name} learns a codebook from training photos first: fit it in Python "
            "(docs/descriptors.md) and attach its vectors to the dataset yourself.",
        )
    return descriptor


def create_sources(specs: Sequence[str], runtime: str = "onnx") -> dict[str, FeatureSource]:
    """Feature name -> its source, for the names a model reads."""
    return {spec: create_source(spec, runtime) for spec in specs}


def source_id(source: FeatureSource) -> str:
    """The feature-store key of what `source` computes (network or descriptor, its
    weights or configuration, and the input recipe)."""
    if isinstance(source, Descriptor):
        return f"{source.descriptor_id}-max{DESCRIPTOR_MAX_SIDE}"
    return source.feature_id


def open_store(root: str | Path, source: FeatureSource, dtype: str = "float32") -> FeatureStore:
    """The feature store of `source`'s vectors under `root`."""
    dim = source.dim if isinstance(source, Descriptor) else source.num_features
    return FeatureStore(root, source_id(source), dim, dtype)


def load_model_input(path: str | Path, preprocess: Preprocess) -> np.ndarray:
    """One photo as the encoder sees it: uint8 ``[S, S, 3]`` after crop/resize.

    Decodes at the smallest JPEG scale the recipe needs, so a 24-megapixel JPEG is never
    decoded at full size, then crops and resizes once. Every path from file to features
    goes through here.
    """
    crop = preprocess.crop_fraction if preprocess.resize == "center_crop" else 1.0
    min_side = math.ceil(preprocess.input_size / crop)
    image = load_image(path, min_side=min_side, resample=False)
    return np.array(resize_to_input(image, preprocess), dtype=np.uint8)


@dataclass
class ExtractionReport:
    """What one extraction run did."""

    n_files: int = 0
    n_computed: int = 0
    n_reused: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.n_computed / self.seconds if self.seconds > 0 else 0.0

    def __iadd__(self, other: ExtractionReport) -> ExtractionReport:
        """Add the counts, failures and time of another run (of other files)."""
        self.n_files += other.n_files
        self.n_computed += other.n_computed
        self.n_reused += other.n_reused
        self.failures.extend(other.failures)
        self.seconds += other.seconds
        return self

    def summary(self) -> str:
        return (
            f"{self.n_files} files: {self.n_computed} computed "
            f"({self.images_per_second:.1f} images/s), {self.n_reused} already stored, "
            f"{len(self.failures)} failed"
        )


# -------------------------------------------------------------- worker functions
def digest_or_error(path: str) -> tuple[str | None, str | None]:
    """The file's content digest (`file_digest`), or why it cannot be read."""
    try:
        return file_digest(path), None
    except ImageLoadError as error:
        return None, str(error)
    except OSError as error:
        return None, f"{path}: cannot read ({error.strerror or error})"


def _decode(job: tuple[str, Preprocess]) -> tuple[np.ndarray | None, str | None]:
    path, preprocess = job
    try:
        return load_model_input(path, preprocess), None
    except ImageLoadError as error:
        return None, str(error)


def _describe(job: tuple[str, Descriptor]) -> tuple[np.ndarray | None, str | None]:
    path, descriptor = job
    try:
        rgb = load_rgb(path, max_side=DESCRIPTOR_MAX_SIDE)
        return descriptor(rgb), None
    except ImageLoadError as error:
        return None, str(error)
    except InvalidInputError as error:  # e.g. smaller than the descriptors' 16 x 16
        return None, f"{path}: {error}"


#: Decoded batches that may wait for the forward pass: enough to keep it fed, and a bound
#: on memory (decoding small photos is faster than encoding them, so without a bound the
#: decoded pixels of a whole collection would pile up).
PREFETCH_BATCHES = 4


class _Window:
    """Lets at most `size` jobs be handed out that the consumer has not taken back yet.

    ``feed(jobs)`` is iterated by the pool's task thread; the consumer calls `done` for
    each result it takes, and `close` to let the feeding stop early.
    """

    def __init__(self, size: int) -> None:
        self._free = threading.Semaphore(size)
        self._closed = False

    def feed(self, jobs: Iterable) -> Iterator:  # type: ignore[type-arg]
        for job in jobs:
            self._free.acquire()
            if self._closed:
                return
            yield job

    def done(self) -> None:
        self._free.release()

    def close(self) -> None:
        self._closed = True
        self._free.release()


#: Median file size above which photos count as large: decoding a JPEG costs about in
#: proportion to its size (48 ms of CPU for a 24-megapixel one even at 1/8 scale, 3 ms for
#: a 192 x 128 one, against 37 ms for EfficientNet-Lite2's forward pass), so large photos
#: are decode-bound and small ones encode-bound (docs/benchmarks.md).
LARGE_FILE_BYTES = 1 << 20


def default_workers(paths: Sequence[str | Path] = ()) -> int:
    """Decoding processes for `paths` (median of up to 64 sampled files' sizes).

    Large photos: one per core. Small photos: one per core beyond the first, which the
    forward pass uses; on 2 cores or fewer, none: a decoding process there takes half
    the machine from the forward pass, and decoding between forward passes is faster
    (Corel-5k: 0.84 of forward-only throughput against 0.71 with one process).
    """
    cores = os.cpu_count() or 2
    if photos_are_large(paths):
        return cores
    return 0 if cores <= 2 else cores - 1


def photos_are_large(paths: Sequence[str | Path]) -> bool:
    """Whether the median size of up to 64 sampled files exceeds `LARGE_FILE_BYTES`
    (decoding them costs more than encoding them)."""
    sizes = []
    for path in paths[:: max(1, len(paths) // 64)][:64]:
        try:
            sizes.append(os.path.getsize(path))
        except OSError:
            continue
    return bool(sizes) and float(np.median(sizes)) > LARGE_FILE_BYTES


class _Pool:
    """A fork-based process pool, or in-process execution when `workers` is 0."""

    def __init__(self, workers: int) -> None:
        self._pool = multiprocessing.get_context("fork").Pool(workers) if workers > 0 else None

    def imap(self, function, jobs, chunksize: int = 8) -> Iterator:  # type: ignore[no-untyped-def]
        if self._pool is None:
            return map(function, jobs)
        return self._pool.imap(function, jobs, chunksize=chunksize)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()


def extract_features(
    paths: Sequence[str | Path],
    source: FeatureSource,
    store: FeatureStore,
    *,
    maps: Sequence[FeatureMapStore] = (),
    batch_size: int = ENCODER_BATCH_SIZE,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[list[str | None], ExtractionReport]:
    """Compute and store the `source` vectors of every file in `paths` not stored yet:
    an encoder's pooled features (batched forward passes) or a descriptor's vectors
    (computed in the decoding processes, one per core by default).

    `maps`: stores of the encoder's spatial maps (`phototag.features.maps`) to fill in
    the same pass; a file counts as stored once `store` and each of them hold it.

    Returns each path's content digest (``None`` for files that failed, with the reason
    in the report) and the report; fetch the vectors with ``store.get(digests)``.
    """
    for target in maps:
        if target.encoder_id != source_id(source):
            raise InvalidInputError(
                "maps", f"feature-map stores of {source_id(source)}", target.encoder_id
            )
    report = ExtractionReport(n_files=len(paths))
    names = [str(p) for p in paths]
    if workers is None:
        describing = isinstance(source, Descriptor)
        workers = (os.cpu_count() or 2) if describing else default_workers(names)
    pool = _Pool(workers)
    start = time.perf_counter()
    try:
        digests: list[str | None] = []
        hashing = tqdm(
            pool.imap(digest_or_error, names, chunksize=32),
            total=len(names),
            desc="hashing",
            unit="file",
            disable=not progress,
            leave=False,
        )
        for path, (digest, error) in zip(names, hashing, strict=True):
            digests.append(digest)
            if error:
                report.failures.append((path, error))
        known = [d for d in digests if d is not None]
        stored = store.rows_of(known) >= 0
        for target in maps:
            stored &= target.rows_of(known) >= 0
        done = {d for d, s in zip(known, stored, strict=True) if s}
        todo: list[tuple[str, str]] = []
        seen: set[str] = set()
        for path, digest in zip(names, digests, strict=True):
            if digest is None or digest in done or digest in seen:
                continue
            seen.add(digest)
            todo.append((path, digest))
        report.n_reused = sum(1 for d in digests if d is not None and d in done)
        start = time.perf_counter()
        bar = tqdm(total=len(todo), desc="features", unit="img", disable=not progress)
        paths_todo = [path for path, _ in todo]
        batches, compute = _pipeline(source, paths_todo, batch_size, pool, store, maps)
        with closing(batches):
            for indices, batch, failures in batches:
                report.failures.extend(failures)
                if batch:
                    batch_digests = [todo[i][1] for i in indices]
                    for target, rows in compute(batch):
                        target.add(batch_digests, rows)
                    report.n_computed += len(batch)
                bar.update(len(batch) + len(failures))
        bar.close()
    finally:
        pool.close()
    report.seconds = time.perf_counter() - start
    failed = {path for path, _ in report.failures}
    return [None if p in failed else d for p, d in zip(names, digests, strict=True)], report


def decoded_batches(
    paths: Sequence[str | Path], preprocess: Preprocess, batch_size: int, pool: _Pool
) -> Iterator[tuple[list[int], list[np.ndarray], list[tuple[str, str]]]]:
    """The photos as the encoder's uint8 inputs, `batch_size` at a time, decoded in `pool`.

    Yields ``(indices into paths, inputs, failures met since the last batch)``; failures
    are ``(path, reason)``. Decoding runs at most `PREFETCH_BATCHES` batches ahead of the
    consumer. Close the generator (`contextlib.closing`) before closing the pool.
    """
    return _batched(_decode, [(str(p), preprocess) for p in paths], batch_size, pool)


def decode_photos(
    paths: Sequence[str | Path], preprocess: Preprocess, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Every photo as the encoder's uint8 input, all in memory (for training, which visits
    each photo many times): ``[N, S, S, 3]`` pixels of the files that decoded, their
    positions in `paths`, and ``(path, reason)`` for the others."""
    pool = _Pool(default_workers(paths) if workers is None else workers)
    rows: list[int] = []
    pixels: list[np.ndarray] = []
    failures: list[tuple[str, str]] = []
    try:
        with closing(decoded_batches(paths, preprocess, 256, pool)) as batches:
            for indices, batch, failed in batches:
                rows.extend(indices)
                pixels.extend(batch)
                failures.extend(failed)
    finally:
        pool.close()
    size = preprocess.input_size
    stacked = np.stack(pixels) if pixels else np.zeros((0, size, size, 3), np.uint8)
    return stacked, np.asarray(rows, dtype=np.int64), failures


def _batched(
    function: Callable[[tuple], tuple[np.ndarray | None, str | None]],  # type: ignore[type-arg]
    jobs: Sequence[tuple],  # type: ignore[type-arg]
    batch_size: int,
    pool: _Pool,
) -> Iterator[tuple[list[int], list[np.ndarray], list[tuple[str, str]]]]:
    """`decoded_batches` for any per-file `function` of jobs ``(path, ...)``."""
    window = _Window(PREFETCH_BATCHES * batch_size)
    try:
        results = pool.imap(function, window.feed(jobs))
        indices: list[int] = []
        batch: list[np.ndarray] = []
        failures: list[tuple[str, str]] = []
        for i, (value, error) in enumerate(results):
            window.done()
            if value is None:
                failures.append((jobs[i][0], error or "unknown error"))
            else:
                indices.append(i)
                batch.append(value)
            if len(batch) == batch_size:
                yield indices, batch, failures
                indices, batch, failures = [], [], []
        if batch or failures:
            yield indices, batch, failures
    finally:
        window.close()


def _pipeline(  # type: ignore[no-untyped-def]
    source: FeatureSource,
    paths: list[str],
    batch_size: int,
    pool: _Pool,
    store: FeatureStore,
    maps: Sequence[FeatureMapStore],
):
    """`source`'s batches of per-file results and the function turning one into
    ``(store, rows)`` pairs to add: a descriptor computes its vectors in the pool, an
    encoder its inputs (then one forward pass per view runs here: pooled vectors and the
    plain view's maps from the photo, the flipped view's maps from its mirror image)."""
    if isinstance(source, Descriptor):
        if maps:
            raise InvalidInputError("maps", "an image encoder's stores", "a descriptor")
        jobs = [(p, source) for p in paths]
        return _batched(_describe, jobs, batch_size, pool), lambda b: [(store, np.stack(b))]

    def encode(batch: list[np.ndarray]) -> list[tuple[RowStore, np.ndarray]]:
        pixels = np.stack(batch)
        added: list[tuple[RowStore, np.ndarray]] = []
        for view in dict.fromkeys(["plain", *(target.view for target in maps)]):
            wanted = [target for target in maps if target.view == view]
            names = list(dict.fromkeys(target.stage for target in wanted))
            out = source.forward_pixels(
                view_pixels(pixels, view), [*names, POOLED] if view == "plain" else names
            )
            added += [(t, as_array(out[t.stage]).astype(np.float16)) for t in wanted]
            if view == "plain":
                added.append((store, as_array(out[POOLED]).astype(np.float32, copy=False)))
        return added

    return decoded_batches(paths, source.preprocess, batch_size, pool), encode
