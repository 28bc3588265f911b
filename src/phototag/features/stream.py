"""Photos -> pooled encoder features, streamed in order, decoding overlapping encoding.

The pipeline of `phototag annotate` and `phototag serve`. Three stages run at once:

- decoding threads hash each file, and decode (JPEGs at reduced scale,
  `phototag.features.extract.load_model_input`) those whose features the feature store
  does not hold yet; Pillow and hashlib release the GIL, so they use the cores the
  forward pass leaves idle;
- the encoder thread runs one forward pass per batch and appends the new vectors to
  the feature store;
- the caller's thread receives each `FeatureBatch` in input order and works on it
  (scoring, output, keyword writing, journaling) while the next batches decode and
  encode.

At most `PREFETCH_BATCHES` batches wait between two stages, so memory stays bounded on
any library size. A file that cannot be read or decoded is reported in its batch, which
goes on without it; the features of a photo are computed once and reused by later runs.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from phototag.errors import check_int
from phototag.features import ENCODER_BATCH_SIZE, LARGE_PHOTO_BATCH_SIZE
from phototag.features.encoders.runtime import usable_cores
from phototag.features.extract import (
    digest_or_error,
    load_model_input,
    open_store,
    photos_are_large,
)
from phototag.features.store import default_store_root
from phototag.imaging import ImageLoadError

if TYPE_CHECKING:
    from phototag.features.encoders import ImageEncoder

__all__ = [
    "FeatureBatch",
    "PREFETCH_BATCHES",
    "decode_threads",
    "default_batch_size",
    "stream_features",
]

#: Batches that may wait between two stages: enough to keep the forward pass fed while
#: the caller writes a batch, and a bound on the pixels held in memory.
PREFETCH_BATCHES = 2

_POOLED = "pooled"  # the encoders' name for global-average-pooled features


@dataclass(frozen=True)
class FeatureBatch:
    """Consecutive photos of a stream: why each could not be read (None: it was), and
    the pooled vectors of those that were, in order (``vectors[k]`` is the k-th photo
    whose error is None)."""

    paths: list[str]
    errors: list[str | None]
    vectors: np.ndarray
    #: How many of the vectors were computed now (the others came from the store).
    n_computed: int = 0

    @property
    def kept(self) -> list[str]:
        """The paths that have a vector, in order."""
        return [path for path, error in zip(self.paths, self.errors, strict=True) if not error]


def decode_threads(paths: Sequence[str | Path]) -> int:
    """Decoding threads for `paths`: one per core for large photos (their decoding costs
    more than the forward pass), else one (a small photo decodes in a tenth of it)."""
    return usable_cores() if photos_are_large(paths) else 1


def default_batch_size(paths: Sequence[str | Path]) -> int:
    """Photos per forward pass for `paths`: `ENCODER_BATCH_SIZE`, or
    `LARGE_PHOTO_BATCH_SIZE` for large photos. Decoding one of those costs as much CPU
    as encoding it, and nothing can be encoded before the first batch is decoded nor
    decoded while the last is encoded: small batches keep both going from the first
    photo to the last (the forward pass costs the same per photo from 4 to 32)."""
    return LARGE_PHOTO_BATCH_SIZE if photos_are_large(paths) else ENCODER_BATCH_SIZE


def stream_features(
    paths: Sequence[str | Path],
    encoder: ImageEncoder,
    *,
    store_root: str | Path | None = None,
    dtype: str = "float32",
    batch_size: int | None = None,
    workers: int | None = None,
) -> Iterator[FeatureBatch]:
    """Yield the pooled `encoder` features of `paths`, `batch_size` photos a batch, in order.

    Vectors already in the feature store under `store_root` (default: the cache's) are
    read, the others computed and stored (in `dtype`), so each batch holds exactly what
    a later run reads back. `batch_size` defaults to `default_batch_size`, `workers`
    (decoding threads) to `decode_threads`.
    Closing the generator early stops the threads.
    """
    names = [os.fspath(p) for p in paths]
    batch_size = check_int(
        "batch_size", default_batch_size(names) if batch_size is None else batch_size, 1
    )
    threads = decode_threads(names) if workers is None else max(1, workers)
    root = default_store_root() if store_root is None else Path(store_root)
    open_store(root, encoder, dtype).close()  # created (or found damaged) here, once
    stop = threading.Event()
    decoded: queue.Queue[Any] = queue.Queue(PREFETCH_BATCHES)
    encoded: queue.Queue[Any] = queue.Queue(PREFETCH_BATCHES)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="phototag-decode")
    read = partial(_read, names, encoder, root, dtype, batch_size, pool, stop)
    encode = partial(_encode, encoder, root, dtype, decoded, stop)
    stages = [
        threading.Thread(target=_run_stage, args=(read, decoded, stop), name="phototag-read",
                         daemon=True),
        threading.Thread(target=_run_stage, args=(encode, encoded, stop),
                         name="phototag-encode", daemon=True),
    ]  # fmt: skip
    for stage in stages:
        stage.start()
    try:
        while (item := encoded.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        for stage in stages:
            stage.join()
        pool.shutdown(wait=True)


# ------------------------------------------------------------------------ stages
_END = object()


@dataclass(frozen=True)
class _Failed:
    """An exception of a stage, handed down to the caller."""

    error: BaseException


@dataclass
class _Pending:
    """A batch between the reader and the encoder: its digests, errors, stored vectors
    and decodes in flight (by position; a duplicate file points at its first copy)."""

    paths: list[str]
    digests: list[str | None]
    errors: list[str | None]
    stored: dict[int, np.ndarray]
    decoding: dict[int, Future[tuple[np.ndarray | None, str | None]]]
    same_as: dict[int, int]


def _put(target: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put `item` unless the stream stopped first; whether it was put."""
    while not stop.is_set():
        try:
            target.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _get(source: queue.Queue[Any], stop: threading.Event) -> Any:
    """The next item, or `_END` once the stream stopped."""
    while not stop.is_set():
        try:
            return source.get(timeout=0.05)
        except queue.Empty:
            continue
    return _END


def _run_stage(
    produce: Callable[[], Iterator[Any]], out: queue.Queue[Any], stop: threading.Event
) -> None:
    """Put each item `produce` yields into `out`, then `_END`, or the exception that
    stopped it (the caller raises it)."""
    outcome: Any = _END
    try:
        for item in produce():
            if not _put(out, item, stop):
                return
    except BaseException as error:  # noqa: BLE001 - handed to the caller
        outcome = _Failed(error)
    _put(out, outcome, stop)


def _read(
    paths: list[str],
    encoder: ImageEncoder,
    root: Path,
    dtype: str,
    batch_size: int,
    pool: ThreadPoolExecutor,
    stop: threading.Event,
) -> Iterator[_Pending]:
    """Hash each batch, read the vectors the store holds, start decoding the others."""
    with open_store(root, encoder, dtype) as store:  # this thread's connection
        for start in range(0, len(paths), batch_size):
            if stop.is_set():
                return
            yield _pending(paths[start : start + batch_size], encoder, store, pool)


def _pending(paths: list[str], encoder: ImageEncoder, store: Any, pool: ThreadPoolExecutor):  # type: ignore[no-untyped-def]
    hashed = list(pool.map(digest_or_error, paths))
    digests = [digest for digest, _ in hashed]
    errors = [error for _, error in hashed]
    known = [i for i, digest in enumerate(digests) if digest is not None]
    rows = store.rows_of([digests[i] for i in known])
    found = [i for i, row in zip(known, rows, strict=True) if row >= 0]
    vectors, _ = store.get([digests[i] for i in found])
    batch = _Pending(paths, digests, errors, dict(zip(found, vectors, strict=True)), {}, {})
    first: dict[str, int] = {}
    for i, row in zip(known, rows, strict=True):
        digest = digests[i]
        if row >= 0:
            continue
        if digest in first:  # the same bytes twice: decoded once
            batch.same_as[i] = first[digest]
            continue
        first[digest] = i  # type: ignore[index]
        batch.decoding[i] = pool.submit(_decode, paths[i], encoder.preprocess)
    return batch


def _encode(
    encoder: ImageEncoder,
    root: Path,
    dtype: str,
    decoded: queue.Queue[Any],
    stop: threading.Event,
) -> Iterator[FeatureBatch]:
    """One forward pass per batch of decoded photos; new vectors into the store."""
    with open_store(root, encoder, dtype) as store:  # this thread's connection
        while (batch := _get(decoded, stop)) is not _END:
            if isinstance(batch, _Failed):
                raise batch.error
            yield _encoded(batch, encoder, store)


def _encoded(batch: _Pending, encoder: ImageEncoder, store: Any) -> FeatureBatch:
    vectors = dict(batch.stored)
    errors = list(batch.errors)
    fresh: list[int] = []
    pixels: list[np.ndarray] = []
    for i, future in batch.decoding.items():
        value, error = future.result()
        if value is None:
            errors[i] = error
        else:
            fresh.append(i)
            pixels.append(value)
    if pixels:
        out = encoder.forward_pixels(np.stack(pixels), [_POOLED])
        computed = np.asarray(out[_POOLED], dtype=np.float32)
        store.add([batch.digests[i] for i in fresh], computed)
        as_stored = computed.astype(store.dtype)  # what a later run reads back
        vectors.update(zip(fresh, as_stored, strict=True))
    for i, first in batch.same_as.items():
        if first in vectors:
            vectors[i] = vectors[first]
        else:
            errors[i] = errors[first]
    rows = [vectors[i] for i in range(len(batch.paths)) if errors[i] is None]
    stacked = np.stack(rows) if rows else np.zeros((0, encoder.num_features), store.dtype)
    return FeatureBatch(batch.paths, errors, stacked, n_computed=len(fresh))


# ------------------------------------------------------------------- per file
def _decode(path: str, preprocess: Any) -> tuple[np.ndarray | None, str | None]:
    """The encoder input of one photo, or why it has none; never raises, so that one
    file cannot stop its batch."""
    try:
        return load_model_input(path, preprocess), None
    except ImageLoadError as error:
        return None, str(error)
    except Exception as error:  # noqa: BLE001 - any one file's failure is that file's
        return None, f"{path}: cannot be decoded ({type(error).__name__}: {error})"
