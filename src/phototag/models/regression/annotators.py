"""CNN-R: a CNN regressing images into word-embedding space (Murthy, Maji & Manmatha, 2015).

The encoder's classifier is replaced by a linear projection onto the word-embedding
space; the network is trained with an L2 (squared Euclidean) loss to predict the mean
embedding of each image's labels (Sec. 3.2, 3.5 of the CCA-KNN paper). The last block of
the encoder is fine-tuned with a lower learning rate than the new projection, everything
before it stays frozen. Labels are ranked by the cosine similarity of the predicted
vector to each label's embedding.

Fine-tuning needs pixels: the model reads ``AnnotationSet.image_paths``. The frozen part
of the network is run once per fit (on each photo and its mirror image, the flip
augmentation) and its output kept in memory as float16, so every epoch only runs the
fine-tuned block. Equations, parameters and results: ``docs/models/cnn_r.md``.
"""

from __future__ import annotations

import copy
import math
import sys
import warnings
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn

from phototag.data import AnnotationSet
from phototag.errors import InvalidInputError, check_choice, check_float, check_int
from phototag.evaluation.decoding import TopK
from phototag.features.encoders import Backbone, ImageEncoder, create_encoder
from phototag.features.encoders.preprocess import normalize
from phototag.features.extract import _Pool, decoded_batches, default_workers
from phototag.models.base import Annotator
from phototag.models.cca import label_embedding_matrix
from phototag.models.registry import register_annotator

__all__ = ["CNNRAnnotator", "TrunkMaps", "split_backbone"]

OOV_CHOICES = ("onehot", "error")
RUNTIMES = ("torch", "onnx")
DEVICES = ("auto", "cpu", "cuda")


# ----------------------------------------------------------------------------- network
def split_backbone(model: Backbone) -> tuple[nn.Module, nn.Module, str]:
    """The frozen trunk, the fine-tuned last block, and the name of the trunk's output map.

    EfficientNet-Lite: the last MBConv stage (``stage7``) and the 1x1 ``head`` conv are
    fine-tuned; ResNet: ``layer4`` (``conv5_x``). The modules share the backbone's weights.
    """
    from phototag.features.encoders.efficientnet_lite import EfficientNetLite
    from phototag.features.encoders.resnet import ResNet

    if isinstance(model, EfficientNetLite):
        trunk = nn.Sequential(model.stem, *model.blocks[:-1])
        block = nn.Sequential(model.blocks[-1], model.head)
        return trunk, block, model.stages[-3].name
    if isinstance(model, ResNet):
        parts = [model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2]
        trunk = nn.Sequential(*parts, model.layer3)
        return trunk, model.layer4, model.stages[-2].name
    raise InvalidInputError(
        "encoder",
        "an EfficientNet-Lite or ResNet encoder (whose last block CNN-R fine-tunes)",
        type(model).__name__,
    )


class _Regressor(nn.Module):
    """Fine-tuned block -> global average pool -> dropout -> linear projection."""

    def __init__(self, block: nn.Module, channels: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.block = block
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(channels, dim)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.projection(self.dropout(self.block(maps).mean(dim=(2, 3))))

    def train(self, mode: bool = True) -> Self:
        """Training mode, except batch norms: they keep their ImageNet statistics."""
        super().train(mode)
        for module in self.block.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self


def _float_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Floating-point tensors of `module`'s state (BatchNorm step counters left out)."""
    return {k: v for k, v in module.state_dict().items() if v.is_floating_point()}


# ------------------------------------------------------------------------ trunk maps
@dataclass
class TrunkMaps:
    """Frozen-trunk outputs of a set of photos.

    `maps` is float16 ``[n_kept, n_views, C, H, W]`` (view 0: the photo, view 1: its mirror
    image when computed with flips); `kept` the item indices they belong to; `failures`
    ``(path, reason)`` of the photos that could not be decoded.
    """

    maps: np.ndarray
    kept: np.ndarray
    failures: list[tuple[str, str]] = field(default_factory=list)

    def take(self, data: AnnotationSet, positions: np.ndarray) -> tuple[AnnotationSet, TrunkMaps]:
        """Rows `positions` of the maps, with the matching items of `data` (their source).

        `positions` index `kept` (the rows), not the items of `data`; the result's maps
        belong to the returned subset, so ``fit_maps(*maps.take(data, rows))`` works.
        """
        positions = np.asarray(positions, dtype=np.int64)
        subset = data.subset(self.kept[positions])
        return subset, TrunkMaps(self.maps[positions], np.arange(len(positions)), [])


# ------------------------------------------------------------------------- validation


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
        runtime: where the frozen trunk runs on CPU, ``"onnx"`` (faster) or ``"torch"``.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        workers: photo-decoding processes (None: one per core beyond the first; 0: none).
        seed: initialisation, shuffling, flips and dropout.
        verbose: print one line per epoch to stderr.
    """

    extra_state: ClassVar[tuple[str, ...]] = ("encoder_id_", "oov_labels_", "history_")

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
        runtime: str = "onnx",
        device: str = "auto",
        workers: int | None = None,
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
        self.runtime = check_choice("runtime", runtime, RUNTIMES)
        self.device = check_choice("device", device, DEVICES)
        self.workers = None if workers is None else check_int("workers", workers, 0)
        self.seed = check_int("seed", seed, 0)
        self.verbose = verbose

    def required_features(self) -> tuple[str, ...]:
        """The encoder's pooled features, when it can be built by name.

        CNN-R reads pixels, not these features; asking for them makes `phototag annotate`
        and `evaluate` drop photos that cannot be decoded before the model sees them (and
        lets ``--vocabulary`` use the same encoder).
        """
        return (self.encoder,) if self.encoder_weights is None else ()

    # ------------------------------------------------------------------ network
    def _torch_device(self) -> torch.device:
        from phototag.features.encoders.runtime import torch_device

        return torch_device(self.device)

    def _build_encoder(self) -> ImageEncoder:
        options: dict[str, Any] = {"runtime": "torch"}
        if self.encoder_weights is not None:
            options["weights"] = self.encoder_weights
        return create_encoder(self.encoder, **options)

    def _parts(self) -> tuple[ImageEncoder, nn.Module, _Regressor | None, str]:
        """(encoder, frozen trunk, regressor or None before fit, trunk output name), cached."""
        cached = getattr(self, "_network", None)
        if cached is None:
            encoder = self._build_encoder()
            if hasattr(self, "encoder_id_") and encoder.feature_id != self.encoder_id_:
                raise InvalidInputError(
                    "encoder", f"the encoder the model was trained with ({self.encoder_id_})",
                    encoder.feature_id,
                    "Install the same encoder weights, or train the model again.",
                )  # fmt: skip
            trunk, block, stage = split_backbone(encoder.model)
            regressor = None
            if hasattr(self, "block_state_"):
                regressor = self._restore_regressor(block)
            cached = (encoder, trunk.eval(), regressor, stage)
            self._network = cached
        return cached

    def _restore_regressor(self, block: nn.Module) -> _Regressor:
        weight = torch.from_numpy(np.asarray(self.projection_weight_, dtype=np.float32))
        regressor = _Regressor(copy.deepcopy(block), weight.shape[1], weight.shape[0], 0.0)
        state = _float_state(regressor.block)
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

    # ---------------------------------------------------------------- trunk maps
    def trunk_maps(self, data: AnnotationSet, *, flip: bool | None = None) -> TrunkMaps:
        """Run the frozen trunk on every photo of `data` (and its mirror image with `flip`).

        Photos that cannot be decoded are listed in ``failures`` and left out of ``kept``.
        `fit` calls this; call it yourself to reuse the maps across several fits.
        """
        if data.image_paths is None:
            raise InvalidInputError(
                "data", "a dataset with image paths (CNN-R fine-tunes on pixels)",
                f"{data.name} (labels/features only)",
                "Give the dataset reader the image folder, e.g. NAME:PATH?images=DIR.",
            )  # fmt: skip
        flip = self.flip if flip is None else flip
        encoder, trunk, _, stage = self._parts()
        device = self._torch_device()
        onnx = self._onnx_encoder() if device.type == "cpu" and self.runtime == "onnx" else None
        trunk.to(device)
        views = 2 if flip else 1
        chunks: list[np.ndarray] = []
        kept: list[int] = []
        failures: list[tuple[str, str]] = []
        for indices, batch, failed in _decoded_batches(data.image_paths, encoder, self.workers):
            failures.extend(failed)
            if not indices:
                continue
            x = normalize(np.stack(batch), encoder.preprocess)
            if flip:
                x = torch.cat([x, torch.flip(x, dims=[3])])
            if onnx is not None:
                out = onnx.forward_features(x, [stage])[stage]
            else:
                with torch.inference_mode():
                    out = trunk(x.to(device))
            out = out.to("cpu", torch.float16).numpy()
            chunks.append(out.reshape(views, len(indices), *out.shape[1:]).swapaxes(0, 1))
            kept.extend(indices)
        if not kept:
            shown = "; ".join(reason for _, reason in failures[:3])
            raise InvalidInputError("data", "at least one readable photo", f"none ({shown})")
        return TrunkMaps(np.concatenate(chunks), np.asarray(kept, dtype=np.int64), failures)

    def _onnx_encoder(self) -> ImageEncoder | None:
        """The same encoder on ONNX Runtime (for the frozen trunk) if it can be had, cached."""
        if not hasattr(self, "_onnx"):
            options: dict[str, Any] = {"runtime": "onnx"}
            if self.encoder_weights is not None:
                options["weights"] = self.encoder_weights
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                encoder = create_encoder(self.encoder, **options)
            self._onnx = encoder if encoder.runtime == "onnx" else None
        return self._onnx

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

    def _targets(self, data: AnnotationSet, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean label vector of items `rows` (Sec. 3.2), and which of them have labels."""
        labels = data.labels[rows].astype(np.float32)
        counts = np.asarray(labels.sum(axis=1)).ravel()
        targets = np.asarray(labels @ self.label_vectors_) / np.maximum(counts, 1)[:, None]
        return targets.astype(np.float32), counts > 0

    # ----------------------------------------------------------------------- fit
    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        maps = self.trunk_maps(train)
        valid_maps = None
        if valid is not None and valid.n_items:
            valid_maps = self.trunk_maps(valid, flip=False)
        self._fit_maps(train, maps, valid, valid_maps)

    def fit_maps(
        self,
        train: AnnotationSet,
        maps: TrunkMaps,
        valid: AnnotationSet | None = None,
        valid_maps: TrunkMaps | None = None,
    ) -> Self:
        """`fit` from precomputed `trunk_maps` (of `train`, and of `valid` if given)."""
        if train.n_items == 0:
            raise InvalidInputError("train", "at least one item", "an empty set")
        self.vocabulary_ = train.vocabulary
        self.decoder_ = getattr(self, "decoder_", TopK(5))
        self._fit_maps(train, maps, valid, valid_maps)
        return self

    def _fit_maps(
        self,
        train: AnnotationSet,
        maps: TrunkMaps,
        valid: AnnotationSet | None,
        valid_maps: TrunkMaps | None,
    ) -> None:
        if maps.failures:
            warnings.warn(
                f"cnn_r: {len(maps.failures)} training photos could not be decoded and are "
                f"left out (first: {maps.failures[0][1]})",
                UserWarning,
                stacklevel=3,
            )
        self.label_vectors_, self.oov_labels_ = self._label_vectors()
        encoder, _, _, _ = self._parts()
        self.encoder_id_ = encoder.feature_id
        targets, labelled = self._targets(train, maps.kept)
        rng = np.random.default_rng(self.seed)
        fit_rows = np.flatnonzero(labelled)
        valid_rows = np.zeros(0, dtype=np.int64)
        if valid is None and self.validation_fraction > 0:
            shuffled = rng.permutation(fit_rows)
            n_valid = max(1, round(self.validation_fraction * len(shuffled)))
            valid_rows, fit_rows = np.sort(shuffled[:n_valid]), np.sort(shuffled[n_valid:])
        if len(fit_rows) == 0:
            raise InvalidInputError("train", "items with at least one label", "none")
        held_out = None
        if len(valid_rows):
            held_out = (maps.maps[valid_rows, :1], targets[valid_rows])
        elif valid is not None and valid_maps is not None:
            valid_targets, valid_labelled = self._targets(valid, valid_maps.kept)
            rows = np.flatnonzero(valid_labelled)
            if len(rows):
                held_out = (valid_maps.maps[rows, :1], valid_targets[rows])
        self._train(maps.maps[fit_rows], targets[fit_rows], held_out, rng)

    def _train(
        self,
        maps: np.ndarray,
        targets: np.ndarray,
        held_out: tuple[np.ndarray, np.ndarray] | None,
        rng: np.random.Generator,
    ) -> None:
        """Adam on the block + projection; keep the epoch with the lowest held-out loss."""
        encoder, trunk, _, stage = self._parts()
        block = copy.deepcopy(split_backbone(encoder.model)[1])  # pretrained weights, tuned
        device = self._torch_device()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = _Regressor(block, encoder.num_features, targets.shape[1], self.dropout)
            # Start from the constant prediction "mean training target" (loss = variance).
            nn.init.zeros_(net.projection.weight)
            net.projection.bias.data.copy_(torch.from_numpy(targets.mean(axis=0)))
            net.to(device)
            optimizer = torch.optim.AdamW(
                [{"params": net.block.parameters(), "lr": self.block_lr},
                 {"params": net.projection.parameters(), "lr": self.lr}],
                weight_decay=self.weight_decay,
            )  # fmt: skip
            steps = self.epochs * math.ceil(len(maps) / self.batch_size)
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0)))
            )
            y_all = torch.from_numpy(targets)
            self.history_: list[dict[str, float]] = []
            best: tuple[float, dict[str, torch.Tensor]] | None = None
            waited = 0
            for epoch in range(self.epochs):
                order = rng.permutation(len(maps))
                view = rng.integers(0, maps.shape[1], len(maps))
                net.train()
                total = 0.0
                for start in range(0, len(order), self.batch_size):
                    idx = order[start : start + self.batch_size]
                    x = torch.from_numpy(maps[idx, view[idx]]).to(device).float()
                    loss = _l2_loss(net(x), y_all[idx].to(device))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    total += float(loss.detach()) * len(idx)
                record = {"epoch": epoch + 1, "train_loss": total / len(maps)}
                if held_out is not None:
                    record["valid_loss"] = self._held_out_loss(net, *held_out, device)
                self.history_.append(record)
                if self.verbose:
                    shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch")
                    print(f"cnn_r epoch {epoch + 1}/{self.epochs}: {shown}", file=sys.stderr)
                if held_out is None:
                    continue
                if best is None or record["valid_loss"] < best[0]:
                    best = (record["valid_loss"], copy.deepcopy(net.state_dict()))
                    waited = 0
                else:
                    waited += 1
                    if waited >= self.patience:
                        break
        if best is not None:
            net.load_state_dict(best[1])
        net.to("cpu").eval()
        state = _float_state(net.block)
        self.block_state_ = np.concatenate(
            [t.detach().numpy().ravel() for t in state.values()]
        ).astype(np.float32)
        self.projection_weight_ = net.projection.weight.detach().numpy().copy()
        self.projection_bias_ = net.projection.bias.detach().numpy().copy()
        self._network = (encoder, trunk, net, stage)

    def _held_out_loss(
        self, net: _Regressor, maps: np.ndarray, targets: np.ndarray, device: torch.device
    ) -> float:
        predictions = self._predict(net, maps[:, 0], device)
        return float(_l2_loss(torch.from_numpy(predictions), torch.from_numpy(targets)))

    def _predict(self, net: _Regressor, maps: np.ndarray, device: torch.device) -> np.ndarray:
        net.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(maps), 256):
                x = torch.from_numpy(maps[start : start + 256]).to(device).float()
                out.append(net(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, net.projection.out_features))

    # -------------------------------------------------------------------- scores
    def predict_embeddings(self, maps: TrunkMaps) -> np.ndarray:
        """The regressed vectors ``[n_kept, d]`` of precomputed (view-0) trunk maps."""
        self._check_fitted()
        _, _, regressor, _ = self._parts()
        assert regressor is not None  # fitted models always have one
        device = self._torch_device()
        regressor.to(device)
        try:
            return self._predict(regressor, maps.maps[:, 0], device)
        finally:
            regressor.to("cpu")

    def scores_from_maps(self, maps: TrunkMaps) -> np.ndarray:
        """Cosine similarity of each predicted vector to every label's vector."""
        predicted = self.predict_embeddings(maps)
        predicted /= np.maximum(np.linalg.norm(predicted, axis=1, keepdims=True), 1e-12)
        labels = np.asarray(self.label_vectors_, dtype=np.float32)
        labels = labels / np.maximum(np.linalg.norm(labels, axis=1, keepdims=True), 1e-12)
        return (predicted @ labels.T).astype(np.float32)

    def _scores(self, inputs: AnnotationSet) -> np.ndarray:
        if inputs.n_items == 0:
            return np.zeros((0, len(self.vocabulary_)), dtype=np.float32)
        maps = self.trunk_maps(inputs, flip=False)
        if maps.failures:
            path, reason = maps.failures[0]
            raise InvalidInputError(
                "inputs", "photos that can be decoded", reason,
                f"Remove {path} (and {len(maps.failures) - 1} more) from the inputs.",
            )  # fmt: skip
        return self.scores_from_maps(maps)


def _l2_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance, averaged over the batch (the paper's L2 loss)."""
    return ((predicted - target) ** 2).sum(dim=1).mean()


def _decoded_batches(
    paths: list[str], encoder: ImageEncoder, workers: int | None, batch_size: int = 32
) -> Iterator[tuple[list[int], list[np.ndarray], list[tuple[str, str]]]]:
    """`phototag.features.extract.decoded_batches` of `paths` in a pool of its own.

    A single batch is decoded in-process: starting workers would cost more than it saves
    (and a service scoring a few uploads should not fork).
    """
    if len(paths) <= batch_size:
        workers = 0
    pool = _Pool(default_workers(paths) if workers is None else workers)
    try:
        with closing(decoded_batches(paths, encoder.preprocess, batch_size, pool)) as batches:
            yield from batches
    finally:
        pool.close()
