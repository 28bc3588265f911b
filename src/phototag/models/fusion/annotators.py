"""Multimodal similarity learning with exponentiated-gradient modality weights (the
modality-fusion paper, `../shared/papers/000`; docs/models/fusion.md) as a phototag model.

Modalities are the feature sources x the similarity functions. A source is a pooled
feature (``efficientnet_lite2``, a classic descriptor such as ``gist``, Mulan's
``arff``), an encoder stage's stored maps averaged over space (``ENCODER@STAGE``, e.g.
``efficientnet_lite2@stage3``), or the items' user tags (``tags``). Fitting:

1. every modality's head is trained with the posterior loss of Eq. 5-7 through
   `phototag.training.Trainer`, on `folds` - 1 folds at a time, giving out-of-fold
   posteriors P ``[n_items, N, L]`` for every training item, then once on all items
   (the heads the model keeps);
2. the modality weights alpha (simplex, 1/N at the start) are learned by exponentiated
   gradient with the hinge loss on ranked (relevant, irrelevant) annotation pairs of the
   out-of-fold posteriors (Eq. 8-11, `phototag.models.fusion.eg`); the EG rate eta and
   margin gamma are chosen by 3-fold cross-validation over items, by default by the
   held-out Hamming loss of the combined, thresholded scores (the paper's metric), or
   by the fraction of held-out pairs ranked wrongly (``eg_select="misranked"``);
3. per-label thresholds minimising the Hamming loss of the combined out-of-fold scores
   make the model's decoder (`LabelThresholds`): the paper reports Hamming loss.

Scores are ``S(x, T_l) = sum_j alpha_j p_j(T_l | x)``, the posterior of each modality
(Eq. 5): combining posteriors rather than raw similarities keeps the modalities on one
scale (the linear similarity is unbounded, cosine and RBF are not), which EG's
multiplicative update needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np

from phototag.data import AnnotationSet, Vocabulary
from phototag.data.inputs import MapSpec, ModelInputs
from phototag.errors import InvalidInputError, check_choice, check_float, check_int
from phototag.evaluation.decoding import LabelThresholds
from phototag.evaluation.model_selection import cv_folds
from phototag.models.base import Annotator, feature_matrix
from phototag.models.fusion.eg import (
    hamming_thresholds,
    learn_weights,
    misranked_fraction,
    pair_differences,
    ranked_pairs,
)
from phototag.models.registry import register_annotator

SIMILARITIES = ("linear", "cosine", "rbf")
#: The source name of the items' user tags.
TAGS = "tags"
#: How the modality weights are set: learned by EG, all 1/N, or one modality alone
#: (its name, ``SOURCE/SIMILARITY``).
COMBINATIONS = ("eg", "uniform")
#: What the cross-validation of eta and gamma minimises on held-out items.
EG_SELECT = ("hamming", "misranked")
DEVICES = ("auto", "cpu", "cuda")
_CHUNK = 256


def _names(argument: str, value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise InvalidInputError(argument, "a non-empty list of names", repr(value))
    if not all(isinstance(v, str) and v for v in value) or len(set(value)) != len(value):
        raise InvalidInputError(argument, "distinct, non-empty names", repr(value))
    return list(value)


def _floats(argument: str, value: object, minimum: float, strict: bool) -> list[float]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise InvalidInputError(argument, "a non-empty list of numbers", repr(value))
    return [check_float(argument, v, minimum, strict=strict) for v in value]


@register_annotator("fusion")
class FusionAnnotator(Annotator):
    """Modality fusion: per-modality heads, combined by weights learned with EG.

    Args:
        features: the feature sources (pooled feature keys, ``ENCODER@STAGE`` for an
            encoder stage's maps averaged over space, ``tags`` for user tags).
        similarities: the similarity functions every source is paired with (Eq. 4).
        mu_linear, mu_cosine, mu_rbf: the temperature mu of each similarity (the
            paper's cross-validated values: 1, 0.18, 0.18).
        sigma: the RBF width (the paper: 2).
        hidden, embed: widths of each head's hidden layer and of its output h(x).
        dropout: dropout after the hidden layer.
        epochs, lr, weight_decay, batch_size: AdamW training of the heads.
        folds: folds of the cross-fitting that gives the out-of-fold posteriors for EG
            and the thresholds (the heads train ``folds + 1`` times).
        eg_lrs, margins: the EG rates eta and hinge margins gamma searched by
            cross-validation (one value each: no search).
        eg_select: what that search minimises on held-out items: ``hamming`` (the
            Hamming loss of the combined scores, thresholded by cuts fitted on the other
            items) or ``misranked`` (the fraction of ranked pairs ranked wrongly).
        eg_epochs, eg_batch: passes over the ranked pairs, and pairs per EG update.
        max_pairs: ranked pairs drawn from the out-of-fold posteriors (at most).
        combination: ``eg``, ``uniform`` or one modality's name (its weight 1).
        min_tag_count: user tags seen on fewer training items are left out.
        seed: initialisation, batch order, folds and pair draws.

    Runtime settings (not saved with the model):
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        verbose: one progress line per epoch on stderr.
    """

    torch_modules: ClassVar[tuple[str, ...]] = ("network_",)
    extra_state: ClassVar[tuple[str, ...]] = (
        "dims_", "modalities_", "eg_search_", "eg_choice_", "history_",
    )  # fmt: skip
    runtime_settings: ClassVar[tuple[str, ...]] = ("device", "verbose")

    def __init__(
        self,
        features: Sequence[str] = ("efficientnet_lite2",),
        similarities: Sequence[str] = SIMILARITIES,
        mu_linear: float = 1.0,
        mu_cosine: float = 0.18,
        mu_rbf: float = 0.18,
        sigma: float = 2.0,
        hidden: int = 256,
        embed: int = 128,
        dropout: float = 0.2,
        epochs: int = 20,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 64,
        folds: int = 3,
        eg_lrs: Sequence[float] = (0.1, 0.3, 1.0, 3.0, 10.0),
        margins: Sequence[float] = (0.0, 0.05, 0.2),
        eg_select: str = "hamming",
        eg_epochs: int = 3,
        eg_batch: int = 64,
        max_pairs: int = 200_000,
        combination: str = "eg",
        min_tag_count: int = 2,
        seed: int = 0,
        device: str = "auto",
        verbose: bool = False,
    ) -> None:
        self.features = _names("features", features)
        self.similarities = [check_choice("similarities", s, SIMILARITIES)
                             for s in _names("similarities", similarities)]  # fmt: skip
        self.mu_linear = check_float("mu_linear", mu_linear, 0.0)
        self.mu_cosine = check_float("mu_cosine", mu_cosine, 0.0)
        self.mu_rbf = check_float("mu_rbf", mu_rbf, 0.0)
        self.sigma = check_float("sigma", sigma, 0.0)
        self.hidden = check_int("hidden", hidden, 1)
        self.embed = check_int("embed", embed, 1)
        self.dropout = check_float("dropout", dropout, 0.0, strict=False, maximum=0.9)
        self.epochs = check_int("epochs", epochs, 1)
        self.lr = check_float("lr", lr, 0.0)
        self.weight_decay = check_float("weight_decay", weight_decay, 0.0, strict=False)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.folds = check_int("folds", folds, 2)
        self.eg_lrs = _floats("eg_lrs", eg_lrs, 0.0, strict=True)
        self.margins = _floats("margins", margins, 0.0, strict=False)
        self.eg_select = check_choice("eg_select", eg_select, EG_SELECT)
        self.eg_epochs = check_int("eg_epochs", eg_epochs, 1)
        self.eg_batch = check_int("eg_batch", eg_batch, 1)
        self.max_pairs = check_int("max_pairs", max_pairs, 1)
        names = self.modality_names()
        if combination not in (*COMBINATIONS, *names):
            raise InvalidInputError(
                "combination", f"one of {', '.join([*COMBINATIONS, *names])}", repr(combination)
            )
        self.combination = combination
        self.min_tag_count = check_int("min_tag_count", min_tag_count, 1)
        self.seed = check_int("seed", seed, 0)
        self.device = check_choice("device", device, DEVICES)
        if not isinstance(verbose, bool):
            raise InvalidInputError("verbose", "True or False", repr(verbose))
        self.verbose = verbose

    # ------------------------------------------------------------------ inputs
    def modality_names(self) -> list[str]:
        """``SOURCE/SIMILARITY`` of every modality, in the order of alpha."""
        return [f"{source}/{s}" for source in self.features for s in self.similarities]

    def required_inputs(self, training: bool = False) -> ModelInputs:
        """The pooled features, the maps of the ``ENCODER@STAGE`` sources, the user tags."""
        pooled = tuple(f for f in self.features if f != TAGS and "@" not in f)
        maps = tuple(MapSpec(*f.rsplit("@", 1)) for f in self.features if "@" in f)
        return ModelInputs(features=pooled, maps=maps, user_tags=TAGS in self.features)

    def _source(
        self, data: AnnotationSet, source: str, argument: str, dim: int | None
    ) -> np.ndarray:
        """One source's ``[n_items, dim]`` float32 matrix."""
        if source == TAGS:
            return data.user_tags_in(self.tag_vocabulary_).toarray().astype(np.float32)
        if "@" not in source:
            return feature_matrix(data, source, argument, dim).astype(np.float32)
        maps = data.maps[MapSpec(*source.rsplit("@", 1)).key]
        pooled = [np.asarray(maps[i : i + _CHUNK], np.float32).mean(axis=(2, 3))
                  for i in range(0, data.n_items, _CHUNK)]  # fmt: skip
        x = np.concatenate(pooled) if pooled else np.zeros((0, maps.shape[1]), np.float32)
        if dim is not None and x.shape[1] != dim:
            raise InvalidInputError(
                f"maps[{source!r}]", f"{dim} channels (as in training)", f"{x.shape[1]}"
            )
        return x

    def _matrix(self, data: AnnotationSet, argument: str) -> np.ndarray:
        """The sources side by side, ``[n_items, sum(dims_)]`` (float32)."""
        dims = getattr(self, "dims_", [None] * len(self.features))
        parts = [
            self._source(data, s, argument, d) for s, d in zip(self.features, dims, strict=True)
        ]
        return np.concatenate(parts, axis=1)

    # --------------------------------------------------------------------- fit
    def _fit(self, train: AnnotationSet, valid: AnnotationSet | None) -> None:
        if TAGS in self.features:
            counts = np.asarray(train.user_tags.sum(axis=0)).ravel()  # type: ignore[union-attr]
            kept = [w for w, c in zip(train.tag_vocabulary, counts, strict=True)  # type: ignore[arg-type]
                    if c >= self.min_tag_count]  # fmt: skip
            if not kept:
                raise InvalidInputError("train", "user tags on the training items", "none")
            self.tag_vocabulary_ = Vocabulary(kept)
        parts = [self._source(train, source, "train", None) for source in self.features]
        self.dims_ = [int(part.shape[1]) for part in parts]
        x = np.concatenate(parts, axis=1)
        del parts
        self.modalities_ = self.modality_names()
        y = train.labels.toarray().astype(np.float32)
        mean = x.mean(axis=0)
        scale = 1.0 / (x.std(axis=0) + 1e-6)
        held_out = np.zeros((train.n_items, len(self.modalities_), y.shape[1]), np.float32)
        self.history_: list[dict[str, Any]] = []
        for fold, (part, rest) in enumerate(cv_folds(train.n_items, self.folds, self.seed)):
            network = self._train(x[part], y[part], mean, scale, self.seed + 1 + fold)
            held_out[rest] = self._posteriors(network, x[rest])
        self.network_ = self._train(x, y, mean, scale, self.seed)
        self._held_out = (held_out, train.labels)
        self._combine()

    def _train(
        self, x: np.ndarray, y: np.ndarray, mean: np.ndarray, scale: np.ndarray, seed: int
    ) -> Any:
        """A `FusionNetwork` trained on ``(x, y)`` with the posterior loss (Eq. 5-7)."""
        import torch
        from torch.utils.data import TensorDataset

        from phototag.features.encoders.runtime import torch_device
        from phototag.models.fusion.network import posterior_loss
        from phototag.training import LossTask, OptimizerSettings, Trainer

        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.build_modules()
        network = self.network_
        network.mean.copy_(torch.from_numpy(mean))
        network.scale.copy_(torch.from_numpy(scale.astype(np.float32)))
        trainer = Trainer(
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=OptimizerSettings("adamw", lr=self.lr, weight_decay=self.weight_decay),
            accelerator=torch_device(self.device).type,
            seed=seed,
            progress=self.verbose,
        )
        data = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        result = trainer.fit(network, LossTask(posterior_loss), data)
        self.history_ += result.history_
        return network.cpu()

    def build_modules(self) -> None:
        from phototag.models.fusion.network import FusionNetwork, Modality

        mus = {"linear": self.mu_linear, "cosine": self.mu_cosine, "rbf": self.mu_rbf}
        modalities = [Modality(i, s, mus[s], self.sigma)
                      for i in range(len(self.features)) for s in self.similarities]  # fmt: skip
        self.network_ = FusionNetwork(
            self.dims_, modalities, len(self.vocabulary_),
            hidden=self.hidden, embed=self.embed, dropout=self.dropout,
        )  # fmt: skip

    def _posteriors(self, network: Any, x: np.ndarray) -> np.ndarray:
        import torch

        from phototag.models.fusion.network import posteriors

        return posteriors(network, torch.from_numpy(x)).numpy()

    # ------------------------------------------------------------- combination
    def _combine(self) -> None:
        """alpha (by `combination`) and the Hamming thresholds, from the out-of-fold
        posteriors kept by `fit`."""
        held_out, labels = self._held_out
        n = len(self.modalities_)
        self.eg_search_: list[dict[str, float]] = []
        self.eg_choice_: dict[str, float] = {}
        if self.combination == "eg" and n > 1:
            pairs = ranked_pairs(labels, self.max_pairs, self.seed)
            differences = pair_differences(held_out.transpose(0, 2, 1), pairs).astype(np.float64)
            eta, gamma = self._search(differences, pairs[0], held_out, labels)
            self.eg_choice_ = {"eg_lr": eta, "margin": gamma}
            result = learn_weights(differences, margin=gamma, lr=eta, epochs=self.eg_epochs,
                                   batch_size=self.eg_batch, seed=self.seed)  # fmt: skip
            self.alpha_, self.alpha_history_ = result.alpha, result.history
            self.alpha_steps_ = result.steps
        else:
            alpha = np.full(n, 1.0 / n)
            if self.combination not in COMBINATIONS:
                alpha = np.eye(n)[self.modalities_.index(self.combination)]
            self.alpha_, self.alpha_history_ = alpha, alpha[None, :]
            self.alpha_steps_ = np.zeros(1, dtype=np.int64)
        combined = np.einsum("inl,n->il", held_out, self.alpha_)
        self.decoder_ = LabelThresholds(hamming_thresholds(labels, combined))

    def _search(
        self, differences: np.ndarray, items: np.ndarray, held_out: np.ndarray, labels: Any
    ) -> tuple[float, float]:
        """(eta, gamma) of `eg_lrs` x `margins` with the lowest held-out error of
        `eg_select` (3 folds over items; the first point of the grid wins ties). Each point
        records both errors in `eg_search_`: the Hamming loss of the held-out items'
        combined scores, cut by thresholds fitted on the other items' combined scores, and
        the fraction of the held-out items' pairs ranked wrongly."""
        if len(self.eg_lrs) == 1 and len(self.margins) == 1:
            return self.eg_lrs[0], self.margins[0]
        y = labels.toarray().astype(bool)
        fold_of_item = np.random.default_rng(self.seed).permutation(len(y)) % 3
        fold = fold_of_item[items]
        best: tuple[float, float, float] | None = None
        for eta in self.eg_lrs:
            for gamma in self.margins:
                hamming, misranked = [], []
                for k in range(3):
                    fit = learn_weights(differences[fold != k], margin=gamma, lr=eta,
                                        epochs=self.eg_epochs, batch_size=self.eg_batch,
                                        seed=self.seed, records=1)  # fmt: skip
                    misranked.append(misranked_fraction(fit.alpha, differences[fold == k]))
                    combined = np.einsum("inl,n->il", held_out, fit.alpha)
                    fitted, scored = fold_of_item != k, fold_of_item == k
                    cuts = hamming_thresholds(y[fitted], combined[fitted])
                    hamming.append(float(np.mean((combined[scored] >= cuts) != y[scored])))
                point = {"eg_lr": eta, "margin": gamma, "hamming": float(np.mean(hamming)),
                         "misranked": float(np.mean(misranked))}  # fmt: skip
                self.eg_search_.append(point)
                error = point[self.eg_select]
                if best is None or error < best[0]:
                    best = (error, eta, gamma)
        assert best is not None
        return best[1], best[2]

    def reweighted(self, combination: str, eg_select: str | None = None) -> Self:
        """This fitted model with the modality weights of `combination` (``eg``,
        ``uniform`` or a modality name; with ``eg``, eta and gamma chosen by `eg_select`,
        by default the model's) and thresholds fitted anew on the out-of-fold posteriors.
        Only in the process that fitted it (they are not saved)."""
        self._check_fitted()
        if not hasattr(self, "_held_out"):
            raise InvalidInputError(
                "model", "a model fitted in this process", "a loaded model",
                "Fit the model with that combination instead",
            )  # fmt: skip
        copy = self.clone(
            keep_state=True, combination=combination, eg_select=eg_select or self.eg_select
        )
        copy._held_out = self._held_out
        copy._combine()
        return copy

    # ----------------------------------------------------------------- predict
    def modality_scores(self, inputs: AnnotationSet) -> np.ndarray:
        """Every modality's posterior (Eq. 5): float32 ``[n_items, N, n_labels]``."""
        self._check_fitted()
        self._check_inputs(inputs, "inputs")
        return self._posteriors(self.network_, self._matrix(inputs, "inputs"))

    def _scores(self, inputs: AnnotationSet) -> np.ndarray:
        posteriors = self._posteriors(self.network_, self._matrix(inputs, "inputs"))
        return np.einsum("inl,n->il", posteriors, self.alpha_.astype(np.float32))
