"""Fine-tune an image encoder on labelled photos, for better features (`phototag finetune`).

The recipe of the Corel-5k fine-tuning study (docs/benchmarks.md), where it turned
EfficientNet-Lite2's features from TagProp F1 39.3 into 43.8-45.3, and the ensemble's into
47.3: every photo is decoded once to the encoder's input (``resize=squash`` keeps the
whole photo) and kept in memory as uint8; each step takes random resized crops (area
`min_area`..1, aspect 3/4..4/3) and horizontal flips of a batch on the device; the whole
network and a new linear classifier over the labels are trained with the asymmetric loss
(`phototag.models.linear.asymmetric_loss`), AdamW, one warm-up epoch and a cosine
schedule; the exponential moving average of the weights is the result. On a GPU that
takes about 4 minutes for Corel-5k; on CPU cores, hours.

The classifier is dropped: the result is the network's weights (float16 safetensors,
with the recipe in its metadata), which a feature name carries, e.g.
``efficientnet_lite2?weights=FILE&input_size=384&resize=squash``, so `phototag
features`, `train`, `evaluate` and `annotate` use the fine-tuned features like any other.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import numpy as np

from phototag.data import AnnotationSet
from phototag.errors import InvalidInputError, check_float, check_int
from phototag.features.encoders.preprocess import normalize
from phototag.features.extract import decode_photos, parse_source_spec
from phototag.fileio import atomic_write

if TYPE_CHECKING:
    import torch
    from torch import nn

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
    moving averages, on the CPU), the photos it could not read, and each epoch's loss."""

    network: nn.Module
    classifier: nn.Module
    failures: list[tuple[str, str]]
    losses: list[float]


def random_resized_crops(
    x: torch.Tensor, min_area: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random resized crops (area `min_area`..1, aspect 3/4..4/3) and horizontal flips of
    a float batch ``[N, C, H, W]``, at the same size, by one bilinear grid sample."""
    import torch
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
    progress: Callable[[int, float], None] | None = None,
) -> FinetuneResult:
    """Fine-tune `encoder`'s torch network on `train`'s photos and labels (module
    docstring); `progress(epoch, loss)` is called after each epoch. `encoder` is left
    unchanged; photos that cannot be decoded are skipped and listed."""
    import copy

    import torch
    from torch import nn

    from phototag.features.encoders.runtime import torch_device
    from phototag.models.linear import asymmetric_loss

    if train.image_paths is None:
        raise InvalidInputError("dataset", "a dataset with images", f"{train.name} (labels only)")
    torch_dev = torch_device(device)
    pixels, rows, failures = decode_photos(
        [str(p) for p in train.image_paths], encoder.preprocess, workers
    )
    if len(rows) < 2:
        raise InvalidInputError("dataset", "at least 2 readable photos", f"{len(rows)}")
    x = torch.from_numpy(pixels).to(torch_dev)
    y = torch.from_numpy(train.labels[rows].toarray().astype(np.float32)).to(torch_dev)

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = copy.deepcopy(encoder.model).to(torch_dev, memory_format=torch.channels_last)
        classifier = nn.Sequential(
            nn.Dropout(recipe.dropout), nn.Linear(network.num_features, y.shape[1])
        ).to(torch_dev)
        both = nn.ModuleDict({"network": network, "classifier": classifier})
        average = torch.optim.swa_utils.AveragedModel(
            both,
            multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(recipe.ema),
            use_buffers=True,
        )
        optimizer = torch.optim.AdamW(
            [
                {"params": network.parameters(), "lr": recipe.lr},
                {"params": classifier.parameters(), "lr": recipe.classifier_lr},
            ],
            weight_decay=recipe.weight_decay,
        )
        batch = min(recipe.batch_size, len(rows))
        per_epoch = max(1, len(rows) // batch)
        total = recipe.epochs * per_epoch
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda s: min(1.0, (s + 1) / per_epoch) * 0.5 * (1 + math.cos(math.pi * s / total)),
        )
        autocast = torch.autocast("cuda", torch.bfloat16, enabled=torch_dev.type == "cuda")
        losses = []
        for epoch in range(recipe.epochs):
            both.train()
            order = torch.randperm(len(rows), generator=generator).to(torch_dev)
            epoch_loss = torch.zeros((), device=torch_dev)
            for step in range(per_epoch):
                take = order[step * batch : (step + 1) * batch]
                inputs = normalize(x[take], encoder.preprocess)
                inputs = random_resized_crops(inputs, recipe.min_area, generator)
                inputs = inputs.contiguous(memory_format=torch.channels_last)
                with autocast:
                    logits = classifier(network(inputs)["pooled"]).float()
                loss = asymmetric_loss(logits, y[take], recipe.gamma_neg, recipe.clip)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                average.update_parameters(both)
                epoch_loss += loss.detach() / per_epoch
            losses.append(epoch_loss.item())
            if progress is not None:
                progress(epoch + 1, losses[-1])
    network, classifier = (average.module[key].cpu().eval() for key in ("network", "classifier"))
    return FinetuneResult(network, classifier, failures, losses)


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
