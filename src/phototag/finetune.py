"""Fine-tune an image encoder on labelled photos, for better features (`phototag finetune`).

The recipe of the Corel-5k fine-tuning study (docs/benchmarks.md), where it turned
EfficientNet-Lite2's features from TagProp F1 39.3 into 43.8-45.3, and the ensemble's into
47.3: every photo is decoded once to the encoder's input (``resize=squash`` keeps the
whole photo) and kept in memory as uint8; each step takes random resized crops (area
`min_area`..1, aspect 3/4..4/3) and horizontal flips of a batch on the device; the whole
network and a new linear classifier over the labels are trained through
`phototag.training` with the asymmetric loss (`phototag.models.linear.asymmetric_loss`),
AdamW, one warm-up epoch and a cosine schedule; the exponential moving average of the
weights is the result. On a GPU that takes about 4 minutes for Corel-5k; on CPU cores,
hours. Under ``torchrun`` it trains on several GPUs (docs/training.md).

The classifier is dropped: the result is the network's weights (float16 safetensors,
with the recipe in its metadata), which a feature name carries, e.g.
``efficientnet_lite2?weights=FILE&input_size=384&resize=squash``, so `phototag
features`, `train`, `evaluate` and `annotate` use the fine-tuned features like any other.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import numpy as np
import torch
from torch import nn

from phototag.data import AnnotationSet
from phototag.errors import InvalidInputError, check_float, check_int
from phototag.features.encoders.preprocess import Preprocess, normalize
from phototag.features.extract import decode_photos, parse_source_spec
from phototag.fileio import atomic_write
from phototag.models.linear import asymmetric_loss
from phototag.training import Group, OptimizerSettings, Schedule, Task, Trainer

if TYPE_CHECKING:
    from phototag.features.encoders import ImageEncoder

WEIGHTS_FORMAT = "phototag.FinetunedEncoder"
#: State-dict prefixes of the encoders' ImageNet classifiers (EfficientNet-Lite, ResNet).
IMAGENET_CLASSIFIER_KEYS = ("classifier.", "fc.")


@dataclass(frozen=True)
class FinetuneRecipe:
    """Training settings (the defaults are the Corel-5k study's)."""

    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-4
    classifier_lr: float = 2e-3
    weight_decay: float = 1e-4
    gamma_neg: float = 4.0
    clip: float = 0.05
    ema: float = 0.998
    min_area: float = 0.5
    dropout: float = 0.2

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 2)
        for name in ("lr", "classifier_lr"):
            check_float(name, getattr(self, name), 0.0)
        for name in ("weight_decay", "gamma_neg", "clip", "dropout"):
            check_float(name, getattr(self, name), 0.0, strict=False)
        if not 0 <= self.ema < 1:
            raise InvalidInputError("ema", "a number in [0, 1)", repr(self.ema))
        if not 0 < self.min_area <= 1:
            raise InvalidInputError("min_area", "a number in (0, 1]", repr(self.min_area))


@dataclass
class FinetuneResult:
    """What `finetune_encoder` produced: the network and its label classifier (both the
    moving averages, on the CPU), the photos it could not read, the trainer's `history_`
    (one entry per epoch, with its ``train_loss``), and whether this process writes the
    result (rank 0 under torchrun; always when alone)."""

    network: nn.Module
    classifier: nn.Module
    failures: list[tuple[str, str]]
    history_: list[dict[str, Any]]
    is_global_zero: bool = True


def random_resized_crops(
    x: torch.Tensor, min_area: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random resized crops (area `min_area`..1, aspect 3/4..4/3) and horizontal flips of
    a float batch ``[N, C, H, W]``, at the same size, by one bilinear grid sample."""
    import torch.nn.functional as F

    n, device = len(x), x.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=generator).to(device) * (high - low) + low

    area = uniform(min_area, 1.0)
    aspect = torch.exp(uniform(math.log(3 / 4), math.log(4 / 3)))
    sx, sy = torch.sqrt(area * aspect).clamp(max=1), torch.sqrt(area / aspect).clamp(max=1)
    flip = torch.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 1, 1] = sx * flip, sy
    theta[:, 0, 2] = uniform(-1.0, 1.0) * (1 - sx)
    theta[:, 1, 2] = uniform(-1.0, 1.0) * (1 - sy)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def finetune_encoder(
    encoder: ImageEncoder,
    train: AnnotationSet,
    recipe: FinetuneRecipe = FinetuneRecipe(),
    *,
    device: str = "auto",
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune `encoder`'s torch network on `train`'s photos and labels (module
    docstring), reporting each epoch on stderr with `progress`. `encoder` is left
    unchanged; photos that cannot be decoded are skipped and listed."""
    import copy

    from torch.utils.data import TensorDataset

    from phototag.features.encoders.runtime import torch_device

    if train.image_paths is None:
        raise InvalidInputError("dataset", "a dataset with images", f"{train.name} (labels only)")
    torch_dev = torch_device(device)
    pixels, rows, failures = decode_photos(
        [str(p) for p in train.image_paths], encoder.preprocess, workers
    )
    if len(rows) < 2:
        raise InvalidInputError("dataset", "at least 2 readable photos", f"{len(rows)}")
    x = torch.from_numpy(pixels).to(torch_dev)  # uint8 on the device, normalised per batch
    y = torch.from_numpy(train.labels[rows].toarray().astype(np.float32)).to(torch_dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = copy.deepcopy(encoder.model).to(memory_format=torch.channels_last)
        both = _Classified(network, recipe.dropout, y.shape[1])
    batch = min(recipe.batch_size, len(rows))
    trainer = Trainer(
        epochs=recipe.epochs,
        batch_size=batch,
        optimizer=OptimizerSettings(
            "adamw", lr=recipe.lr, weight_decay=recipe.weight_decay,
            groups=(Group("network"), Group("classifier", lr=recipe.classifier_lr)),
        ),
        schedule=Schedule("cosine", warmup=len(rows) // batch),  # one epoch of warm-up
        ema=recipe.ema,
        precision="bf16-mixed" if torch_dev.type == "cuda" else "32-true",
        accelerator=torch_dev.type,
        seed=seed,
        drop_last=True,
        progress=progress,
    )  # fmt: skip
    task = _FinetuneTask(encoder.preprocess, recipe)
    result = trainer.fit(both, task, TensorDataset(x, y))
    return FinetuneResult(
        both.network, both.classifier, failures, result.history_, result.is_global_zero
    )


class _Classified(nn.Module):
    """The network and a new classifier over the labels, as one module (one forward, so
    that DDP averages the gradients of both): logits from the pooled features."""

    def __init__(self, network: nn.Module, dropout: float, n_labels: int) -> None:
        super().__init__()
        self.network = network
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(network.num_features, n_labels),  # type: ignore[arg-type]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.network(x)["pooled"]).float()


class _FinetuneTask(Task):
    """Items ``(uint8 pixels, labels)``: normalise, random resized crops and flips (from
    the trainer's seeded generator), the asymmetric loss of the classifier's logits."""

    def __init__(self, preprocess: Preprocess, recipe: FinetuneRecipe) -> None:
        self.preprocess = preprocess
        self.recipe = recipe

    def training_step(self, module: nn.Module, batch: Any) -> torch.Tensor:
        pixels, labels = batch
        x = random_resized_crops(normalize(pixels, self.preprocess), self.recipe.min_area)
        logits = module(x.contiguous(memory_format=torch.channels_last))
        return asymmetric_loss(logits, labels, self.recipe.gamma_neg, self.recipe.clip)


def save_network(
    network: nn.Module, path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """Write `network`'s weights as float16 safetensors without its ImageNet classifier,
    which fine-tuning leaves behind the features (atomically: a killed run leaves no
    half-written file; `StorageError` on a full disk)."""
    from safetensors.torch import save

    path = Path(path)
    tensors = {
        key: (value.half() if value.is_floating_point() else value).contiguous().cpu()
        for key, value in network.state_dict().items()
        if not key.startswith(IMAGENET_CLASSIFIER_KEYS)
    }
    atomic_write(path, save(tensors, metadata={"format": WEIGHTS_FORMAT, **(metadata or {})}))
    return path


def feature_name(encoder_spec: str, weights: str | Path) -> str:
    """The feature name that computes features with `weights` in place of the encoder's
    own (``NAME?weights=FILE&...`` with `encoder_spec`'s other options)."""
    name, options = parse_source_spec(encoder_spec)
    options["weights"] = str(Path(weights).resolve())
    return f"{name}?{urlencode(options, safe='/:~')}"


def recipe_metadata(recipe: FinetuneRecipe, encoder_spec: str, dataset: str) -> dict[str, str]:
    """What the weights file records about how it was made."""
    return {
        "encoder": encoder_spec,
        "dataset": dataset,
        "recipe": json.dumps(dataclasses.asdict(recipe)),
    }
