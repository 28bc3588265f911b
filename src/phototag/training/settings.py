"""Training settings: small frozen dataclasses, checked when made, that save as JSON.

A `Phase` leaves `epochs`, `optimizer` or `schedule` as None to take the trainer's.
Submodules are named as `torch.nn.Module.get_submodule` names them (``"block"``,
``"backbone.layer4"``). Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from phototag.errors import InvalidInputError, check_choice, check_float, check_int

OPTIMIZERS = ("adamw", "adam", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "step")
INTERVALS = ("step", "epoch")
MODES = ("min", "max")


def names(argument: str, value: str | Sequence[str]) -> tuple[str, ...]:
    """`value` (one submodule name or several) as a tuple of non-empty names."""
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, Sequence) or not all(isinstance(n, str) and n for n in items):
        raise InvalidInputError(argument, "submodule names (strings)", repr(value))
    return tuple(items)


@dataclass(frozen=True)
class Group:
    """Named submodules whose parameters train with their own learning rate / weight decay.

    None takes the optimizer's value. Parameters outside every group form one more group
    with the optimizer's values (named ``"rest"``).
    """

    parts: tuple[str, ...]
    lr: float | None = None
    weight_decay: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", names("parts", self.parts))
        if not self.parts:
            raise InvalidInputError("parts", "at least one submodule name", "none")
        if self.lr is not None:
            check_float("lr", self.lr, 0.0, strict=False)
        if self.weight_decay is not None:
            check_float("weight_decay", self.weight_decay, 0.0, strict=False)

    @property
    def name(self) -> str:
        """The group's name in `history_` (``lr_<name>``): its parts joined by ``+``."""
        return "+".join(self.parts)


@dataclass(frozen=True)
class OptimizerSettings:
    """Which torch optimizer and its settings, with per-submodule `groups`.

    ``"adamw"`` (decoupled weight decay) and ``"adam"`` use `betas`; ``"sgd"`` and
    ``"rmsprop"`` use `momentum`; for all but AdamW `weight_decay` is an L2 penalty
    (torch's convention).
    """

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    groups: tuple[Group, ...] = ()

    def __post_init__(self) -> None:
        check_choice("optimizer", self.name, OPTIMIZERS)
        check_float("lr", self.lr, 0.0, strict=False)
        check_float("weight_decay", self.weight_decay, 0.0, strict=False)
        check_float("momentum", self.momentum, 0.0, strict=False)
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(0 <= check_float("betas", b, 0.0, False) < 1 for b in betas):
            raise InvalidInputError("betas", "two numbers in [0, 1)", repr(self.betas))
        object.__setattr__(self, "betas", betas)
        groups = tuple(self.groups)
        if not all(isinstance(g, Group) for g in groups):
            raise InvalidInputError("groups", "Group objects", repr(self.groups))
        object.__setattr__(self, "groups", groups)


@dataclass(frozen=True)
class Schedule:
    """How the learning rate moves through a phase, in units of `interval` (optimizer
    steps or epochs); the scheduler steps once per unit.

    - warm-up: unit ``t < warmup`` uses ``lr * (t + 1) / (warmup + 1)``;
    - then ``"constant"``: ``lr``; ``"cosine"``: from ``lr`` down to `min_lr` over the
      remaining ``U - warmup`` units, ``min_lr + (lr - min_lr) * (1 + cos(pi * s / (U -
      warmup))) / 2`` at unit ``warmup + s`` (U: the phase's units); ``"step"``: ``lr *
      gamma ** (s // step_size)``.
    """

    kind: str = "constant"
    interval: str = "step"
    warmup: int = 0
    min_lr: float = 0.0
    step_size: int = 1
    gamma: float = 0.1

    def __post_init__(self) -> None:
        check_choice("schedule", self.kind, SCHEDULES)
        check_choice("interval", self.interval, INTERVALS)
        check_int("warmup", self.warmup, 0)
        check_float("min_lr", self.min_lr, 0.0, strict=False)
        check_int("step_size", self.step_size, 1)
        check_float("gamma", self.gamma, 0.0)


@dataclass(frozen=True)
class EarlyStopping:
    """Stop a phase after `patience` epochs whose validation value is not better than the
    best so far (lower with ``mode="min"``, higher with ``"max"``), but not before
    `min_epochs`; the best epoch's weights (the averaged ones with EMA) end the phase."""

    mode: str = "min"
    patience: int = 3
    min_epochs: int = 1

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        check_int("patience", self.patience, 1)
        check_int("min_epochs", self.min_epochs, 1)


@dataclass(frozen=True)
class Phase:
    """One stage of training: its epochs, optimizer and schedule (None: the trainer's),
    and the submodules it keeps `frozen` (no gradients, in eval mode, weights and
    buffers unchanged). A phase starts from the weights the previous one ended with,
    with a fresh optimizer, schedule and moving average."""

    name: str
    epochs: int | None = None
    optimizer: OptimizerSettings | None = None
    schedule: Schedule | None = None
    frozen: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInputError("name", "a non-empty phase name", repr(self.name))
        if self.epochs is not None:
            check_int("epochs", self.epochs, 1)
        if self.optimizer is not None and not isinstance(self.optimizer, OptimizerSettings):
            raise InvalidInputError("optimizer", "OptimizerSettings or None", repr(self.optimizer))
        if self.schedule is not None and not isinstance(self.schedule, Schedule):
            raise InvalidInputError("schedule", "a Schedule or None", repr(self.schedule))
        object.__setattr__(self, "frozen", names("frozen", self.frozen))
