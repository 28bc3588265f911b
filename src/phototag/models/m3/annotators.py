"""M3 as a phototag model: multi-scale visual features, a tag network and label-quantity
prediction (Niu et al. 2017), trained in the stages of its Algorithm 1 from stored maps.

The model declares the encoder's stage maps (and, with `tags`, the items' user tags) as
its inputs; the runners fill them from the feature-map store, so training never runs
the encoder. `predict` returns the classifier's probabilities and the LQP regressor's
label counts, which the `Quantity` decoder (Algorithm 2, the default with `lqp`) turns
into the top round(m) labels. docs/models/m3.md maps the equations to the code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from phototag.data import AnnotationSet, Vocabulary
from phototag.data.inputs import MapSpec, ModelInputs
from phototag.errors import InvalidInputError, check_choice, check_float, check_int
from phototag.evaluation.decoding import Quantity, TopK
from phototag.evaluation.predictions import Prediction
from phototag.models.base import Annotator
from phototag.models.registry import register_annotator

DEVICES = ("auto", "cpu", "cuda")
#: Items per forward pass when predicting.
PREDICT_BATCH = 128


@register_annotator("m3")
class M3Annotator(Annotator):
    """M3 (MS-CNN [+ Tags] [+ LQP]) on an encoder's stored stage maps.

    Parameters:
        encoder: the image encoder whose stage maps are fused (its feature name).
        stages: the maps M_1..M_K, finest first; None: the encoder's five multi-scale
            maps (``encoder.scales``; EfficientNet-Lite2: ``stage1 stage2 stage3 stage5
            head``). One stage gives the paper's plain "CNN": its pooled map + classifier;
            none (with `tags`) the "Tags" rows: user tags alone.
        tags: add the tag MLP over the items' user tags (MS-CNN+Tags).
        lqp: decode with the predicted label quantities (Algorithm 2) by default; the
            regressor is trained either way, and ``--protocol`` chooses at evaluation.
        min_tag_count: user tags seen on fewer training items are left out.
        tag_hidden: the tag MLP's hidden sizes (the paper: two layers of 2,048).
        tag_dropout: dropout in the tag MLP.
        visual_lr, textual_lr: SGD rates of the visual parts (fusion, classifier) and
            of the tag MLP and LQP regressor (Sec. IV-A-3; defaults: NUS-WIDE's).
        quantity_lr: the LQP regressor's own rate (None: `textual_lr`, as the paper).
        momentum: SGD momentum of every stage.
        weight_decay: L2 penalty of every stage.
        epochs: epochs of each stage (the maximum, with early stopping).
        batch_size: items per step.
        validation_fraction: training items held out for early stopping (0: none).
        patience: epochs without a better validation loss before a stage stops.
        seed: weight initialisation, shuffling, dropout and the held-out items.

    Runtime settings (not saved with the model):
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        verbose: one progress line per epoch on stderr.
    """

    torch_modules: ClassVar[tuple[str, ...]] = ("network_",)
    extra_state: ClassVar[tuple[str, ...]] = ("stages_", "shapes_", "channels_", "history_")
    runtime_settings: ClassVar[tuple[str, ...]] = ("device", "verbose")

    def __init__(
        self,
        encoder: str = "efficientnet_lite2",
        stages: Sequence[str] | None = None,
        tags: bool = False,
        lqp: bool = True,
        min_tag_count: int = 1,
        tag_hidden: Sequence[int] = (2048, 2048),
        tag_dropout: float = 0.0,
        visual_lr: float = 0.001,
        textual_lr: float = 0.1,
        quantity_lr: float | None = None,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        epochs: int = 10,
        batch_size: int = 64,
        validation_fraction: float = 0.1,
        patience: int = 3,
        seed: int = 0,
        device: str = "auto",
        verbose: bool = False,
    ) -> None:
        if not isinstance(encoder, str) or not encoder:
            raise InvalidInputError("encoder", "an encoder name", repr(encoder))
        if stages is not None and (
            isinstance(stages, str) or not all(isinstance(s, str) for s in stages)
        ):
            raise InvalidInputError("stages", "None or a list of stage names", repr(stages))
        if stages is not None and not stages and not tags:
            raise InvalidInputError("stages", "stage names (or none with tags=True)", "[]")
        for name, value in (("tags", tags), ("lqp", lqp), ("verbose", verbose)):
            if not isinstance(value, bool):
                raise InvalidInputError(name, "True or False", repr(value))
        self.encoder = encoder
        self.stages = None if stages is None else list(stages)
        self.tags = tags
        self.lqp = lqp
        self.min_tag_count = check_int("min_tag_count", min_tag_count, 1)
        self.tag_hidden = [check_int("tag_hidden", size, 1) for size in tag_hidden]
        self.tag_dropout = check_float("tag_dropout", tag_dropout, 0.0, strict=False, maximum=0.99)
        self.visual_lr = check_float("visual_lr", visual_lr, 0.0)
        self.textual_lr = check_float("textual_lr", textual_lr, 0.0)
        self.quantity_lr = (
            None if quantity_lr is None else check_float("quantity_lr", quantity_lr, 0.0)
        )
        self.momentum = check_float("momentum", momentum, 0.0, strict=False, maximum=0.999)
        self.weight_decay = check_float("weight_decay", weight_decay, 0.0, strict=False)
        self.epochs = check_int("epochs", epochs, 1)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.validation_fraction = check_float(
            "validation_fraction", validation_fraction, 0.0, strict=False, maximum=0.5
        )
        self.patience = check_int("patience", patience, 1)
        self.seed = check_int("seed", seed, 0)
        self.device = check_choice("device", device, DEVICES)
        self.verbose = verbose

    # ------------------------------------------------------------------ inputs
    def stage_names(self) -> tuple[str, ...]:
        """The stages whose maps the model fuses, finest first."""
        if hasattr(self, "stages_"):
            return tuple(self.stages_)
        if self.stages is not None:
            return tuple(self.stages)
        from phototag.features.extract import create_source

        return tuple(create_source(self.encoder, runtime="torch").scales)  # type: ignore[attr-defined]

    def required_inputs(self, training: bool = False) -> ModelInputs:
        """The stage maps, and the items' user tags with `tags`."""
        maps = tuple(MapSpec(self.encoder, stage) for stage in self.stage_names())
        return ModelInputs(maps=maps, user_tags=self.tags)

    # --------------------------------------------------------------------- fit
    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        import torch

        self.decoder_ = Quantity() if self.lqp else TopK(5)
        self.stages_ = list(self.stage_names())
        first = [train.maps[spec.key] for spec in self.required_inputs().maps]
        self.channels_ = [int(rows.shape[1]) for rows in first]
        self.shapes_ = [[int(rows.shape[2]), int(rows.shape[3])] for rows in first]
        if self.tags:
            counts = np.asarray(train.user_tags.sum(axis=0)).ravel()  # type: ignore[union-attr]
            kept = [w for w, c in zip(train.tag_vocabulary, counts, strict=True)  # type: ignore[arg-type]
                    if c >= self.min_tag_count]  # fmt: skip
            if not kept:
                raise InvalidInputError("train", "user tags on the training items", "none")
            self.tag_vocabulary_ = Vocabulary(kept)
        rows = np.flatnonzero(train.label_counts() > 0)
        if not len(rows):
            raise InvalidInputError("train", "items with at least one label", "none")
        held: tuple[AnnotationSet, np.ndarray] | None = None
        if valid is not None and valid.n_items:
            held = (valid, np.flatnonzero(valid.label_counts() > 0))
        elif self.validation_fraction > 0:
            order = np.random.default_rng(self.seed).permutation(rows)
            n_valid = max(1, round(self.validation_fraction * len(order)))
            held = (train, np.sort(order[:n_valid]))
            rows = np.sort(order[n_valid:])
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.build_modules()
        network, tasks = self.network_, self._tasks(self.network_)
        fusion, rest = self._phases(network)
        self.history_ = []
        train_visual = valid_visual = None
        if fusion:  # step 3 on the maps; the later stages on f_v, computed once
            result = self._trainer(fusion, held is not None).fit(
                network, _of(tasks, fusion), self._dataset(train, rows),
                held and self._dataset(*held),
            )  # fmt: skip
            self.history_ += result.history_
            train_visual = self._visual(train)
            if held is not None:  # held out of `train`: its f_v is already there
                valid_visual = train_visual if held[0] is train else self._visual(held[0])
        result = self._trainer(rest, held is not None).fit(
            network, _of(tasks, rest), self._dataset(train, rows, train_visual),
            held and self._dataset(*held, valid_visual),
        )  # fmt: skip
        self.history_ += result.history_

    def build_modules(self) -> None:
        from phototag.models.m3.network import M3Network

        n_tags = len(self.tag_vocabulary_) if self.tags else 0
        self.network_ = M3Network(
            self.channels_, self.shapes_, len(self.vocabulary_), n_tags=n_tags,
            tag_hidden=self.tag_hidden, tag_dropout=self.tag_dropout,
        )  # fmt: skip

    def _tasks(self, network: Any) -> Any:
        from phototag.models.m3.network import training_tasks

        return training_tasks(network)

    def _phases(self, network: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """Algorithm 1's phases (with weight decay): the fusion's, and the ones after it."""
        from phototag.models.m3.network import LearningRates, training_phases

        rates = LearningRates(self.visual_lr, self.textual_lr, self.quantity_lr)
        phases = [_with_weight_decay(p, self.weight_decay)
                  for p in training_phases(network, rates, self.momentum)]  # fmt: skip
        first = tuple(p for p in phases if p.name == "multiscale")
        return first, tuple(p for p in phases if p.name != "multiscale")

    def _trainer(self, phases: tuple[Any, ...], early_stopping: bool) -> Any:
        from phototag.features.encoders.runtime import torch_device
        from phototag.training import EarlyStopping, OptimizerSettings, Trainer

        return Trainer(
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=OptimizerSettings("sgd", lr=self.visual_lr, weight_decay=self.weight_decay),
            phases=phases,
            early_stopping=EarlyStopping("min", self.patience) if early_stopping else None,
            accelerator=torch_device(self.device).type,
            seed=self.seed,
            progress=self.verbose,
        )

    def _dataset(
        self, data: AnnotationSet, rows: np.ndarray, visual: np.ndarray | None = None
    ) -> Any:
        from phototag.models.m3.data import M3Dataset

        return M3Dataset(self._maps(data), self._tag_matrix(data), data.labels, rows, visual)

    def _visual(self, data: AnnotationSet) -> np.ndarray:
        """f_v of every item of `data`, by the trained fusion (float32 ``[n, C_K]``)."""
        import torch

        maps = self._maps(data)
        fusion = self.network_.fusion.eval()
        out = [np.zeros((0, fusion.out_features), np.float32)]
        with torch.inference_mode():
            for start in range(0, data.n_items, PREDICT_BATCH):
                part = slice(start, start + PREDICT_BATCH)
                batch = [torch.from_numpy(np.asarray(m[part], np.float32)) for m in maps]
                out.append(fusion(batch).float().numpy())
        return np.concatenate(out)

    def _maps(self, data: AnnotationSet) -> list[Any]:
        return [data.maps[spec.key] for spec in self.required_inputs().maps]

    def _tag_matrix(self, data: AnnotationSet) -> Any:
        return data.user_tags_in(self.tag_vocabulary_) if self.tags else None

    # ----------------------------------------------------------------- predict
    def _predict(self, inputs: AnnotationSet) -> Prediction:
        import torch

        from phototag.features.encoders.runtime import torch_device

        maps, tags = self._maps(inputs), self._tag_matrix(inputs)
        device = torch_device(self.device)
        network = self.network_.to(device).eval()
        scores, quantities = [], []
        try:
            with torch.inference_mode():
                for start in range(0, inputs.n_items, PREDICT_BATCH):
                    part = slice(start, start + PREDICT_BATCH)
                    batch = [torch.from_numpy(np.asarray(m[part], np.float32)).to(device)
                             for m in maps]  # fmt: skip
                    tag_batch = None
                    if tags is not None:
                        dense = tags[part].toarray().astype(np.float32)
                        tag_batch = torch.from_numpy(dense).to(device)
                    out = network(maps=batch, tags=tag_batch)
                    scores.append(torch.sigmoid(out["logits"]).float().cpu().numpy())
                    quantities.append(out["quantity"].float().cpu().numpy())
        finally:
            network.to("cpu")
        n_labels = len(self.vocabulary_)
        return Prediction(
            scores=np.concatenate(scores) if scores else np.zeros((0, n_labels), np.float32),
            quantities=np.concatenate(quantities) if quantities else np.zeros(0, np.float32),
        )


def _of(tasks: dict[str, Any], phases: tuple[Any, ...]) -> dict[str, Any]:
    """The tasks of `phases`, by phase name."""
    return {phase.name: tasks[phase.name] for phase in phases}


def _with_weight_decay(phase: Any, weight_decay: float) -> Any:
    """`phase` with its optimizer's weight decay set (the paper's phases leave it out)."""
    from dataclasses import replace

    return replace(phase, optimizer=replace(phase.optimizer, weight_decay=weight_decay))
