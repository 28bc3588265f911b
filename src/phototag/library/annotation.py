"""Annotating photo files with a trained model: files in, ranked keywords out.

Photos stream through in batches (`phototag.features.stream`): decoding, encoding and
scoring overlap, output comes in input order, and memory stays bounded on any library
size; their encoder features go through the feature store, so annotating the same
photos again (with this or another model on the same encoder) decodes nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from phototag.data import AnnotationSet, Vocabulary
from phototag.data.inputs import ModelInputs
from phototag.evaluation.decoding import Decoder, TopK
from phototag.evaluation.predictions import Prediction
from phototag.library.inputs import with_inputs
from phototag.models.base import Annotator, decoded_tags
from phototag.models.open_vocabulary import UncoveredWordsWarning

if TYPE_CHECKING:  # the encoders load only when photos are annotated
    from phototag.features.extract import FeatureSource
    from phototag.features.stream import FeatureBatch


class Scorer(Protocol):
    """What annotating needs of a model: an `Annotator`, or `UserVocabulary`."""

    vocabulary_: Vocabulary
    decoder_: Decoder

    def required_inputs(self) -> ModelInputs: ...
    def predict(self, inputs: AnnotationSet) -> Prediction: ...


class UserVocabulary:
    """A user's own word list, scored without training.

    Every word gets the open-vocabulary score (ImageNet classes mapped through WordNet,
    `imagenet_wordnet`); a word the trained model also knows (`shared_keywords`) gets
    the larger of the two scores. Labels of the trained model that are not in the list
    are not suggested. One `UncoveredWordsWarning` names the words neither can score.
    Decodes with the top 5 words unless told otherwise.
    """

    def __init__(self, words: Sequence[str], trained: Annotator | None = None) -> None:
        from phototag.features.extract import is_descriptor, parse_source_spec
        from phototag.models.open_vocabulary import ImageNetWordNetAnnotator

        features = trained.required_inputs().features if trained is not None else ()
        # the ImageNet classifier of the trained model's plain (option-free) encoder
        plain = [n for n in features if not is_descriptor(n) and not parse_source_spec(n)[1]]
        encoder = plain[0] if plain else "efficientnet_lite2"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UncoveredWordsWarning)
            self.open_vocabulary = ImageNetWordNetAnnotator.from_vocabulary(
                list(words), encoder_name=encoder
            )
        self.trained = trained
        self.vocabulary_ = self.open_vocabulary.vocabulary_
        self.decoder_: Decoder = TopK(5)
        known = shared_keywords(self.vocabulary_, trained.vocabulary_)[0] if trained else []
        report = self.open_vocabulary.coverage_report()
        never = [w for i, w in enumerate(report.words) if not w.covered and i not in known]
        if never:
            listed = "; ".join(f"{w.word!r} ({w.reason})" for w in never[:8])
            more = f"; and {len(never) - 8} more" if len(never) > 8 else ""
            warnings.warn(
                UncoveredWordsWarning(
                    f"{len(never)} of {len(report.words)} words are neither an ImageNet "
                    f"class nor a keyword of the model; never scored (always 0): {listed}{more}"
                ),
                stacklevel=2,
            )

    def required_inputs(self) -> ModelInputs:
        inputs = self.open_vocabulary.required_inputs()
        return inputs if self.trained is None else inputs | self.trained.required_inputs()

    def predict(self, inputs: AnnotationSet) -> Prediction:
        """The open-vocabulary scores, raised to the trained model's where it has the word
        (by keyword: the user's ``sky`` is the model's ``Nature|Sky``)."""
        scores = self.open_vocabulary.scores(inputs)
        if self.trained is not None:
            mine, theirs = shared_keywords(self.vocabulary_, self.trained.vocabulary_)
            if mine:
                scores[:, mine] = np.maximum(
                    scores[:, mine], self.trained.scores(inputs)[:, theirs]
                )
        return Prediction(scores=scores)


def shared_keywords(words: Vocabulary, labels: Vocabulary) -> tuple[list[int], list[int]]:
    """Columns of `words` and of `labels` that name the same keyword: a label's last
    level (``Nature|Sky`` is ``sky``), case-insensitively, or a word's singular in "s"."""

    def key(label: str) -> str:
        return label.rsplit("|", 1)[-1].strip().casefold()

    by_key = {key(label): j for j, label in enumerate(labels)}
    mine, theirs = [], []
    for i, word in enumerate(words):
        k = key(word)
        j = by_key.get(k, by_key.get(k[:-1]) if k.endswith("s") else None)
        if j is not None:
            mine.append(i)
            theirs.append(j)
    return mine, theirs


@dataclass(frozen=True)
class FileAnnotation:
    """A photo's suggested keywords, best first, or the reason it could not be read."""

    path: str
    tags: tuple[tuple[str, float], ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class FilePrediction:
    """What the model predicts for one photo (a one-row `Prediction`), or the reason it
    could not be read."""

    path: str
    prediction: Prediction | None = None
    error: str | None = None


def annotate_files(
    paths: Sequence[str | Path],
    model: Scorer,
    decoder: Decoder | None = None,
    *,
    store_root: str | Path | None = None,
    runtime: str = "onnx",
    batch_size: int | None = None,
    workers: int | None = None,
    progress: bool = True,
    sources: Mapping[str, FeatureSource] | None = None,
) -> Iterator[FileAnnotation]:
    """Yield one `FileAnnotation` per path, in order; unreadable photos carry an error.

    `decoder` defaults to the model's own (``model.decoder_``); it sees the model's whole
    prediction (scores, and its quantities or label sets where it makes them). The other
    arguments are those of `predict_files`.
    """
    decoder = decoder or model.decoder_
    results = predict_files(
        paths, model, store_root=store_root, runtime=runtime, batch_size=batch_size,
        workers=workers, progress=progress, sources=sources,
    )  # fmt: skip
    with closing(results):
        for result in results:
            if result.prediction is None:
                yield FileAnnotation(result.path, error=result.error)
            else:
                tags = decoded_tags(result.prediction, model.vocabulary_, decoder)[0]
                yield FileAnnotation(result.path, tuple(tags))


def predict_files(
    paths: Sequence[str | Path],
    model: Scorer,
    *,
    store_root: str | Path | None = None,
    runtime: str = "onnx",
    batch_size: int | None = None,
    workers: int | None = None,
    progress: bool = True,
    sources: Mapping[str, FeatureSource] | None = None,
) -> Iterator[FilePrediction]:
    """Yield one `FilePrediction` per path, in order; unreadable photos carry an error.

    The model's first encoder feature streams through `phototag.features.stream` (decoding
    threads, the encoder thread and the feature store), so a batch is scored here while
    the next ones decode and encode; the model's other inputs are filled per batch by
    `phototag.library.inputs.with_inputs` (stage maps in memory, not kept). `sources`
    maps feature names to their sources already built (a long-running service keeps them
    loaded); the others are built on `runtime`. `batch_size`: photos per batch (default:
    `phototag.features.stream.default_batch_size`); `workers`: decoding threads (default:
    `phototag.features.stream.decode_threads`).
    """
    from phototag.features.extract import create_sources, is_descriptor
    from phototag.features.stream import default_batch_size

    names = [str(p) for p in paths]
    batch_size = default_batch_size(names) if batch_size is None else batch_size
    inputs = model.required_inputs()
    built = dict(sources or {})  # every source built once, not once per batch
    built.update(create_sources([n for n in inputs.sources if n not in built], runtime=runtime))
    streamed = next((name for name in inputs.features if not is_descriptor(name)), None)
    if streamed is None:
        batches: Iterator[FeatureBatch] = _unfilled(names, batch_size)
    else:
        from phototag.features.stream import stream_features

        batches = stream_features(
            names, built[streamed], store_root=store_root, batch_size=batch_size,  # type: ignore[arg-type]
            workers=workers,
        )  # fmt: skip
    options = dict(store_root=store_root, runtime=runtime, batch_size=batch_size, sources=built)
    bar = tqdm(total=len(names), desc="annotating", unit="photo", disable=not progress)
    try:
        with closing(batches), _one_blas_thread():
            for batch in batches:
                yield from _predict_batch(batch, streamed, model, options)
                bar.update(len(batch.paths))
    finally:
        bar.close()


def _one_blas_thread() -> AbstractContextManager[object]:
    """BLAS on one thread while photos stream: the forward pass keeps the cores busy, and
    a second BLAS thread, spinning between the scoring's small matrix products, only
    takes CPU from it (the default model scores 32 photos in 4 ms of CPU on one thread,
    12 ms on two)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def _unfilled(paths: list[str], batch_size: int) -> Iterator[FeatureBatch]:
    """`paths` as batches without features (every input is filled by `with_inputs`)."""
    from phototag.features.stream import FeatureBatch

    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        yield FeatureBatch(chunk, [None] * len(chunk), np.zeros((len(chunk), 0), np.float32))


def _predict_batch(
    batch: FeatureBatch, streamed: str | None, model: Scorer, options: dict
) -> Iterator[FilePrediction]:
    kept = batch.kept
    data = AnnotationSet(
        name="photos",
        item_ids=kept,
        vocabulary=model.vocabulary_,
        labels=sp.csr_matrix((len(kept), len(model.vocabulary_)), dtype=bool),
        image_paths=kept,
        features={} if streamed is None else {streamed: batch.vectors},
    )
    # in-process (workers=0): the stream's threads are running, so nothing may fork now
    data, report = with_inputs(data, model.required_inputs(), store_maps=False, workers=0,
                               **options)  # fmt: skip
    errors = {path: error for path, error in zip(batch.paths, batch.errors, strict=True) if error}
    errors.update(report.failures)
    prediction = model.predict(data) if len(data) else None
    rows = {path: row for row, path in enumerate(data.item_ids)}
    for path in batch.paths:
        if prediction is not None and path in rows:
            yield FilePrediction(path, prediction.take([rows[path]]))
        else:
            yield FilePrediction(path, error=errors.get(path, "no features"))
