"""The M3 network (Niu et al., "Multi-Modal Multi-Scale Deep Learning for Large-Scale Image
Annotation", 2017) as torch modules, its losses, and the stages of its Algorithm 1 as
training phases. Nothing here reads files: stage maps, tag vectors and labels come in as
tensors (docs/models/m3.md maps every equation to a name here).

- `FusionBlock`: F_l = phi_l2(phi_l1(.)) (Eq. 3, Fig. 3);
- `MultiScale`: M'_1 = M_1, M'_l = M_l + F_l(M'_{l-1}) (Eq. 2), f_v = mean of M'_K;
- `TagMLP`: f_t from the binary user-tag vector;
- `QuantityRegressor`: the label-quantity prediction (LQP) MLP;
- `M3Network`: both feature branches, a classifier on f = [f_v, f_t] and the LQP head;
- `classification_loss` (Eq. 4), `quantity_loss` (Eq. 5), `M3Task` (one per stage) and
  `training_phases` (Algorithm 1, steps 3-5).

Algorithm 2 (the top round(m) labels) is `phototag.evaluation.decoding.Quantity`, fed
with the network's ``"quantity"`` output.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Final

import torch
from torch import nn
from torch.nn import functional as F

from phototag.errors import InvalidInputError, check_choice, check_float, check_int
from phototag.training import Group, OptimizerSettings, Phase, Task

#: Algorithm 1's stages that train on stored maps and tags, in order (step 1, fine-tuning
#: the encoder, happens before: the maps come from the base or a fine-tuned encoder).
STAGES: Final = ("multiscale", "tags", "heads")
#: The submodules of `M3Network` each stage trains; a stage freezes all others.
TRAINED: Final = {
    "multiscale": ("fusion", "visual_head"),
    "tags": ("tags", "tag_head"),
    "heads": ("classifier", "quantity"),
}


def stride2_size(size: int) -> int:
    """Output size of a 3x3 convolution with stride 2 and padding 1: ``ceil(size / 2)``."""
    return (size + 1) // 2


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


#: The starting batch-norm scale of each fusion block's output (`FusionBlock`).
FUSION_INIT_SCALE: Final = 0.01


class FusionBlock(nn.Sequential):
    """F_l (Eq. 3): ``phi1`` = 3x3 conv, stride 2, padding 1 (keeps `in_channels`, halves
    height and width, rounding up) + BN + ReLU; ``phi2`` = 1x1 conv to `out_channels` +
    BN + ReLU (the paper's Fig. 4: "3x3 conv, 64, /2" then "1x1 conv, 256").

    ``phi2``'s batch-norm scale starts at `FUSION_INIT_SCALE`, so a new block adds almost
    nothing: an untrained multi-scale network is nearly the plain CNN (M'_K ~ M_K, the
    pretrained last map intact) and training adds the finer scales to it. This is the
    near-zero residual initialisation of Goyal et al. (2017); exactly zero would stop the
    gradient at the ReLU. The paper does not say how it initialises the blocks."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        check_int("in_channels", in_channels, 1)
        check_int("out_channels", out_channels, 1)
        super().__init__()
        self.phi1 = _conv_bn_relu(in_channels, in_channels, 3, 2)
        self.phi2 = _conv_bn_relu(in_channels, out_channels, 1, 1)
        nn.init.constant_(self.phi2[1].weight, FUSION_INIT_SCALE)


def fit_spatial(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """`x` ``[B, C, H, W]`` zero-padded or cropped at the bottom and right to ``(H', W')``."""
    dh, dw = size[0] - x.shape[-2], size[1] - x.shape[-1]
    return x if dh == dw == 0 else F.pad(x, (0, dw, 0, dh))


class MultiScale(nn.Module):
    """Fusion of K stage maps M_1..M_K into f_v (Eq. 2 and average pooling).

    ``M'_1 = M_1``, ``M'_l = M_l + F_l(M'_{l-1})`` with ``F_l = blocks[l-2]`` mapping
    ``channels[l-2]`` to ``channels[l-1]`` channels; ``f_v`` is the spatial mean of
    ``M'_K`` (``[B, channels[-1]]``). With K = 1 there is no block: f_v is the pooled last
    map (the paper's plain "CNN").

    `shapes` are the maps' ``(H, W)``. F_l's stride-2 output is ``ceil(H / 2)``; where
    ``M_l`` is one row or column larger or smaller (an encoder that rounds down), the
    output is zero-padded or cropped at the bottom / right to fit. EfficientNet-Lite2 at
    260 px (130, 65, 33, 17, 9) and ResNet-101 at 224 px (112, 56, 28, 14, 7) fit exactly.
    """

    def __init__(self, channels: Sequence[int], shapes: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.channels = tuple(check_int("channels", c, 1) for c in channels)
        self.shapes = tuple(tuple(check_int("shapes", n, 1) for n in s) for s in shapes)
        if not self.channels or [len(s) for s in self.shapes] != [2] * len(self.channels):
            raise InvalidInputError(
                "shapes", f"one (H, W) per stage ({len(self.channels)})", repr(shapes)
            )
        for before, after in pairwise(self.shapes):
            if any(abs(stride2_size(b) - a) > 1 for b, a in zip(before, after, strict=True)):
                raise InvalidInputError(
                    "shapes",
                    "(H, W) pairs, each about half the one before (ceil(H / 2) within 1)",
                    f"{before} then {after}",
                )
        self.blocks = nn.ModuleList(FusionBlock(a, b) for a, b in pairwise(self.channels))

    @property
    def out_features(self) -> int:
        """Length of f_v: the last stage's channels."""
        return self.channels[-1]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, shapes={self.shapes}"

    def fuse(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """M'_K ``[B, C_K, H_K, W_K]`` from the K maps (float16 maps are cast to the
        blocks' dtype)."""
        expected = [(c, *s) for c, s in zip(self.channels, self.shapes, strict=True)]
        got = [tuple(m.shape[1:]) for m in maps]
        if got != expected:
            raise InvalidInputError("maps", f"maps whose [C, H, W] are {expected}", str(got))
        dtype = next((p.dtype for p in self.parameters()), torch.float32)
        fused = maps[0].to(dtype)
        for block, stage in zip(self.blocks, maps[1:], strict=True):
            fused = stage.to(dtype) + fit_spatial(block(fused), stage.shape[-2:])
        return fused

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """f_v ``[B, C_K]``: the spatial mean of M'_K."""
        return self.fuse(maps).mean(dim=(2, 3))


def _mlp(
    in_features: int, hidden: Sequence[int], out_features: int, dropout: float, last_relu: bool
) -> list[nn.Module]:
    """Linear + ReLU + dropout per hidden size, then a linear output (+ ReLU)."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(in_features, check_int("hidden", size, 1)), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_features = size
    layers.append(nn.Linear(in_features, out_features))
    if last_relu:
        layers.append(nn.ReLU(inplace=True))
    return layers


class TagMLP(nn.Sequential):
    """f_t ``[B, out_dim]`` from the binary user-tag vector ``[B, n_tags]``: the hidden
    layers (Linear + ReLU, then `dropout`), then Linear + ReLU to `out_dim` (the size of
    f_v, so both modalities weigh alike in f = [f_v, f_t])."""

    def __init__(
        self,
        n_tags: int,
        out_dim: int,
        hidden: Sequence[int] = (2048, 2048),
        dropout: float = 0.0,
    ) -> None:
        check_int("n_tags", n_tags, 1)
        check_int("out_dim", out_dim, 1)
        check_float("dropout", dropout, 0.0, strict=False, maximum=1.0)
        super().__init__(*_mlp(n_tags, hidden, out_dim, dropout, last_relu=True))

    def forward(self, tags: torch.Tensor) -> torch.Tensor:
        return super().forward(tags.to(self[0].weight.dtype))


class QuantityRegressor(nn.Sequential):
    """The LQP regressor: predicted label counts ``[B]`` from f: hidden layers of
    `hidden` units (ReLU, dropout `dropout`), then one linear output unit."""

    def __init__(
        self, in_features: int, hidden: Sequence[int] = (512, 256), dropout: float = 0.5
    ) -> None:
        check_int("in_features", in_features, 1)
        check_float("dropout", dropout, 0.0, strict=False, maximum=1.0)
        super().__init__(*_mlp(in_features, hidden, 1, dropout, last_relu=False))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return super().forward(features).squeeze(-1)


class M3Network(nn.Module):
    """M3's trainable parts on top of an encoder's stage maps.

    Submodules (the names phases freeze): ``fusion`` (`MultiScale`, f_v), ``visual_head``
    (the classifier on f_v alone that trains the fusion, Algorithm 1 step 3), ``tags``
    (`TagMLP`, f_t) and ``tag_head`` (its classifier, step 4) when `n_tags` > 0,
    ``classifier`` (one linear layer on f = [f_v, f_t], or f_v without tags) and
    ``quantity`` (`QuantityRegressor` on f), both trained in step 5.

    Args:
        channels, shapes: the K stage maps' channels and ``(H, W)`` (`MultiScale`); empty
            for a network on tags alone (the paper's "Tags" rows: no ``fusion`` and
            ``visual_head``; f_t then has the tag MLP's last hidden size).
        n_labels: labels of the classifiers.
        n_tags: user-tag vocabulary size; 0 for a visual-only network.
        tag_hidden, tag_dropout: `TagMLP`'s hidden sizes and dropout.
        quantity_hidden, quantity_dropout: `QuantityRegressor`'s.
    """

    def __init__(
        self,
        channels: Sequence[int],
        shapes: Sequence[Sequence[int]],
        n_labels: int,
        n_tags: int = 0,
        tag_hidden: Sequence[int] = (2048, 2048),
        tag_dropout: float = 0.0,
        quantity_hidden: Sequence[int] = (512, 256),
        quantity_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        check_int("n_labels", n_labels, 1)
        check_int("n_tags", n_tags, 0)
        if not channels and not n_tags:
            raise InvalidInputError("channels", "stage maps, or n_tags > 0 (tags only)", "neither")
        self.fusion: MultiScale | None = None
        self.visual_head: nn.Linear | None = None
        visual = 0
        if channels:
            self.fusion = MultiScale(channels, shapes)
            visual = self.fusion.out_features
            self.visual_head = nn.Linear(visual, n_labels)
        self.tags: TagMLP | None = None
        self.tag_head: nn.Linear | None = None
        textual = 0
        if n_tags:
            textual = visual or tag_hidden[-1]  # f_t has f_v's size; tags only: the MLP's
            self.tags = TagMLP(n_tags, textual, tag_hidden, tag_dropout)
            self.tag_head = nn.Linear(textual, n_labels)
        self.classifier = nn.Linear(visual + textual, n_labels)
        self.quantity = QuantityRegressor(visual + textual, quantity_hidden, quantity_dropout)

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages of Algorithm 1 this network trains (`STAGES`; no ``"tags"`` without
        a tag branch)."""
        has = {"multiscale": self.fusion is not None, "tags": self.tags is not None}
        return tuple(s for s in STAGES if has.get(s, True))

    def forward(
        self,
        maps: Sequence[torch.Tensor] | None = None,
        tags: torch.Tensor | None = None,
        visual: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """What the given inputs allow: ``visual_logits`` from `maps` (K tensors ``[B, C_k,
        H_k, W_k]``), ``tag_logits`` from `tags` (``[B, n_tags]``, 0/1), and, once every
        branch of the network has its input, ``logits`` ``[B, n_labels]`` and ``quantity``
        ``[B]`` (the predicted label counts m) from f = [f_v, f_t]. `visual` is f_v
        already computed by ``fusion`` (``[B, C_K]``), in place of `maps`: the stages
        after the fusion's train on it without running the fusion again."""
        if tags is not None and self.tags is None:
            raise InvalidInputError("tags", "no tags (this network is visual-only)", "tags")
        has_maps = maps is not None and len(maps) > 0
        if (has_maps or visual is not None) and self.fusion is None:
            raise InvalidInputError("maps", "no maps (this network reads tags only)", "maps")
        out: dict[str, torch.Tensor] = {}
        parts = []
        if visual is None and has_maps and self.fusion is not None and self.visual_head is not None:
            visual = self.fusion(maps)  # type: ignore[arg-type]
            out["visual_logits"] = self.visual_head(visual)
        if visual is not None:
            parts.append(visual)
        if tags is not None and self.tags is not None and self.tag_head is not None:
            textual = self.tags(tags)
            out["tag_logits"] = self.tag_head(textual)
            parts.append(textual)
        has_visual = visual is not None or self.fusion is None
        if has_visual and (tags is not None or self.tags is None):
            joint = torch.cat(parts, dim=1)
            out["logits"] = self.classifier(joint)
            out["quantity"] = self.quantity(joint)
        return out


# ---------------------------------------------------------------------- losses


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sigmoid cross-entropy (Eq. 4): summed over the labels, averaged over the items."""
    loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="sum")
    return loss / len(logits)


def quantity_loss(quantities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Squared error of the predicted label counts (Eq. 5), averaged over the items; the
    true count m of an item is its number of labels."""
    return F.mse_loss(quantities, labels.sum(dim=1).to(quantities.dtype))


class M3Task(Task):
    """The loss of one stage of Algorithm 1 (`STAGES`) on `M3Network`.

    Items are dicts ``{"maps": (M_1, ..., M_K) [C_k, H_k, W_k], "tags": [n_tags] 0/1,
    "labels": [n_labels] 0/1}`` (``"tags"`` only for a network with a tag branch; a stage
    reads only what it needs); after the ``multiscale`` stage, ``"visual"`` (f_v ``[C_K]``,
    computed once by the trained fusion) may stand in for ``"maps"``. Losses:
    ``multiscale``: Eq. 4 on ``visual_logits``; ``tags``: Eq. 4 on ``tag_logits``;
    ``heads``: Eq. 4 on ``logits`` + Eq. 5 on ``quantity`` (their parameters are disjoint,
    so the sum trains the classifier and the regressor as if apart, each at its own rate:
    `training_phases`). The validation value is the same loss averaged over every validation
    item.
    """

    def __init__(self, stage: str) -> None:
        self.stage = check_choice("stage", stage, STAGES)

    def loss(self, module: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        """The stage's loss of `batch` (averaged over its items)."""
        labels = batch["labels"]
        if self.stage == "multiscale":
            return classification_loss(module(maps=batch["maps"])["visual_logits"], labels)
        if self.stage == "tags":
            return classification_loss(module(tags=batch["tags"])["tag_logits"], labels)
        out = module(maps=batch.get("maps"), tags=batch.get("tags"), visual=batch.get("visual"))
        return classification_loss(out["logits"], labels) + quantity_loss(out["quantity"], labels)

    def training_step(self, module: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.loss(module, batch)

    def validation_value(self, module: nn.Module, batches: Iterable[Mapping[str, Any]]) -> float:
        total, count = 0.0, 0
        for batch in batches:
            n = len(batch["labels"])
            total += float(self.loss(module, batch)) * n
            count += n
        return total / max(count, 1)


# ---------------------------------------------------------------------- Algorithm 1


@dataclass(frozen=True)
class LearningRates:
    """The paper's SGD rates (Sec. IV-A-3, "Settings"): `visual` for the basic CNN, the
    multi-scale CNN and the classifier; `textual` for the tag MLP and the LQP regressor."""

    visual: float
    textual: float
    #: The LQP regressor's rate when it differs from `textual` (the paper's), e.g. where
    #: the textual rate makes the regressor's squared error diverge.
    quantity: float | None = None

    def __post_init__(self) -> None:
        check_float("visual", self.visual, 0.0)
        check_float("textual", self.textual, 0.0)
        if self.quantity is not None:
            check_float("quantity", self.quantity, 0.0)


#: Sec. IV-A-3: 0.001 / 0.1 on NUS-WIDE, 0.002 / 0.0001 on MS-COCO; momentum 0.9 for all.
NUS_WIDE: Final = LearningRates(visual=0.001, textual=0.1)
MS_COCO: Final = LearningRates(visual=0.002, textual=0.0001)
MOMENTUM: Final = 0.9


def training_phases(
    network: M3Network,
    rates: LearningRates = NUS_WIDE,
    momentum: float = MOMENTUM,
    epochs: int | None = None,
) -> tuple[Phase, ...]:
    """Algorithm 1's steps 3-5 as trainer phases, one per ``network.stages``, named as
    the stages (pair each with ``M3Task(name)``). Each trains the parts `TRAINED` names,
    by SGD with `momentum`, and freezes every other submodule of `network`:

    - ``multiscale`` (step 3): ``fusion`` + ``visual_head`` at ``rates.visual``;
    - ``tags`` (step 4): ``tags`` + ``tag_head`` at ``rates.textual``;
    - ``heads`` (step 5): ``classifier`` at ``rates.visual`` and ``quantity`` at
      ``rates.textual`` (a parameter group).

    `epochs` None takes the trainer's.
    """
    children = [name for name, _ in network.named_children()]
    phases = []
    for stage in network.stages:
        lr = rates.textual if stage == "tags" else rates.visual
        quantity_lr = rates.textual if rates.quantity is None else rates.quantity
        groups = (Group(("quantity",), lr=quantity_lr),) if stage == "heads" else ()
        optimizer = OptimizerSettings("sgd", lr=lr, momentum=momentum, groups=groups)
        frozen = tuple(name for name in children if name not in TRAINED[stage])
        phases.append(Phase(stage, epochs=epochs, optimizer=optimizer, frozen=frozen))
    return tuple(phases)


def training_tasks(network: M3Network) -> dict[str, M3Task]:
    """The task of each of `training_phases`' phases, by name."""
    return {stage: M3Task(stage) for stage in network.stages}
