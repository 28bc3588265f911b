"""The metadata paper's models (Tesan, Coscia & Ballan) as one phototag model: a network
over an item's visual features and a neighbourhood of items found by their metadata.

The training items are the neighbour database, kept in the model: their vectors Φ, their
metadata vectors π(o) (joint models) and the keys neighbours are found by (binary tag or
group vectors for Jaccard, summed tag embeddings for cosine). At annotate time a photo's
user tags (or album) find its M nearest training items; the scores average the network
over `n_samples` size-m subsets of them (Eq. 2). docs/models/neighbourhood.md maps the
equations to the code.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from phototag.data import AnnotationSet, Vocabulary
from phototag.data.inputs import ModelInputs
from phototag.errors import InvalidInputError, check_choice, check_float, check_int
from phototag.evaluation.predictions import Prediction
from phototag.models.base import Annotator, feature_matrix
from phototag.models.neighbourhood.network import ARCHITECTURES
from phototag.models.registry import register_annotator

DEVICES = ("auto", "cpu", "cuda")
#: Metadata encodings that are not word embeddings: binary tag vectors, the group id.
PLAIN = ("id", "group")
#: Items per forward pass when predicting (times `n_samples` neighbourhoods).
PREDICT_BATCH = 256
#: Word embeddings by spec, shared by the models of a process.
_EMBEDDINGS: dict[str, Any] = {}


@register_annotator("neighbourhood")
class NeighbourhoodAnnotator(Annotator):
    """v-only, LTN, RTN, LTN+Vecs, LTN+AllVecs, LTwin, LTwin+RNN, LTwin+2RNN or LZip.

    Parameters:
        architecture: one of ``v_only ltn rtn ltn_vecs ltn_allvecs ltwin ltwin_rnn
            ltwin_2rnn lzip`` (Eq. 8, 9-11, 12, 13-14, 15-16, 17, LTwin+RNN, 18, 19).
        features: the pooled visual features Φ; None: an item's metadata vector π(o)
            stands in for them (metadata-only data: "the neighbours' tag vectors in
            place of visual features").
        neighbourhood: the encoding n the neighbours are found by: ``"id"`` (binary tag
            vectors, Jaccard; Eq. 4-5), ``"group"`` (the item's album/group, Jaccard on
            its one-hot vector) or an embedding spec (``"glove50"``, ``"wordnet"``,
            ``"file:PATH"`` for a word2vec file, ...: summed tag vectors, cosine; Eq. 6-7).
        metadata: the encoding f of the metadata vectors π(o) joint models read:
            ``"id"``, ``"group"`` or an embedding spec. Embeddings make a model robust to
            a new tag vocabulary (new words map into the same space).
        m: neighbourhood size; max_rank: M, the nearest items subsets are drawn from.
        n_samples: neighbourhoods averaged per prediction (Eq. 2).
        max_tags: τ, the most frequent training tags kept (the paper: 5,000).
        hidden: h, units of every hidden layer.
        dropout, lr, weight_decay, batch_size: the paper's 0.5, 1e-4 (RMSProp), 3e-4
            (L2) and 64.
        epochs, min_epochs: the most and fewest epochs of early stopping; None: the
            paper's 10 and 3 for visual models, 15 and 5 for joint ones.
        patience: epochs without a lower validation loss before training stops.
        validation_fraction: training items held out for early stopping.
        seed: initialisation, tie-breaking, sampling and the held-out items.

    Runtime settings (not saved with the model):
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; workers: processes for Jaccard
        neighbour search; search: cosine neighbour search, ``"exact"``, ``"ivf"`` (FAISS
        inverted file, approximate) or ``"auto"`` (exact up to 50,000 training items);
        verbose: a progress line per epoch.
    """

    torch_modules: ClassVar[tuple[str, ...]] = ("network_",)
    extra_state: ClassVar[tuple[str, ...]] = ("x_dim_", "meta_dim_", "history_")
    runtime_settings: ClassVar[tuple[str, ...]] = ("device", "workers", "search", "verbose")

    def __init__(
        self,
        architecture: str = "ltn",
        features: str | None = "efficientnet_lite2",
        neighbourhood: str = "id",
        metadata: str = "id",
        m: int = 12,
        max_rank: int = 24,
        n_samples: int = 10,
        max_tags: int = 5000,
        hidden: int = 500,
        dropout: float = 0.5,
        lr: float = 1e-4,
        weight_decay: float = 3e-4,
        batch_size: int = 64,
        epochs: int | None = None,
        min_epochs: int | None = None,
        patience: int = 3,
        validation_fraction: float = 0.1,
        seed: int = 0,
        device: str = "auto",
        workers: int = 1,
        search: str = "auto",
        verbose: bool = False,
    ) -> None:
        self.architecture = check_choice("architecture", architecture, tuple(ARCHITECTURES))
        if features is not None and (not isinstance(features, str) or not features):
            raise InvalidInputError("features", "a feature name or None", repr(features))
        for name, value in (("neighbourhood", neighbourhood), ("metadata", metadata)):
            if not isinstance(value, str) or not value:
                raise InvalidInputError(
                    name, "'id', 'group' or an embedding spec (e.g. 'glove50')", repr(value)
                )
        if not isinstance(verbose, bool):
            raise InvalidInputError("verbose", "True or False", repr(verbose))
        self.features = features
        self.neighbourhood = neighbourhood
        self.metadata = metadata
        self.max_rank = check_int("max_rank", max_rank, 1)
        self.m = check_int("m", m, 1, self.max_rank)
        self.n_samples = check_int("n_samples", n_samples, 1)
        self.max_tags = check_int("max_tags", max_tags, 1)
        self.hidden = check_int("hidden", hidden, 1)
        self.dropout = check_float("dropout", dropout, 0.0, strict=False, maximum=0.99)
        self.lr = check_float("lr", lr, 0.0)
        self.weight_decay = check_float("weight_decay", weight_decay, 0.0, strict=False)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.epochs = None if epochs is None else check_int("epochs", epochs, 1)
        self.min_epochs = None if min_epochs is None else check_int("min_epochs", min_epochs, 1)
        self.patience = check_int("patience", patience, 1)
        self.validation_fraction = check_float(
            "validation_fraction", validation_fraction, 0.0, strict=False, maximum=0.5
        )
        self.seed = check_int("seed", seed, 0)
        self.device = check_choice("device", device, DEVICES)
        self.workers = check_int("workers", workers, 1)
        self.search = check_choice("search", search, ("auto", "exact", "ivf"))
        self.verbose = verbose

    # ------------------------------------------------------------------ inputs
    @property
    def joint(self) -> bool:
        """Whether the network reads metadata vectors π(o) (a joint model, or no features)."""
        return ARCHITECTURES[self.architecture] or self.features is None

    def _encodings(self) -> tuple[str, ...]:
        return (self.neighbourhood, self.metadata) if self.joint else (self.neighbourhood,)

    def required_inputs(self, training: bool = False) -> ModelInputs:
        """The pooled features, the photo's user tags and/or its group, as the
        neighbourhood and metadata encodings need."""
        encodings = self._encodings()
        return ModelInputs(
            features=() if self.features is None else (self.features,),
            user_tags=any(e != "group" for e in encodings),
            metadata=("group",) if "group" in encodings else (),
        )

    # --------------------------------------------------------------------- fit
    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        from phototag.models.neighbourhood.data import Items, NeighbourhoodDataset

        vars(self).pop("x_dim_", None)  # a new fit checks no feature width
        self._learn_vocabularies(train)
        meta = self._meta(train) if self.joint else None
        x = self._x(train, meta)
        self.database_x_ = x
        if meta is not None:
            self.database_meta_ = meta
        keys, sizes = self._keys(train)
        self.database_keys_ = keys
        if sizes is not None:
            self.database_sizes_ = sizes
        self.x_dim_ = int(x.shape[1])
        self.meta_dim_ = 0 if meta is None else int(meta.shape[1])
        rows = np.flatnonzero(train.label_counts() > 0)
        if not len(rows):
            raise InvalidInputError("train", "items with at least one label", "none")
        items = Items(x, meta, self._neighbours(None), train.labels)
        held = None
        if valid is not None and valid.n_items:
            kept = np.flatnonzero(valid.label_counts() > 0)
            held = NeighbourhoodDataset(self._items(valid, labels=True), kept)
        elif self.validation_fraction > 0 and len(rows) > 1:
            order = np.random.default_rng(self.seed).permutation(rows)
            n_valid = max(1, round(self.validation_fraction * len(order)))
            held = NeighbourhoodDataset(items, np.sort(order[:n_valid]))
            rows = np.sort(order[n_valid:])
        import torch

        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.build_modules()
        result = self._trainer(held is not None).fit(
            self.network_, self._task(), NeighbourhoodDataset(items, rows), held
        )
        self.history_ = result.history_

    def build_modules(self) -> None:
        from phototag.models.neighbourhood.network import NeighbourhoodNetwork

        self.network_ = NeighbourhoodNetwork(
            self.architecture, self.x_dim_, self.meta_dim_, self.hidden,
            len(self.vocabulary_), self.dropout,
        )  # fmt: skip

    def _task(self) -> Any:
        from phototag.models.neighbourhood.data import Items, NeighbourhoodTask

        database = Items(self.database_x_, getattr(self, "database_meta_", None), np.empty(0))
        return NeighbourhoodTask(database, self.m)

    def _trainer(self, early_stopping: bool) -> Any:
        from phototag.features.encoders.runtime import torch_device
        from phototag.training import EarlyStopping, OptimizerSettings, Trainer

        joint = ARCHITECTURES[self.architecture]
        epochs = self.epochs or (15 if joint else 10)
        least = min(epochs, self.min_epochs or (5 if joint else 3))
        stopping = EarlyStopping("min", self.patience, least) if early_stopping else None
        return Trainer(
            epochs=epochs,
            batch_size=self.batch_size,
            optimizer=OptimizerSettings("rmsprop", lr=self.lr, weight_decay=self.weight_decay),
            early_stopping=stopping,
            accelerator=torch_device(self.device).type,
            seed=self.seed,
            progress=self.verbose,
        )

    # ------------------------------------------------------- metadata encodings
    def _learn_vocabularies(self, train: AnnotationSet) -> None:
        """τ most frequent training tags (ties: vocabulary order); the training groups."""
        encodings = self._encodings()
        if any(e != "group" for e in encodings):
            if train.user_tags is None or train.tag_vocabulary is None:
                raise InvalidInputError("train", "user tags on the training items", "none")
            counts = np.asarray(train.user_tags.sum(axis=0)).ravel()
            order = np.argsort(-counts, kind="stable")[: self.max_tags]
            order = np.sort(order[counts[order] > 0])
            if not len(order):
                raise InvalidInputError("train", "user tags on the training items", "none")
            self.tag_vocabulary_ = Vocabulary([train.tag_vocabulary[j] for j in order])
            for encoding in set(encodings) - set(PLAIN):
                vectors = self._embedding(encoding).embed(self.tag_vocabulary_.names).vectors
                setattr(self, _vectors_name(encoding, self), vectors)
        if "group" in encodings:
            self.group_vocabulary_ = Vocabulary(sorted({str(g) for g in _groups(train)}))

    def _embedding(self, spec: str) -> Any:
        """The embedding `spec`, built once per process (WordNet's takes seconds)."""
        if spec not in _EMBEDDINGS:
            from phototag.features.embeddings import create_embedding

            _EMBEDDINGS[spec] = create_embedding(spec)
        return _EMBEDDINGS[spec]

    def _encode(self, data: AnnotationSet, encoding: str) -> np.ndarray | sp.csr_matrix:
        """The items' metadata under `encoding`: binary tag or group vectors (sparse), or
        summed tag embeddings (Eq. 6; dense) scaled to unit length, so an item's input
        does not grow with its number of tags (cosine search is unchanged). New words of
        another tag vocabulary get their own vectors from the embedding."""
        if encoding == "group":
            names = [str(g) for g in _groups(data)]
            known = np.array([g in self.group_vocabulary_ for g in names], dtype=bool)
            rows = np.flatnonzero(known)
            ids = self.group_vocabulary_.indices([names[i] for i in rows])
            shape = (data.n_items, len(self.group_vocabulary_))
            return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, ids)), shape=shape)
        tags = sp.csr_matrix(data.user_tags_in(self.tag_vocabulary_), dtype=np.float32)
        if encoding == "id":
            return tags
        if data.tag_vocabulary == self.tag_vocabulary_:
            vectors = getattr(self, _vectors_name(encoding, self))
        else:
            assert data.tag_vocabulary is not None and data.user_tags is not None
            vectors = self._embedding(encoding).embed(data.tag_vocabulary.names).vectors
            tags = sp.csr_matrix(data.user_tags, dtype=np.float32)
        summed = np.asarray(tags @ vectors, dtype=np.float32)
        norms = np.linalg.norm(summed, axis=1, keepdims=True)
        return summed / np.maximum(norms, np.finfo(np.float32).tiny)

    def _meta(self, data: AnnotationSet) -> np.ndarray | sp.csr_matrix:
        return self._encode(data, self.metadata)

    def _x(self, data: AnnotationSet, meta: Any) -> np.ndarray | sp.csr_matrix:
        if self.features is None:
            return meta
        dim = getattr(self, "x_dim_", None)
        return np.asarray(feature_matrix(data, self.features, data.name, dim), dtype=np.float32)

    def _keys(self, data: AnnotationSet) -> tuple[Any, np.ndarray | None]:
        """The search keys of the items and, for Jaccard, their full tag counts."""
        keys = self._encode(data, self.neighbourhood)
        if self.neighbourhood == "id":
            assert data.user_tags is not None
            return keys, np.diff(sp.csr_matrix(data.user_tags).indptr).astype(np.float32)
        if self.neighbourhood == "group":
            return keys, np.diff(keys.indptr).astype(np.float32)
        return keys, None

    def _neighbours(self, data: AnnotationSet | None) -> np.ndarray:
        """Database rows of the `max_rank` nearest items of each item of `data`, nearest
        first (None: of each training item, itself left out)."""
        from phototag.models.neighbourhood.neighbours import (
            cosine_neighbours,
            jaccard_neighbours,
        )

        if self.neighbourhood in PLAIN:
            queries, sizes = (None, None) if data is None else self._keys(data)
            _, ranked = jaccard_neighbours(
                queries, self.database_keys_, self.max_rank, query_sizes=sizes,
                database_sizes=self.database_sizes_, seed=self.seed, workers=self.workers,
            )  # fmt: skip
        else:
            queries = None if data is None else self._keys(data)[0]
            _, ranked = cosine_neighbours(
                queries, self.database_keys_, self.max_rank, method=self.search
            )
        return ranked

    def _items(self, data: AnnotationSet, labels: bool = False) -> Any:
        from phototag.models.neighbourhood.data import Items

        meta = self._meta(data) if self.joint else None
        return Items(self._x(data, meta), meta, self._neighbours(data),
                     data.labels if labels else None)  # fmt: skip

    # ----------------------------------------------------------------- predict
    def _predict(self, inputs: AnnotationSet) -> Prediction:
        import torch

        from phototag.features.encoders.runtime import torch_device
        from phototag.models.neighbourhood.data import take
        from phototag.models.neighbourhood.neighbours import sample_subsets

        n_labels = len(self.vocabulary_)
        if inputs.n_items == 0:
            return Prediction(scores=np.zeros((0, n_labels), np.float32))
        items = self._items(inputs)
        ranked = items.ranked
        m = min(self.m, ranked.shape[1])
        rng = np.random.default_rng(self.seed)
        subsets = sample_subsets(inputs.n_items, ranked.shape[1], m, self.n_samples, rng)
        neighbours = np.take_along_axis(ranked[:, None, :], subsets, axis=2)  # [n, S, m]
        database_meta = getattr(self, "database_meta_", None)
        device = torch_device(self.device)
        network = self.network_.to(device).eval()
        scores = []
        s = self.n_samples
        try:
            with torch.inference_mode():
                for start in range(0, inputs.n_items, PREDICT_BATCH):
                    index = np.arange(start, min(start + PREDICT_BATCH, inputs.n_items))
                    repeated = np.repeat(index, s)
                    chosen = neighbours[index].reshape(len(index) * s, m)
                    parts = [take(items.x, repeated), take(self.database_x_, chosen),
                             take(items.meta, repeated), take(database_meta, chosen)]  # fmt: skip
                    parts = [None if p is None else p.to(device) for p in parts]
                    logits = network(*parts).reshape(len(index), s, n_labels).mean(dim=1)
                    scores.append(torch.sigmoid(logits).float().cpu().numpy())
        finally:
            network.to("cpu")
        return Prediction(scores=np.concatenate(scores))


def _vectors_name(encoding: str, model: NeighbourhoodAnnotator) -> str:
    """The attribute holding the tag vocabulary's vectors under embedding `encoding`."""
    role = "neighbourhood" if encoding == model.neighbourhood else "metadata"
    return f"{role}_vectors_"


def _groups(data: AnnotationSet) -> np.ndarray:
    if "group" not in data.metadata:
        raise InvalidInputError(
            "metadata", f"a 'group' per item of {data.name}", "none",
            "Give the items their album or group: data.metadata['group'].",
        )  # fmt: skip
    return np.asarray(data.metadata["group"])
