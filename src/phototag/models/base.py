"""The `Annotator` interface every model implements, and its on-disk format.

A saved model is a directory with ``config.json`` (model name, constructor arguments,
vocabulary, decoder, library version) and ``weights.safetensors`` (every learned array).
Nothing is pickled, so loading a model file never runs code.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from safetensors.numpy import load_file, save_file

from phototag.data import AnnotationSet, Vocabulary
from phototag.decoding import Decoder, TopK, decoder_from_config
from phototag.errors import InvalidInputError, NotFittedError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT = "phototag.Annotator"


def library_version() -> str:
    from phototag import __version__

    return __version__


class Annotator(ABC):
    """Base class of all models: ``fit`` on an `AnnotationSet`, then ``scores``/``annotate``.

    Subclasses take their configuration as explicit keyword arguments stored under the
    same attribute names (so the constructor signature is the config), and keep learned
    state in attributes ending in ``_``: numpy arrays among them are saved as weights,
    JSON-compatible values listed in `extra_state` go into the config file. A model made
    of other models (`phototag.models.ensemble`) overrides `_arrays`, `_json_state` and
    `_restore` to save them inside its own files.
    """

    name: ClassVar[str] = ""
    extra_state: ClassVar[tuple[str, ...]] = ()

    vocabulary_: Vocabulary
    decoder_: Decoder

    # --------------------------------------------------------------- interface
    @abstractmethod
    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        """Learn from `train`; set every learned ``*_`` attribute but `vocabulary_`."""

    @abstractmethod
    def _scores(self, inputs: AnnotationSet) -> np.ndarray:
        """Relevance of every vocabulary label for each item of `inputs`."""

    def fit(self, train: AnnotationSet, valid: AnnotationSet | None = None) -> Self:
        """Learn from the labelled items of `train` (`valid` for early stopping / tuning)."""
        if train.n_items == 0:
            raise InvalidInputError("train", "at least one item", "an empty set")
        self.vocabulary_ = train.vocabulary
        self.decoder_ = getattr(self, "decoder_", TopK(5))
        self._fit(train, valid)
        return self

    def scores(self, inputs: AnnotationSet) -> np.ndarray:
        """float32 ``[n_items, n_labels]`` scores, higher = more relevant."""
        self._check_fitted()
        scores = np.asarray(self._scores(inputs), dtype=np.float32)
        expected = (inputs.n_items, len(self.vocabulary_))
        if scores.shape != expected:
            raise RuntimeError(f"{type(self).__name__} returned {scores.shape}, not {expected}")
        return scores

    def annotate(
        self, inputs: AnnotationSet, decoder: Decoder | None = None
    ) -> list[list[tuple[str, float]]]:
        """Per item, the decoded ``(label, score)`` pairs, best first."""
        return decoded_tags(self.scores(inputs), self.vocabulary_, decoder or self.decoder_)

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, read back from the attributes of the same names."""
        params = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in params if name != "self"}

    def required_features(self) -> tuple[str, ...]:
        """Keys of `AnnotationSet.features` the model reads (its ``features`` argument)."""
        keys = getattr(self, "features", ())
        return (keys,) if isinstance(keys, str) else tuple(keys)

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "vocabulary_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet: call fit() or load a saved model."
            )

    # ------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``weights.safetensors`` into `directory`."""
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = {key: np.ascontiguousarray(value) for key, value in self._arrays().items()}
        config = {
            "format": FORMAT,
            "model": self.name,
            "config": self.get_config(),
            "state": self._json_state(),
            "vocabulary": self.vocabulary_.to_json(),
            "decoder": self.decoder_.to_config(),
            "phototag_version": library_version(),
        }
        save_file(weights, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT})
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Annotator:
        """Load a model saved by `save`; `Annotator.load` picks the right class."""
        directory = Path(directory)
        config = read_model_config(directory)
        from phototag.models.registry import annotator_class

        model_class = annotator_class(config["model"])
        if cls is not Annotator and not issubclass(model_class, cls):
            raise InvalidInputError(
                "model directory", f"a saved {cls.__name__}", f"a {model_class.__name__}"
            )
        model = model_class(**config["config"])
        model.vocabulary_ = Vocabulary(config["vocabulary"])
        model.decoder_ = decoder_from_config(config["decoder"])
        model._restore(config.get("state", {}), load_file(str(directory / WEIGHTS_FILE)))
        return model

    def _arrays(self) -> dict[str, np.ndarray]:
        """The learned arrays `save` writes to the weights file."""
        return {
            key: value
            for key, value in vars(self).items()
            if key.endswith("_") and isinstance(value, np.ndarray)
        }

    def _json_state(self) -> dict[str, Any]:
        """The learned JSON-compatible values `save` writes to the config file."""
        return {key: getattr(self, key) for key in self.extra_state}

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Set the learned attributes `_json_state` and `_arrays` returned."""
        for key, value in {**state, **arrays}.items():
            setattr(self, key, value)


def feature_matrix(
    data: AnnotationSet, key: str, argument: str, dim: int | None = None
) -> np.ndarray:
    """``data.features[key]`` checked: present, a finite 2-D numeric matrix, and `dim`
    columns when given (as in training). `argument` names the data in errors."""
    if key not in data.features:
        available = ", ".join(repr(k) for k in sorted(data.features)) or "none"
        raise InvalidInputError(
            "features",
            f"a feature key present in the {argument} data (available: {available})",
            repr(key),
            "Pass features=<key> to the model, or compute those features first.",
        )
    x = np.asarray(data.features[key])
    if x.ndim != 2 or x.dtype.kind not in "fiub":
        raise InvalidInputError(
            f"features[{key!r}]", "a 2-D numeric matrix", f"{x.dtype} array of shape {x.shape}"
        )
    if dim is not None and x.shape[1] != dim:
        raise InvalidInputError(
            f"features[{key!r}]",
            f"{dim} columns (as in training)",
            f"{x.shape[1]}",
            "Use the same feature extractor as for training.",
        )
    if not np.isfinite(x).all():
        raise InvalidInputError(f"features[{key!r}]", "finite values", "NaN or inf entries")
    return x


def decoded_tags(
    scores: np.ndarray, vocabulary: Vocabulary, decoder: Decoder
) -> list[list[tuple[str, float]]]:
    """Per row of `scores`, the ``(label, score)`` pairs `decoder` keeps, best first."""
    chosen = decoder.decode(scores)
    names = vocabulary.names
    result = []
    for row, mask in zip(scores, chosen, strict=True):
        ids = np.flatnonzero(mask)
        ids = ids[np.argsort(-row[ids], kind="stable")]
        result.append([(names[j], float(row[j])) for j in ids])
    return result


def read_model_config(directory: Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a saved model, with clear errors when it is not one."""
    path = directory / CONFIG_FILE
    if not path.is_file() or not (directory / WEIGHTS_FILE).is_file():
        raise InvalidInputError(
            "model",
            f"a directory with {CONFIG_FILE} and {WEIGHTS_FILE}",
            str(directory),
            "Pass a directory written by `phototag train` or Annotator.save().",
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidInputError("model", "valid JSON", f"{path}: {exc.msg}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise InvalidInputError("model", "a phototag model config", str(path))
    return config
