"""CNN-RNN and JVSP as phototag models: label-sequence decoders over a stored stage map.

Each model declares one encoder stage map as its input (by default EfficientNet-Lite2's
``head``, 1,280 x 9 x 9: 81 regions); the runners fill it from the feature-map store, so
training never runs the encoder. Training is teacher forcing on each image's labels in
a fixed order (rare or frequent first); `predict` decodes by beam search and returns
the label sets it chose (`Prediction.label_sets`, decoded by `OwnLabelSets`, the
default) and per-label scores for ranking metrics: a label's highest probability over
the steps of the chosen sequence. docs/models/recurrent.md maps the paper to the code.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np

from phototag.data import AnnotationSet
from phototag.data.inputs import MapSpec, ModelInputs
from phototag.errors import InvalidInputError, check_choice, check_float, check_int
from phototag.evaluation.decoding import OwnLabelSets
from phototag.evaluation.predictions import Prediction
from phototag.models.base import Annotator
from phototag.models.recurrent.data import ORDERS
from phototag.models.registry import register_annotator

DEVICES = ("auto", "cpu", "cuda")
#: Images per forward pass when decoding.
PREDICT_BATCH = 256


class RecurrentAnnotator(Annotator):
    """The settings and training shared by the sequence decoders (see `JVSPAnnotator`
    for the parameters); subclasses build their network in `build_modules`."""

    torch_modules: ClassVar[tuple[str, ...]] = ("network_",)
    extra_state: ClassVar[tuple[str, ...]] = ("channels_", "rank_", "history_")
    runtime_settings: ClassVar[tuple[str, ...]] = ("device", "verbose")

    def _set_common(
        self, encoder: str, stage: str, order: str, k: int, stop_at_end: bool, beam: int,
        max_labels: int, dim: int, embedding: str | None, dropout: float, lr: float,
        lr_step: int, lr_gamma: float, epochs: int, batch_size: int,
        validation_fraction: float, patience: int, seed: int, device: str, verbose: bool,
    ) -> None:  # fmt: skip
        for name, value in (("encoder", encoder), ("stage", stage)):
            if not isinstance(value, str) or not value:
                raise InvalidInputError(name, f"an {name} name", repr(value))
        for name, flag in (("stop_at_end", stop_at_end), ("verbose", verbose)):
            if not isinstance(flag, bool):
                raise InvalidInputError(name, "True or False", repr(flag))
        self.encoder, self.stage = encoder, stage
        self.order = check_choice("order", order, ORDERS)
        self.k = check_int("k", k, 1)
        self.stop_at_end = stop_at_end
        self.beam = check_int("beam", beam, 1)
        self.max_labels = check_int("max_labels", max_labels, 1)
        self.dim = check_int("dim", dim, 1)
        if embedding is not None and (not isinstance(embedding, str) or not embedding):
            raise InvalidInputError(
                "embedding", "a word-embedding spec (glove50, minilm, ...) or None", repr(embedding)
            )
        self.embedding = embedding
        self.dropout = check_float("dropout", dropout, 0.0, strict=False, maximum=0.99)
        self.lr = check_float("lr", lr, 0.0)
        self.lr_step = check_int("lr_step", lr_step, 1)
        self.lr_gamma = check_float("lr_gamma", lr_gamma, 0.0, maximum=1.0)
        self.epochs = check_int("epochs", epochs, 1)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.validation_fraction = check_float(
            "validation_fraction", validation_fraction, 0.0, strict=False, maximum=0.5
        )
        self.patience = check_int("patience", patience, 1)
        self.seed = check_int("seed", seed, 0)
        self.device = check_choice("device", device, DEVICES)
        self.verbose = verbose

    #: JVSP's loss weight of the diversity loss and its threshold (0 for CNN-RNN).
    def _diversity(self) -> tuple[float, float]:
        return 0.0, 0.0

    # ------------------------------------------------------------------ inputs
    def required_inputs(self, training: bool = False) -> ModelInputs:
        """The encoder's stage map."""
        return ModelInputs(maps=(MapSpec(self.encoder, self.stage),))

    def _maps(self, data: AnnotationSet) -> Any:
        return data.maps[MapSpec(self.encoder, self.stage).key]

    # --------------------------------------------------------------------- fit
    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        import torch

        from phototag.models.recurrent.data import SequenceDataset, label_rank, ordered_labels
        from phototag.models.recurrent.network import SequenceTask

        self.decoder_ = OwnLabelSets()
        maps = self._maps(train)
        self.channels_ = int(maps.shape[1])
        frequencies = np.asarray(train.labels.sum(axis=0)).ravel()
        self.rank_ = label_rank(frequencies, self.order).tolist()
        rank = np.asarray(self.rank_)
        rows = np.flatnonzero(train.label_counts() > 0)
        if not len(rows):
            raise InvalidInputError("train", "items with at least one label", "none")
        sequences = ordered_labels(train.labels, rank)
        held = None
        if valid is not None and valid.n_items:
            held = SequenceDataset(
                self._maps(valid), ordered_labels(valid.labels, rank),
                np.flatnonzero(valid.label_counts() > 0),
            )  # fmt: skip
        elif self.validation_fraction > 0 and len(rows) > 1:
            order = np.random.default_rng(self.seed).permutation(rows)
            n_valid = max(1, round(self.validation_fraction * len(order)))
            held = SequenceDataset(maps, sequences, np.sort(order[:n_valid]))
            rows = np.sort(order[n_valid:])
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.build_modules()
        if self.embedding is not None:
            self._initialise_label_embeddings()
        n_labels = len(self.vocabulary_)
        alpha, beta = self._diversity()
        steps = self.max_labels if self.stop_at_end else self.k
        task = SequenceTask(n_labels, n_labels + 1, alpha, beta, steps, self.stop_at_end)
        batch_size = min(self.batch_size, len(rows))
        result = self._trainer(held is not None, batch_size).fit(
            self.network_, task, SequenceDataset(maps, sequences, rows), held
        )
        self.history_ = result.history_

    def _initialise_label_embeddings(self) -> None:
        import torch

        from phototag.features.embeddings import create_embedding

        names = list(self.vocabulary_.names)
        result = create_embedding(self.embedding).fit(names).embed(names)
        if result.oov:
            warnings.warn(
                f"{result.report()}; the labels without a vector start random",
                UserWarning,
                stacklevel=3,
            )
        self.network_.initialise_labels(
            torch.from_numpy(result.vectors), torch.from_numpy(result.found)
        )

    def _trainer(self, early_stopping: bool, batch_size: int) -> Any:
        from phototag.features.encoders.runtime import torch_device
        from phototag.training import EarlyStopping, OptimizerSettings, Schedule, Trainer

        return Trainer(
            epochs=self.epochs,
            batch_size=batch_size,
            optimizer=OptimizerSettings("adam", lr=self.lr, betas=(0.8, 0.999)),
            schedule=Schedule(
                "step", interval="epoch", step_size=self.lr_step, gamma=self.lr_gamma
            ),  # fmt: skip
            early_stopping=EarlyStopping("max", self.patience) if early_stopping else None,
            accelerator=torch_device(self.device).type,
            seed=self.seed,
            progress=self.verbose,
        )

    # ----------------------------------------------------------------- predict
    def _predict(self, inputs: AnnotationSet) -> Prediction:
        import torch

        from phototag.features.encoders.runtime import torch_device
        from phototag.models.recurrent.network import beam_search

        maps = self._maps(inputs)
        device = torch_device(self.device)
        network = self.network_.to(device).eval()
        steps = self.max_labels if self.stop_at_end else self.k
        n_labels = len(self.vocabulary_)
        sets = [np.zeros((0, n_labels), bool)]
        scores = [np.zeros((0, n_labels), np.float32)]
        try:
            with torch.inference_mode():
                for start in range(0, inputs.n_items, PREDICT_BATCH):
                    batch = np.asarray(maps[start : start + PREDICT_BATCH], np.float32)
                    decoded = beam_search(
                        network, torch.from_numpy(batch).to(device), beam=self.beam,
                        steps=steps, stop_at_end=self.stop_at_end,
                    )  # fmt: skip
                    sets.append(decoded.label_sets.cpu().numpy())
                    scores.append(decoded.scores.float().cpu().numpy())
        finally:
            network.to("cpu")
        return Prediction(scores=np.concatenate(scores), label_sets=np.concatenate(sets))


@register_annotator("cnn_rnn")
class CNNRNNAnnotator(RecurrentAnnotator):
    """CNN-RNN (Wang et al. 2016), the JVSP paper's main baseline: an LSTM over label
    embeddings fused with the pooled image embedding; the parameters are `JVSPAnnotator`'s
    without the JVSP parts."""

    def __init__(
        self,
        encoder: str = "efficientnet_lite2",
        stage: str = "head",
        order: str = "rare_first",
        k: int = 5,
        stop_at_end: bool = False,
        beam: int = 3,
        max_labels: int = 10,
        dim: int = 512,
        embedding: str | None = None,
        dropout: float = 0.5,
        lr: float = 1e-3,
        lr_step: int = 8,
        lr_gamma: float = 0.5,
        epochs: int = 30,
        batch_size: int = 64,
        validation_fraction: float = 0.1,
        patience: int = 3,
        seed: int = 0,
        device: str = "auto",
        verbose: bool = False,
    ) -> None:
        self._set_common(
            encoder, stage, order, k, stop_at_end, beam, max_labels, dim, embedding, dropout, lr,
            lr_step, lr_gamma, epochs, batch_size, validation_fraction, patience, seed,
            device, verbose,
        )  # fmt: skip

    def build_modules(self) -> None:
        from phototag.models.recurrent.network import CNNRNN

        self.network_ = CNNRNN(self.channels_, len(self.vocabulary_), self.dim, self.dropout)


@register_annotator("jvsp")
class JVSPAnnotator(RecurrentAnnotator):
    """JVSP: joint visual-semantic propagation of labels by a visual-guided LSTM.

    Parameters:
        encoder: the image encoder whose stage map is read (its feature name).
        stage: the stage whose H x W positions are the regions C(I).
        order: the training order of an image's labels: ``"rare_first"`` (the paper on
            ESP Game) or ``"frequent_first"`` (NUS-WIDE, MS-COCO).
        k: labels per image when decoding top-k.
        stop_at_end: decode until the end token (at most `max_labels` labels) instead
            of exactly `k` labels.
        beam: sequences kept per image by beam search (1: greedy).
        max_labels: the longest sequence with `stop_at_end`.
        dim: image features, tag embeddings and hidden state (the paper: 512).
        embedding: a word embedding (``phototag.features.embeddings`` spec: ``glove50``,
            ``minilm``, ``wordnet``, ``file:PATH``) to start the tag embeddings U_l and
            U_f from; None: random.
        dropout: dropout on U_ig V_t and on the LSTM output (the paper: 0.5).
        knowledge: the knowledge guidance K_t (Eq. 2); False for the ablation.
        visual_lstm: the visual-guided LSTM (Eq. 8-9); False: a plain LSTM over T_t.
        alpha: weight of the diversity loss (Eq. 11; 0 turns it off).
        beta: the attention weight from which a region counts as focused (Eq. 10).
        lr: Adam's learning rate (betas 0.8, 0.999 as the paper).
        lr_step, lr_gamma: the staircase decay: the rate times `lr_gamma` every
            `lr_step` epochs.
        epochs: the most epochs (early stopping on held-out items ends sooner).
        batch_size: images per step.
        validation_fraction: training items held out for early stopping (0: none).
        patience: epochs without a better held-out C-F1 (greedy decoding) before training
            stops.
        seed: weight initialisation, shuffling, dropout and the held-out items.

    Runtime settings (not saved with the model):
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        verbose: one progress line per epoch on stderr.
    """

    def __init__(
        self,
        encoder: str = "efficientnet_lite2",
        stage: str = "head",
        order: str = "rare_first",
        k: int = 5,
        stop_at_end: bool = False,
        beam: int = 3,
        max_labels: int = 10,
        dim: int = 512,
        embedding: str | None = None,
        dropout: float = 0.5,
        knowledge: bool = True,
        visual_lstm: bool = True,
        alpha: float = 0.5,
        beta: float = 0.01,
        lr: float = 1e-3,
        lr_step: int = 8,
        lr_gamma: float = 0.5,
        epochs: int = 30,
        batch_size: int = 64,
        validation_fraction: float = 0.1,
        patience: int = 3,
        seed: int = 0,
        device: str = "auto",
        verbose: bool = False,
    ) -> None:
        self._set_common(
            encoder, stage, order, k, stop_at_end, beam, max_labels, dim, embedding, dropout, lr,
            lr_step, lr_gamma, epochs, batch_size, validation_fraction, patience, seed,
            device, verbose,
        )  # fmt: skip
        for name, flag in (("knowledge", knowledge), ("visual_lstm", visual_lstm)):
            if not isinstance(flag, bool):
                raise InvalidInputError(name, "True or False", repr(flag))
        self.knowledge, self.visual_lstm = knowledge, visual_lstm
        self.alpha = check_float("alpha", alpha, 0.0, strict=False)
        self.beta = check_float("beta", beta, 0.0, strict=False, maximum=1.0)

    def _diversity(self) -> tuple[float, float]:
        return self.alpha, self.beta

    def build_modules(self) -> None:
        from phototag.models.recurrent.network import JVSP

        self.network_ = JVSP(
            self.channels_, len(self.vocabulary_), self.dim, self.dropout,
            knowledge=self.knowledge, visual_lstm=self.visual_lstm,
        )  # fmt: skip
