"""Annotating photos on Ray Data: decoding, encoding and scoring spread over a cluster.

One streamed Ray Data pipeline::

    paths -> map_batches(decode)      tasks: file -> encoder input (uint8), as locally
          -> map_batches(_Annotate)   actors: encoder + model, loaded once per actor
          -> driver                   records put back in input order -> FileAnnotation

With one CPU per actor (the default) both steps ask for the same resources, so Ray Data
fuses them into the actors (decoded pixels never cross the network; each actor decodes a
batch, then encodes and scores it), and scales the actor pool with the cluster's CPUs.

It gives the same records as the local engine (`phototag.library.annotation.annotate_files`):
the same photo-to-input path (`phototag.features.extract.load_model_input`), the same
forward pass and decoding, the same error text for unreadable photos, and the input
order. Nothing large is pickled: workers receive the model as a shipped name or a
directory path (`ModelSource`) and the encoders by name, and load them from the
safetensors + JSON files themselves, so models and photos must be readable at the same
paths on every node. The feature store is not used: features are computed on the
workers on every run. See docs/ray.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from phototag.data import AnnotationSet
from phototag.errors import InvalidInputError, PhototagError, check_int
from phototag.evaluation.decoding import Decoder, decoder_from_config
from phototag.features.encoders import Preprocess
from phototag.features.encoders.base import POOLED
from phototag.features.extract import create_source, is_descriptor, load_model_input
from phototag.features.maps import stage_maps
from phototag.features.stream import default_batch_size
from phototag.imaging import ImageLoadError
from phototag.library.annotation import FileAnnotation, Scorer, UserVocabulary
from phototag.library.inputs import with_inputs
from phototag.models.base import decoded_tags
from phototag.pretrained import DEFAULT_MODEL, load_model

INSTALL_HINT = "pip install 'phototag[ray]'"

__all__ = ["INSTALL_HINT", "ModelSource", "annotate_files_ray", "import_ray"]


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or an error that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InvalidInputError(
            "--engine",
            "Ray Data installed for engine 'ray'",
            "no module named 'ray'",
            f"Install it with `{INSTALL_HINT}`, or use --engine local.",
        ) from None
    return ray


@dataclass(frozen=True)
class ModelSource:
    """How a worker rebuilds the model: what `phototag annotate --model` names.

    ``model`` is a shipped model name or an absolute model directory; ``words`` is the
    user's word list (``--vocabulary``), scored as `UserVocabulary` does.
    """

    model: str = DEFAULT_MODEL
    words: tuple[str, ...] | None = None

    @classmethod
    def of(cls, model: str | Path, words: Sequence[str] | None = None) -> ModelSource:
        """`model` as `load_model` takes it; a directory is made absolute for the workers."""
        path = Path(model).expanduser()
        name = str(path.resolve()) if path.is_dir() else str(model)
        return cls(name, None if words is None else tuple(words))

    def load(self) -> Scorer:
        trained = load_model(self.model)
        return trained if self.words is None else UserVocabulary(self.words, trained=trained)


# ------------------------------------------------------------------ worker side
def _decode(batch: dict[str, np.ndarray], preprocesses: list[Preprocess]) -> dict[str, np.ndarray]:
    """Ray task: each photo as every distinct encoder input; unreadable ones get `error`."""
    paths = [str(p) for p in batch["path"]]
    errors = [""] * len(paths)
    out: dict[str, np.ndarray] = {"index": batch["index"], "path": batch["path"]}
    for column, preprocess in enumerate(preprocesses):
        size = preprocess.input_size
        pixels = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
        for i, path in enumerate(paths):
            if errors[i]:
                continue
            try:
                pixels[i] = load_model_input(path, preprocess)
            except ImageLoadError as error:
                errors[i] = str(error)
            except OSError as error:  # same text as the local engine's hashing step
                errors[i] = f"{path}: cannot read ({error.strerror or error})"
        out[f"pixels{column}"] = pixels
    out["error"] = np.array(errors, dtype=object)
    return out


class _Annotate:
    """Ray actor: loads the encoders and the model once, then annotates decoded batches."""

    def __init__(
        self,
        source: ModelSource,
        encoders: list[tuple[str, int]],
        decoder: dict[str, Any] | None,
        runtime: str,
        threads: int,
    ) -> None:
        import torch

        torch.set_num_threads(threads)
        self.model = source.load()
        self.inputs = self.model.required_inputs()
        self.decoder = decoder_from_config(decoder) if decoder else self.model.decoder_
        self.encoders = [
            (name, create_source(name, runtime=runtime), f"pixels{column}")
            for name, column in encoders
        ]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        errors = batch["error"].copy()
        ok = np.flatnonzero(errors == "")
        tags = np.full(len(errors), "", dtype=object)
        if len(ok):
            paths = [str(p) for p in batch["path"][ok]]
            vocabulary = self.model.vocabulary_
            data = AnnotationSet(
                name="photos",
                item_ids=paths,
                vocabulary=vocabulary,
                labels=sp.csr_matrix((len(paths), len(vocabulary)), dtype=bool),
                image_paths=paths,
            )
            for name, encoder, column in self.encoders:
                self._encode(data, name, encoder, batch[column][ok])
            data, report = with_inputs(data, self.inputs)  # keywords, albums: no pixels
            row = {path: i for i, path in enumerate(paths)}
            for path, reason in report.failures:
                errors[ok[row[path]]] = reason
            if len(data):
                decoded = decoded_tags(self.model.predict(data), vocabulary, self.decoder)
                for path, pairs in zip(data.item_ids, decoded, strict=True):
                    tags[ok[row[path]]] = json.dumps(pairs)  # floats round-trip exactly
        return {"index": batch["index"], "error": errors, "tags": tags}

    def _encode(self, data: AnnotationSet, name: str, encoder: Any, pixels: np.ndarray) -> None:
        """The pooled features and stage maps the model reads of `encoder`."""
        specs = [spec for spec in self.inputs.maps if spec.encoder == name]
        computed = stage_maps(encoder, pixels, specs, pooled=name in self.inputs.features)
        if POOLED in computed:
            data.features[name] = computed.pop(POOLED)
        data.maps.update(computed)


# ------------------------------------------------------------------ driver side
def annotate_files_ray(
    paths: Sequence[str | Path],
    source: ModelSource,
    decoder: Decoder | None = None,
    *,
    encoders: Sequence[str] | None = None,
    address: str | None = None,
    runtime: str = "onnx",
    batch_size: int | None = None,
    actors: int | None = None,
    actor_cpus: int = 1,
    progress: bool = True,
) -> Iterator[FileAnnotation]:
    """Yield one `FileAnnotation` per path, in input order, computed on Ray Data.

    Uses the Ray instance already initialised in this process; otherwise connects to
    `address` (``"auto"`` or ``"HEAD:6379"`` from a node of the cluster; Ray Data does
    not run through Ray Client, so ``ray://`` addresses are refused) or, when it is
    ``None``, starts a new local instance (never joins a running one), and shuts it
    down at the end. `encoders` are the feature sources of the model's
    ``required_inputs()`` (read from the model when not given). `actors` is
    the number of model actors (default: an autoscaling pool of 1 up to the cluster's
    CPUs / `actor_cpus`), each running its forward passes on `actor_cpus` threads.
    `batch_size`: photos per batch (default: `phototag.features.stream.default_batch_size`).
    """
    names = [str(p) for p in paths]
    batch_size = check_int(
        "batch_size", default_batch_size(names) if batch_size is None else batch_size, 1
    )
    ray = import_ray()
    if not names:
        return
    if encoders is None:
        encoders = source.load().required_inputs().sources
    recipes: list[Preprocess] = []
    columns: list[tuple[str, int]] = []
    descriptors = sorted(name for name in encoders if is_descriptor(name))
    if descriptors:
        raise InvalidInputError(
            "--engine ray",
            "a model that reads image encoders only",
            f"a model that also reads the descriptors {', '.join(descriptors)}",
            "Annotate with the local engine (leave out --engine ray).",
        )
    for name in encoders:
        preprocess = create_source(name, runtime=runtime).preprocess
        if preprocess not in recipes:
            recipes.append(preprocess)
        columns.append((name, recipes.index(preprocess)))
    started = _connect(ray, address)
    ray_data_log = logging.getLogger("ray.data")
    level = ray_data_log.level
    ray_data_log.setLevel(logging.ERROR)  # per-run INFO/WARNING chatter on stderr
    try:
        dataset = _pipeline(
            ray, names, source, columns, recipes, decoder, runtime, batch_size, actors, actor_cpus
        )
        yield from _in_input_order(dataset, names, progress)
    except ray.exceptions.RayError as error:  # its text ends with the worker's own error
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise PhototagError(
            f"ray engine: a worker failed: {lines[-1] if lines else type(error).__name__} "
            "(models and photos must be readable at the same paths on every node; docs/ray.md)"
        ) from None
    finally:
        ray_data_log.setLevel(level)
        if started:
            ray.shutdown()


def _connect(ray: Any, address: str | None) -> bool:
    """Initialise Ray unless it already is; True when this call started it."""
    if address is not None and address.startswith("ray://"):
        raise InvalidInputError(
            "--address",
            "a cluster address for a driver on a node of the cluster (auto or HOST:6379)",
            repr(address),
            "Ray Data does not run through Ray Client (ray://): run phototag on a node of the "
            "cluster with --address auto (see docs/ray.md)",
        )
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:  # a new instance, even when a cluster runs on this machine
        options["include_dashboard"] = False
    try:
        ray.init(address="local" if address is None else address, **options)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise InvalidInputError(
            "--address",
            "the address of a running Ray cluster",
            f"{address!r} ({error})",
            "Start one with `ray start --head` and pass `auto` or `HOST:6379` on a node of "
            "the cluster; see docs/ray.md.",
        ) from None
    return True


def _pipeline(
    ray: Any,
    names: list[str],
    source: ModelSource,
    encoders: list[tuple[str, int]],
    recipes: list[Preprocess],
    decoder: Decoder | None,
    runtime: str,
    batch_size: int,
    actors: int | None,
    actor_cpus: int,
) -> Any:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    blocks = max(1, -(-len(names) // batch_size))
    dataset = ray.data.from_items(
        [{"index": i, "path": p} for i, p in enumerate(names)], override_num_blocks=blocks
    )
    if recipes:
        dataset = dataset.map_batches(
            _decode, fn_kwargs={"preprocesses": recipes}, batch_size=batch_size,
            batch_format="numpy", num_cpus=1,
        )  # fmt: skip
    else:  # a model without image features (e.g. the label prior) reads no pixels
        dataset = dataset.map_batches(_no_pixels, batch_format="numpy", num_cpus=1)
    if actors is None:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        pool = ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, cpus // actor_cpus))
    else:
        pool = ray.data.ActorPoolStrategy(size=actors)
    return dataset.map_batches(
        _Annotate,
        fn_constructor_kwargs={
            "source": source,
            "encoders": encoders,
            "decoder": None if decoder is None else decoder.to_config(),
            "runtime": runtime,
            "threads": actor_cpus,
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=pool,
        num_cpus=actor_cpus,
    )


def _no_pixels(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = len(batch["index"])
    return {**batch, "error": np.full(n, "", dtype=object)}


def _in_input_order(dataset: Any, names: list[str], progress: bool) -> Iterator[FileAnnotation]:
    """Stream the dataset's records out in input order (Ray Data finishes out of order)."""
    pending: dict[int, FileAnnotation] = {}
    following = 0
    bar = tqdm(total=len(names), desc="annotating (ray)", unit="photo", disable=not progress)
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for index, error, tags in zip(
                batch["index"], batch["error"], batch["tags"], strict=True
            ):
                pending[int(index)] = _record(names[int(index)], str(error), str(tags))
            while following in pending:
                yield pending.pop(following)
                following += 1
                bar.update(1)
    finally:
        bar.close()
    if following != len(names):
        raise PhototagError(
            f"ray engine: {len(names) - following} of {len(names)} photos came back without "
            "a result; run again, or use --engine local"
        )


def _record(path: str, error: str, tags: str) -> FileAnnotation:
    if error:
        return FileAnnotation(path, error=error)
    return FileAnnotation(
        path, tuple((str(label), float(score)) for label, score in json.loads(tags))
    )
