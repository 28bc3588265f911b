"""Torch optimizers, learning-rate schedulers and frozen parts from the training settings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import lr_scheduler

from phototag.errors import InvalidInputError
from phototag.training.settings import OptimizerSettings, Schedule


def submodule(module: nn.Module, name: str, argument: str) -> nn.Module:
    """`module`'s submodule `name`, or `InvalidInputError` listing the ones it has."""
    try:
        return module.get_submodule(name)
    except AttributeError:
        children = ", ".join(n for n, _ in module.named_children()) or "none"
        raise InvalidInputError(
            argument, f"submodule names of {type(module).__name__} ({children})", repr(name)
        ) from None


def parts_parameters(module: nn.Module, parts: Iterable[str], argument: str) -> set[nn.Parameter]:
    """The parameters of the named submodules of `module`."""
    return {p for name in parts for p in submodule(module, name, argument).parameters()}


def parameter_groups(module: nn.Module, settings: OptimizerSettings) -> list[dict[str, Any]]:
    """Torch parameter groups of `module`'s trainable parameters: one per `Group` that has
    any, then ``"rest"`` for the others; each records its ``name``."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    taken: set[nn.Parameter] = set()
    groups = []
    for group in settings.groups:
        members = parts_parameters(module, group.parts, "groups")
        if members & taken:
            raise InvalidInputError(
                "groups", "groups whose submodules do not overlap", f"{group.name} overlaps"
            )
        taken |= members
        params = [p for p in trainable if p in members]
        if params:
            groups.append({
                "params": params,
                "name": group.name,
                "lr": settings.lr if group.lr is None else group.lr,
                "weight_decay": (
                    settings.weight_decay if group.weight_decay is None else group.weight_decay
                ),
            })  # fmt: skip
    rest = [p for p in trainable if p not in taken]
    if rest:
        groups.append(
            {
                "params": rest,
                "name": "rest",
                "lr": settings.lr,
                "weight_decay": settings.weight_decay,
            }
        )
    return groups


def build_optimizer(module: nn.Module, settings: OptimizerSettings) -> torch.optim.Optimizer:
    """The optimizer `settings` name, over `module`'s trainable parameters."""
    groups = parameter_groups(module, settings)
    if not groups:
        raise InvalidInputError(
            "frozen", "a phase that leaves some parameters to train", "every parameter frozen"
        )
    if settings.name == "sgd":
        return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum)
    if settings.name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=settings.lr, momentum=settings.momentum)
    kind = torch.optim.AdamW if settings.name == "adamw" else torch.optim.Adam
    return kind(groups, lr=settings.lr, betas=settings.betas)


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule, units: int
) -> lr_scheduler.LRScheduler | None:
    """The scheduler of `schedule` over `units` steps of it (None: the rate never moves)."""
    after = max(1, units - schedule.warmup)
    main: lr_scheduler.LRScheduler | None = None
    if schedule.kind == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=after, eta_min=schedule.min_lr)
    elif schedule.kind == "step":
        main = lr_scheduler.StepLR(optimizer, step_size=schedule.step_size, gamma=schedule.gamma)
    if schedule.warmup == 0:
        return main
    warmup = lr_scheduler.LinearLR(
        optimizer, start_factor=1 / (schedule.warmup + 1), total_iters=schedule.warmup
    )
    if main is None:
        return warmup
    return lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[schedule.warmup])


class Freezer:
    """Freezes named parts of a module for a phase and gives back its own trainable flags.

    Frozen parameters get ``requires_grad=False`` (so neither the optimizer nor DDP sees
    them) and frozen submodules stay in eval mode while the rest trains (batch-norm
    statistics and dropout of a frozen part do not move).
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.original = {p: p.requires_grad for p in module.parameters()}
        self.parts: list[nn.Module] = []

    def freeze(self, parts: Iterable[str]) -> None:
        """Train everything the module trained before except `parts`."""
        self.parts = [submodule(self.module, name, "frozen") for name in parts]
        frozen = {p for part in self.parts for p in part.parameters()}
        for p, flag in self.original.items():
            p.requires_grad_(flag and p not in frozen)

    def train(self) -> None:
        """Training mode, except the frozen parts."""
        self.module.train()
        for part in self.parts:
            part.eval()

    def restore(self) -> None:
        """The trainable flags the module came with."""
        for p, flag in self.original.items():
            p.requires_grad_(flag)
        self.parts = []
