"""The `Annotator` interface every model implements, and its on-disk format.

A saved model is a directory with ``config.json`` (model name, constructor arguments,
learned JSON state, vocabulary, decoder, the name, dtype and shape of every array,
library version) and ``weights.safetensors`` (every learned array), each written
atomically. Nothing is pickled, so loading a model file never runs code. Loading checks
everything before using it: config.json is a JSON object with every field of the right
type and no NaN, infinite or beyond-64-bit number; the model's own constructor checks
its arguments; the weights open, match the list in config.json and hold no NaN or inf.
A folder that fails is a `DamagedFileError` naming the file and the field at fault.
"""

from __future__ import annotations

import inspect
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from phototag.data import AnnotationSet, Vocabulary
from phototag.data.inputs import ModelInputs
from phototag.data.sensitive import suggestible
from phototag.errors import InvalidInputError, NotFittedError, PhototagError
from phototag.evaluation.decoding import Decoder, TopK, decoder_from_config
from phototag.evaluation.predictions import Prediction
from phototag.extras import MissingExtraError
from phototag.fileio import DamagedFileError, atomic_write

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT = "phototag.Annotator"
#: Fields of config.json and their JSON types; "state" and "arrays" may be absent
#: ("arrays" in models saved before it was written).
_FIELDS: dict[str, type] = {
    "model": str, "config": dict, "vocabulary": list, "decoder": dict, "state": dict,
    "arrays": dict,
}  # fmt: skip
_OPTIONAL = ("state", "arrays")
_JSON_TYPES = {str: "string", dict: "object", list: "array"}
_INT_LIMIT = 2**63 - 1
#: The key of a model's extra vocabularies in its JSON state; the arrays of a sparse one.
VOCABULARIES = "vocabularies"
_CSR_PARTS = frozenset({"data", "indices", "indptr", "shape"})
_FIX = (
    "Train the model again (`phototag train`), or copy the whole model folder again "
    "from where it came"
)


def library_version() -> str:
    from phototag import __version__

    return __version__


class Annotator(ABC):
    """Base class of all models: ``fit`` on an `AnnotationSet`, then ``scores``/``annotate``.

    Subclasses take their configuration as explicit keyword arguments stored under the
    same attribute names (so the constructor signature is the config), and keep learned
    state in attributes ending in ``_``: numpy arrays among them are saved as weights,
    JSON-compatible values listed in `extra_state` go into the config file. A model made
    of other models (`phototag.models.ensemble`) overrides the public hooks `state_arrays`,
    `state_json` and `set_state` to save them inside its own files.
    """

    name: ClassVar[str] = ""
    extra_state: ClassVar[tuple[str, ...]] = ()
    #: Learned torch modules (attributes ending in ``_``), saved as named state dicts
    #: (``"net_.0.weight"``); `build_modules` makes them anew before loading.
    torch_modules: ClassVar[tuple[str, ...]] = ()
    #: Constructor arguments that say how to run (device, workers, verbosity), left out
    #: of `get_config` and so of the saved config.
    runtime_settings: ClassVar[tuple[str, ...]] = ()

    vocabulary_: Vocabulary
    decoder_: Decoder

    # --------------------------------------------------------------- interface
    @abstractmethod
    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        """Learn from `train`; set every learned ``*_`` attribute but `vocabulary_`."""

    def _scores(self, inputs: AnnotationSet) -> np.ndarray:
        """Relevance of every vocabulary label for each item of `inputs` (define this, or
        `_predict` for a model that predicts more than scores)."""
        raise NotImplementedError(f"{type(self).__name__} defines neither _scores nor _predict")

    def fit(self, train: AnnotationSet, valid: AnnotationSet | None = None) -> Self:
        """Learn from the labelled items of `train` (`valid` for early stopping / tuning)."""
        if train.n_items == 0:
            raise InvalidInputError("train", "at least one item", "an empty set")
        self._check_inputs(train, "train", training=True)
        if valid is not None:
            self._check_inputs(valid, "valid")
        self.vocabulary_ = train.vocabulary
        self.decoder_ = getattr(self, "decoder_", TopK(5))
        self._fit(train, valid)
        return self

    def predict(self, inputs: AnnotationSet) -> Prediction:
        """Everything the model predicts for `inputs`: float32 ``scores [n_items,
        n_labels]`` and, where the model makes them, ``quantities [n_items]`` (label
        counts) and ``label_sets`` (sets it chose itself). Decoders take it whole."""
        self._check_fitted()
        self._check_inputs(inputs, "inputs")
        prediction = self._predict(inputs)
        scores = np.asarray(prediction.scores, dtype=np.float32)
        expected = (inputs.n_items, len(self.vocabulary_))
        if scores.shape != expected:
            raise RuntimeError(f"{type(self).__name__} returned {scores.shape}, not {expected}")
        return replace(prediction, scores=scores)

    def _predict(self, inputs: AnnotationSet) -> Prediction:
        """`predict` of a model; override to add quantities or label sets."""
        return Prediction(scores=self._scores(inputs))

    def scores(self, inputs: AnnotationSet) -> np.ndarray:
        """float32 ``[n_items, n_labels]`` scores, higher = more relevant (the short path
        of `predict`)."""
        scores = self.predict(inputs).scores
        assert scores is not None  # predict always makes them
        return scores

    def annotate(
        self, inputs: AnnotationSet, decoder: Decoder | None = None
    ) -> list[list[tuple[str, float]]]:
        """Per item, the decoded ``(label, score)`` pairs, best first."""
        return decoded_tags(self.predict(inputs), self.vocabulary_, decoder or self.decoder_)

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, read back from the attributes of the same names, but
        the `runtime_settings` (how to run, not what was learned: never saved)."""
        params = inspect.signature(type(self).__init__).parameters.values()
        skip = {"self", *self.runtime_settings}
        keywords = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return {p.name: getattr(self, p.name) for p in params
                if p.kind in keywords and p.name not in skip}  # fmt: skip

    def clone(self, *, keep_state: bool = False, **params: Any) -> Self:
        """A new model of this configuration with `params` changed (scikit-learn's
        ``clone`` then ``set_params``). Unfitted, or with `keep_state` sharing this
        model's learned ``*_`` state: right only for parameters that change how a fitted
        model scores, not what it learns (as cross-validation of such parameters does)."""
        unknown = sorted(set(params) - set(self.get_config()))
        if unknown:
            raise InvalidInputError(
                "clone", f"parameters of {type(self).__name__}", ", ".join(unknown)
            )
        copy = type(self)(**{**self.get_config(), **params})
        if keep_state:
            self._check_fitted()
            for name, value in vars(self).items():
                if name.endswith("_"):
                    setattr(copy, name, value)
        return copy

    def required_inputs(self, training: bool = False) -> ModelInputs:
        """What the model reads from an `AnnotationSet` besides labels to predict (with
        `training`: to fit, e.g. augmented views too); the runners fill it
        (`phototag.library.inputs.with_inputs`). By default: the pooled features named
        by the model's ``features`` argument."""
        keys = getattr(self, "features", ())
        return ModelInputs(features=(keys,) if isinstance(keys, str) else tuple(keys))

    def _check_inputs(self, data: AnnotationSet, argument: str, training: bool = False) -> None:
        missing = data.missing_inputs(self.required_inputs(training))
        if missing:
            held = ", ".join(repr(key) for key in [*data.features, *data.maps]) or "none"
            raise InvalidInputError(
                argument, f"what {type(self).__name__} reads: {', '.join(missing)}",
                f"{data.name}, whose features and maps are: {held}",
                "Fill them first: phototag.library.inputs.with_inputs(data, "
                "model.required_inputs(training)).",
            )  # fmt: skip

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
        """Write ``weights.safetensors``, then ``config.json``, into `directory` (each
        atomically; `StorageError` when the disk is full)."""
        self._check_fitted()
        directory = Path(directory)
        weights = {key: np.ascontiguousarray(value) for key, value in self.state_arrays().items()}
        config = {
            "format": FORMAT,
            "model": self.name,
            "config": self.get_config(),
            "state": self.state_json(),
            "vocabulary": self.vocabulary_.to_json(),
            "decoder": self.decoder_.to_config(),
            "arrays": {
                key: [value.dtype.name, list(value.shape)] for key, value in weights.items()
            },
            "phototag_version": library_version(),
        }
        atomic_write(directory / WEIGHTS_FILE, save(weights, metadata={"format": FORMAT}))
        atomic_write(directory / CONFIG_FILE, json.dumps(config, indent=2, ensure_ascii=False))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Annotator:
        """Load a model saved by `save`; `Annotator.load` picks the right class.

        Raises `DamagedFileError` naming the file and field when the folder is not a
        whole, valid saved model (checks in the module docstring).
        """
        from phototag.models.registry import annotator_class, create_annotator

        directory = Path(directory)
        config = read_model_config(directory)
        arrays = read_model_weights(directory, config.get("arrays"))
        path = directory / CONFIG_FILE
        with _field_of(path, "model"):
            model_class = annotator_class(config["model"])
        if cls is not Annotator and not issubclass(model_class, cls):
            raise InvalidInputError(
                "model directory", f"a saved {cls.__name__}", f"a {model_class.__name__}"
            )
        with _field_of(path, "config"):
            model = create_annotator(config["model"], **config["config"])
        with _field_of(path, "vocabulary"):
            model.vocabulary_ = Vocabulary(config["vocabulary"])
        with _field_of(path, "decoder"):
            model.decoder_ = decoder_from_config(config["decoder"])
        with _field_of(path, "state"):
            state = config.get("state", {})
            model.set_state(state, arrays)
            expected = sorted(model.state_json())
            if sorted(state) != expected:
                raise ValueError(f"expected the keys {expected}, got {sorted(state)}")
        return model

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The learned arrays `save` writes to the weights file: numpy ``*_`` attributes,
        sparse ``*_`` matrices (as ``NAME.data/.indices/.indptr/.shape`` of their CSR
        form) and the state dicts of `torch_modules`."""
        arrays: dict[str, np.ndarray] = {}
        for key, value in vars(self).items():
            if not key.endswith("_"):
                continue
            if isinstance(value, np.ndarray):
                arrays[key] = value
            elif sp.issparse(value):
                csr = sp.csr_matrix(value)
                arrays |= {f"{key}.data": csr.data, f"{key}.indices": csr.indices,
                           f"{key}.indptr": csr.indptr,
                           f"{key}.shape": np.array(csr.shape, dtype=np.int64)}  # fmt: skip
        for name in self.torch_modules:
            for key, tensor in getattr(self, name).state_dict().items():
                arrays[f"{name}.{key}"] = tensor.detach().cpu().numpy()
        return arrays

    def build_modules(self) -> None:
        """Create the untrained `torch_modules` from the configuration, the vocabulary
        and the JSON state (what `set_state` loads their weights into)."""
        raise NotImplementedError(
            f"{type(self).__name__} lists torch_modules: define build_modules"
        )

    def state_json(self) -> dict[str, Any]:
        """The learned JSON-compatible values `save` writes to the config file: those
        listed in `extra_state`, and every `Vocabulary` ``*_`` attribute but
        ``vocabulary_`` (a user-tag vocabulary, ...) under ``"vocabularies"``."""
        state = {key: getattr(self, key) for key in self.extra_state}
        vocabularies = {
            key: value.to_json()
            for key, value in vars(self).items()
            if key.endswith("_") and key != "vocabulary_" and isinstance(value, Vocabulary)
        }
        if vocabularies:
            state[VOCABULARIES] = vocabularies
        return state

    def set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Set the learned attributes `state_json` and `state_arrays` returned."""
        state = dict(state)
        for key, words in state.pop(VOCABULARIES, {}).items():
            setattr(self, key, Vocabulary(words))
        modules = tuple(f"{name}." for name in self.torch_modules)
        sparse: dict[str, dict[str, np.ndarray]] = {}
        for key, value in {**state, **arrays}.items():
            base, _, part = key.rpartition(".")
            if modules and key.startswith(modules):
                continue
            if part in _CSR_PARTS and base.endswith("_"):
                sparse.setdefault(base, {})[part] = np.asarray(value)
            else:
                setattr(self, key, value)
        for key, parts in sparse.items():
            shape = tuple(int(n) for n in parts["shape"])
            csr = (parts["data"], parts["indices"], parts["indptr"])
            setattr(self, key, sp.csr_matrix(csr, shape=shape))
        if not modules:
            return
        import torch

        self.build_modules()
        for name in self.torch_modules:
            prefix = f"{name}."
            tensors = {key[len(prefix) :]: torch.from_numpy(np.array(value))
                       for key, value in arrays.items() if key.startswith(prefix)}  # fmt: skip
            getattr(self, name).load_state_dict(tensors)


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
    prediction: Prediction, vocabulary: Vocabulary, decoder: Decoder
) -> list[list[tuple[str, float]]]:
    """Per item of `prediction`, the ``(label, score)`` pairs `decoder` keeps, best
    first: the keywords phototag suggests. A label that could hurt the person in the
    photo (`phototag.data.sensitive`) is never among them, whatever the model scored."""
    scores = prediction.scores
    if scores is None:
        raise InvalidInputError("prediction", "scores to rank its labels by", "label sets only")
    names = vocabulary.names
    allowed = suggestible(vocabulary)
    if not allowed.all():  # ranked below every other label, so a top-k takes the next
        low = scores.min() - 1.0 if scores.size else 0.0
        own = None if prediction.label_sets is None else prediction.label_sets & allowed
        prediction = replace(prediction, scores=np.where(allowed, scores, low), label_sets=own)
    chosen = decoder.decode_prediction(prediction) & allowed
    result = []
    for row, mask in zip(scores, chosen, strict=True):
        ids = np.flatnonzero(mask)
        ids = ids[np.argsort(-row[ids], kind="stable")]
        result.append([(names[j], float(row[j])) for j in ids])
    return result


def read_model_config(directory: Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a saved model: a JSON object whose fields have the
    right JSON types and whose numbers are usable; `DamagedFileError` otherwise."""
    path = directory / CONFIG_FILE
    if not path.exists() and not (directory / WEIGHTS_FILE).exists():
        raise DamagedFileError(
            directory, f"not a saved model: no {CONFIG_FILE} or {WEIGHTS_FILE}",
            "Pass a folder written by `phototag train` or Annotator.save()",
        )  # fmt: skip
    try:
        text = path.read_bytes()
        config = json.loads(text)
    except OSError as exc:
        raise DamagedFileError(path, f"cannot be read ({exc.strerror or exc})", _FIX) from None
    except ValueError as exc:  # not JSON, not UTF-8, an integer of over 4300 digits
        problem = "empty" if not text.strip() else f"not valid JSON ({exc})"
        raise DamagedFileError(path, problem, _FIX) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise DamagedFileError(path, f'not a phototag model config (no "format": "{FORMAT}")', _FIX)
    for field, kind in _FIELDS.items():
        if field not in config and field in _OPTIONAL:
            continue
        if not isinstance(config.get(field), kind):
            problem = "missing" if field not in config else f"not a JSON {_JSON_TYPES[kind]}"
            raise DamagedFileError(path, f'field "{field}" is {problem}', _FIX)
    for field in ("config", "state", "decoder"):  # a decoder threshold may be infinite
        bad = _bad_number(config.get(field), field, allow_inf=field == "decoder")
        if bad is not None:
            where, value = bad
            shown = repr(value) if len(repr(value)) < 30 else f"a {len(repr(value))}-digit integer"
            problem = f'field "{where}" is {shown}: not a finite number that fits in 64 bits'
            raise DamagedFileError(path, problem, _FIX)
    return config


def read_model_weights(directory: Path, listed: dict[str, Any] | None) -> dict[str, np.ndarray]:
    """The arrays of ``weights.safetensors``: a file that opens, holding exactly the
    arrays (names, dtypes, shapes) `listed` in config.json when it lists them, with no
    NaN or inf; `DamagedFileError` otherwise."""
    path = directory / WEIGHTS_FILE
    try:
        arrays = load_file(str(path))
    except OSError as exc:
        raise DamagedFileError(path, f"cannot be read ({exc.strerror or exc})", _FIX) from None
    except (SafetensorError, ValueError, TypeError) as exc:  # cut short, not safetensors
        raise DamagedFileError(path, f"not a readable safetensors file ({exc})", _FIX) from None
    if listed is not None:
        found = {name: [array.dtype.name, list(array.shape)] for name, array in arrays.items()}
        for name in sorted(listed.keys() | found.keys()):
            if listed.get(name) != found.get(name):
                expected, got = (
                    "nothing" if x is None else json.dumps(x)
                    for x in (listed.get(name), found.get(name))
                )
                problem = f"array {name!r}: {CONFIG_FILE} lists {expected}, the file holds {got}"
                raise DamagedFileError(path, problem, _FIX)
    for name, array in arrays.items():
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise DamagedFileError(path, f"array {name!r} holds NaN or infinite values", _FIX)
    return arrays


def _bad_number(value: Any, field: str, allow_inf: bool) -> tuple[str, Any] | None:
    """``(field path, number)`` of the first number in `value` no setting can take:
    NaN, an integer beyond 64 bits, or (unless `allow_inf`) an infinity."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (field, value) if abs(value) > _INT_LIMIT else None
    if isinstance(value, float):
        bad = math.isnan(value) or (math.isinf(value) and not allow_inf)
        return (field, value) if bad else None
    if isinstance(value, dict):
        children = ((f"{field}.{key}", item) for key, item in value.items())
    elif isinstance(value, list):
        children = ((f"{field}[{i}]", item) for i, item in enumerate(value))
    else:
        return None
    for where, item in children:
        bad = _bad_number(item, where, allow_inf)
        if bad is not None:
            return bad
    return None


@contextmanager
def _field_of(path: Path, field: str) -> Iterator[None]:
    """Any failure to use `field` of config.json as a `DamagedFileError` naming both
    (the model's own argument checks raise `InvalidInputError`; a malformed value can
    raise anything Python raises for a wrong type)."""
    try:
        yield
    except MissingExtraError:
        raise  # a whole model this install cannot run: the error names the extra to install
    except (PhototagError, TypeError, ValueError, KeyError, IndexError, AttributeError,
            RuntimeError) as exc:  # fmt: skip
        detail = f"{exc} is missing" if isinstance(exc, KeyError) else str(exc)
        raise DamagedFileError(path, f'field "{field}" is not valid: {detail}', _FIX) from None
