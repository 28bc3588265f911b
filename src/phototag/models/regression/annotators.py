"""CNN-R: a CNN regressing images into word-embedding space (Murthy, Maji & Manmatha, 2015).

The encoder's classifier is replaced by a linear projection onto the word-embedding
space; the network is trained with an L2 (squared Euclidean) loss to predict the mean
embedding of each image's labels (Sec. 3.2, 3.5 of the CCA-KNN paper). The last block of
the encoder is fine-tuned with a lower learning rate than the new projection, everything
before it stays frozen. Labels are ranked by the cosine similarity of the predicted
vector to each label's embedding.

The frozen part of the network (the trunk) runs once per photo and view (the photo and
its mirror image, the flip augmentation): the model declares the trunk's output maps as
its inputs (`required_inputs`), the runners fill them from the feature-map store
(`phototag.features.maps`, float16, memory-mapped; computed once), and an epoch only
runs the fine-tuned block. Training goes through `phototag.training`. Equations,
parameters and results: ``docs/models/cnn_r.md``.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, ClassVar
from urllib.parse import urlencode

import numpy as np
import torch
from torch import nn

from phototag.data import AnnotationSet
from phototag.data.inputs import VIEWS, MapSpec, ModelInputs
from phototag.errors import InvalidInputError, check_choice, check_float, check_int
from phototag.features.encoders import ImageEncoder, create_encoder
from phototag.features.encoders.runtime import torch_device
from phototag.models.base import Annotator
from phototag.models.cca import label_embedding_matrix
from phototag.models.registry import register_annotator
from phototag.models.regression.network import (
    MapsDataset,
    Regressor,
    float_state,
    l2_loss,
    split_backbone,
)
from phototag.training import EarlyStopping, Group, LossTask, OptimizerSettings, Schedule, Trainer

__all__ = ["CNNRAnnotator", "split_backbone"]

OOV_CHOICES = ("onehot", "error")
DEVICES = ("auto", "cpu", "cuda")
#: Maps per forward pass when predicting.
PREDICT_BATCH = 256


# ------------------------------------------------------------------------------ model
@register_annotator("cnn_r")
class CNNRAnnotator(Annotator):
    """CNN-R: fine-tune the encoder's last block + a projection into word-embedding space.

    Parameters:
        encoder: image encoder name (`phototag encoders` lists them); EfficientNet-Lite
            (``stage7`` + ``head`` fine-tuned) or ResNet (``layer4``).
        encoder_weights: a weights file for the encoder (ResNet needs one); None: the
            encoder's packaged ImageNet weights.
        embedding: label embedding spec, as for the CCA models: ``glove50`` (default),
            ``id`` (binary label vectors), ``wordnet``, ``file:PATH``,
            ``npy:VECTORS.npy?words=WORDS.txt``.
        normalize_embeddings: scale each label vector to unit length before averaging.
        oov: labels without a vector in the embedding: ``"onehot"`` gives each one an
            extra dimension of its own (so it can still be predicted), ``"error"`` raises.
        epochs: passes over the training set (the maximum, with early stopping).
        batch_size: images per gradient step.
        lr: learning rate of the new projection layer (Adam, cosine decay to 0).
        block_lr: learning rate of the fine-tuned block (lower: it is pretrained).
        weight_decay: decoupled weight decay (AdamW) of both.
        dropout: dropout before the projection.
        flip: also train on the mirror image of each photo (one of the two per epoch).
        validation_fraction: without a `valid` set, hold out this fraction of the
            training photos for early stopping (0: train all `epochs`).
        patience: epochs without a lower validation loss before stopping.
        seed: shuffling, flips and dropout (the network starts from the pretrained block,
            a zero projection and the mean target: no random initialisation).

    Runtime settings (not saved with the model):
        device: where the block trains and predicts: ``"auto"`` (CUDA when available),
            ``"cpu"`` or ``"cuda"``.
        verbose: training progress (one line per epoch) on stderr.
    """

    extra_state: ClassVar[tuple[str, ...]] = ("encoder_id_", "oov_labels_", "history_")
    #: Constructor arguments that say how to run, not what to learn: left out of the config.
    runtime_settings: ClassVar[tuple[str, ...]] = ("device", "verbose")

    def __init__(
        self,
        encoder: str = "efficientnet_lite2",
        encoder_weights: str | None = None,
        embedding: str = "glove50",
        normalize_embeddings: bool = True,
        oov: str = "onehot",
        epochs: int = 15,
        batch_size: int = 64,
        lr: float = 1e-3,
        block_lr: float = 3e-4,
        weight_decay: float = 1e-4,
        dropout: float = 0.2,
        flip: bool = True,
        validation_fraction: float = 0.0,
        patience: int = 3,
        device: str = "auto",
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        for name, value in (("encoder", encoder), ("embedding", embedding)):
            if not isinstance(value, str) or not value:
                raise InvalidInputError(name, "a non-empty string", repr(value))
        if encoder_weights is not None and not isinstance(encoder_weights, str):
            raise InvalidInputError("encoder_weights", "None or a file path", repr(encoder_weights))
        for name, value in (("normalize_embeddings", normalize_embeddings), ("flip", flip),
                            ("verbose", verbose)):  # fmt: skip
            if not isinstance(value, bool):
                raise InvalidInputError(name, "True or False", repr(value))
        self.encoder = encoder
        self.encoder_weights = encoder_weights
        self.embedding = embedding
        self.normalize_embeddings = normalize_embeddings
        self.oov = check_choice("oov", oov, OOV_CHOICES)
        self.epochs = check_int("epochs", epochs, 1)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.lr = check_float("lr", lr, 0.0)
        self.block_lr = check_float("block_lr", block_lr, 0.0, strict=False)
        self.weight_decay = check_float("weight_decay", weight_decay, 0.0, strict=False)
        self.dropout = check_float("dropout", dropout, 0.0, strict=False, maximum=0.99)
        self.flip = flip
        self.validation_fraction = check_float(
            "validation_fraction", validation_fraction, 0.0, strict=False, maximum=0.5
        )
        self.patience = check_int("patience", patience, 1)
        self.device = check_choice("device", device, DEVICES)
        self.seed = check_int("seed", seed, 0)
        self.verbose = verbose

    def required_inputs(self, training: bool = False) -> ModelInputs:
        """The frozen trunk's output maps of each photo; to fit with `flip`, of its
        mirror image too."""
        views = VIEWS if training and self.flip else VIEWS[:1]
        encoder = self.encoder
        if self.encoder_weights is not None:
            encoder += "?" + urlencode({"weights": self.encoder_weights})
        stage = self._parts()[2]
        return ModelInputs(maps=tuple(MapSpec(encoder, stage, view) for view in views))

    def _views(self, data: AnnotationSet, training: bool = False) -> tuple[Any, ...]:
        """The trunk maps of `data`, one row source per view."""
        return tuple(data.maps[spec.key] for spec in self.required_inputs(training).maps)

    # ------------------------------------------------------------------ network
    def _build_encoder(self, runtime: str) -> ImageEncoder:
        options: dict[str, Any] = {"runtime": runtime}
        if self.encoder_weights is not None:
            options["weights"] = self.encoder_weights
        with warnings.catch_warnings():  # no ONNX Runtime: the torch encoder does the same
            warnings.simplefilter("ignore", RuntimeWarning)
            return create_encoder(self.encoder, **options)

    def _parts(self) -> tuple[ImageEncoder, Regressor | None, str]:
        """(torch encoder, regressor or None before fit, trunk output name), cached."""
        cached = getattr(self, "_network", None)
        if cached is None:
            encoder = self._build_encoder("torch")
            if hasattr(self, "encoder_id_") and encoder.feature_id != self.encoder_id_:
                raise InvalidInputError(
                    "encoder", f"the encoder the model was trained with ({self.encoder_id_})",
                    encoder.feature_id,
                    "Install the same encoder weights, or train the model again.",
                )  # fmt: skip
            _, block, stage = split_backbone(encoder.model)
            regressor = None
            if hasattr(self, "block_state_"):
                regressor = self._restore_regressor(block)
            cached = (encoder, regressor, stage)
            self._network = cached
        return cached

    def _restore_regressor(self, block: nn.Module) -> Regressor:
        weight = torch.from_numpy(np.asarray(self.projection_weight_, dtype=np.float32))
        regressor = Regressor(copy.deepcopy(block), weight.shape[1], weight.shape[0], 0.0)
        state = float_state(regressor.block)
        flat = np.asarray(self.block_state_, dtype=np.float32)
        sizes = [t.numel() for t in state.values()]
        if flat.ndim != 1 or flat.size != sum(sizes):
            raise InvalidInputError(
                "block_state_", f"{sum(sizes)} values for {self.encoder}'s last block",
                f"{flat.size}", "The weights file belongs to another encoder; retrain.",
            )  # fmt: skip
        chunks = np.split(flat, np.cumsum(sizes)[:-1])
        tensors = {k: torch.from_numpy(c.reshape(t.shape).copy())
                   for (k, t), c in zip(state.items(), chunks, strict=True)}  # fmt: skip
        regressor.block.load_state_dict(tensors, strict=False)
        regressor.projection.weight.data.copy_(weight)
        regressor.projection.bias.data.copy_(torch.from_numpy(np.asarray(self.projection_bias_)))
        return regressor.eval()

    # ------------------------------------------------------------------- targets
    def _label_vectors(self) -> tuple[np.ndarray, list[str]]:
        """Per label its vector in the regression space (L x d), and the OOV labels."""
        names = list(self.vocabulary_.names)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            vectors, _ = label_embedding_matrix(self.embedding, self.vocabulary_)
        missing = ~np.any(vectors != 0, axis=1)
        oov = [name for name, m in zip(names, missing, strict=True) if m]
        if oov and self.oov == "error":
            raise InvalidInputError(
                "labels", f"a vector in the {self.embedding!r} embedding for every label",
                f"{len(oov)} without one: {', '.join(map(repr, oov[:10]))}",
                "Rename those labels, pick another embedding, or pass oov='onehot'.",
            )  # fmt: skip
        if self.normalize_embeddings:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        if oov:
            warnings.warn(
                f"cnn_r: {len(oov)} of {len(names)} labels have no {self.embedding!r} vector "
                f"({', '.join(map(repr, oov[:10]))}); each gets a one-hot dimension of its own",
                UserWarning,
                stacklevel=4,
            )
            extra = np.zeros((len(names), len(oov)))
            extra[np.flatnonzero(missing), np.arange(len(oov))] = 1.0
            vectors = np.hstack([vectors, extra])
        return vectors.astype(np.float32), oov

    def _targets(self, data: AnnotationSet) -> tuple[np.ndarray, np.ndarray]:
        """Mean label vector of each item (Sec. 3.2), and which items have labels."""
        labels = data.labels.astype(np.float32)
        counts = np.asarray(labels.sum(axis=1)).ravel()
        targets = np.asarray(labels @ self.label_vectors_) / np.maximum(counts, 1)[:, None]
        return targets.astype(np.float32), counts > 0

    # ----------------------------------------------------------------------- fit
    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        self.label_vectors_, self.oov_labels_ = self._label_vectors()
        encoder, _, _ = self._parts()
        self.encoder_id_ = encoder.feature_id
        views = self._views(train, training=True)
        targets, labelled = self._targets(train)
        fit_rows = np.flatnonzero(labelled)
        held_out = None
        if valid is None and self.validation_fraction > 0:
            shuffled = np.random.default_rng(self.seed).permutation(fit_rows)
            n_valid = max(1, round(self.validation_fraction * len(shuffled)))
            valid_rows, fit_rows = np.sort(shuffled[:n_valid]), np.sort(shuffled[n_valid:])
            held_out = MapsDataset(views[:1], valid_rows, targets[valid_rows])
        elif valid is not None and valid.n_items:
            valid_targets, valid_labelled = self._targets(valid)
            rows = np.flatnonzero(valid_labelled)
            if len(rows):
                held_out = MapsDataset(self._views(valid), rows, valid_targets[rows])
        if len(fit_rows) == 0:
            raise InvalidInputError("train", "items with at least one label", "none")
        self._train(MapsDataset(views, fit_rows, targets[fit_rows]), held_out)

    def _train(self, train: MapsDataset, held_out: MapsDataset | None) -> None:
        """AdamW on the block + projection; the epoch with the lowest held-out loss."""
        encoder, _, stage = self._parts()
        block = copy.deepcopy(split_backbone(encoder.model)[1])  # pretrained weights, tuned
        mean_target = train.targets.mean(dim=0)
        net = Regressor(block, encoder.num_features, len(mean_target), self.dropout)
        # Start from the constant prediction "mean training target" (loss = variance).
        nn.init.zeros_(net.projection.weight)
        net.projection.bias.data.copy_(mean_target)
        result = self._trainer(held_out is not None).fit(net, LossTask(l2_loss), train, held_out)
        self.history_ = result.history_
        state = float_state(net.block)
        self.block_state_ = np.concatenate(
            [t.detach().numpy().ravel() for t in state.values()]
        ).astype(np.float32)
        self.projection_weight_ = net.projection.weight.detach().numpy().copy()
        self.projection_bias_ = net.projection.bias.detach().numpy().copy()
        self._network = (encoder, net, stage)

    def _trainer(self, early_stopping: bool) -> Trainer:
        """AdamW with the block at `block_lr`, cosine decay to 0 over all steps, early
        stopping on the held-out L2 loss when there is one."""
        optimizer = OptimizerSettings(
            "adamw", lr=self.lr, weight_decay=self.weight_decay,
            groups=(Group("block", lr=self.block_lr),),
        )  # fmt: skip
        return Trainer(
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=optimizer,
            schedule=Schedule("cosine"),
            early_stopping=EarlyStopping("min", self.patience) if early_stopping else None,
            accelerator=torch_device(self.device).type,
            seed=self.seed,
            progress=self.verbose,
        )

    # -------------------------------------------------------------------- scores
    def predict_embeddings(self, inputs: AnnotationSet) -> np.ndarray:
        """The regressed vectors ``[n_items, d]`` of the items of `inputs`."""
        self._check_fitted()
        _, regressor, _ = self._parts()
        assert regressor is not None  # fitted models always have one
        device = torch_device(self.device)
        rows = self._views(inputs)[0]
        out = [np.zeros((0, regressor.projection.out_features), dtype=np.float32)]
        regressor.to(device).eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(rows), PREDICT_BATCH):
                    x = torch.from_numpy(rows[start : start + PREDICT_BATCH].astype(np.float32))
                    out.append(regressor(x.to(device)).float().cpu().numpy())
        finally:
            regressor.to("cpu")
        return np.concatenate(out)

    def _scores(self, inputs: AnnotationSet) -> np.ndarray:
        """Cosine similarity of each predicted vector to every label's vector."""
        predicted = self.predict_embeddings(inputs)
        predicted /= np.maximum(np.linalg.norm(predicted, axis=1, keepdims=True), 1e-12)
        labels = np.asarray(self.label_vectors_, dtype=np.float32)
        labels = labels / np.maximum(np.linalg.norm(labels, axis=1, keepdims=True), 1e-12)
        return (predicted @ labels.T).astype(np.float32)
