"""The training loop behind `Trainer.fit`.

Lightning Fabric places the module and batches on the device, applies the precision,
seeds, and under torchrun wraps the module in DDP (gradients averaged over processes);
this loop adds phases, parameter groups, schedules, EMA, validation, early stopping,
history and progress. Imported only when training starts (it imports torch and Fabric).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from lightning_fabric import Fabric
from lightning_fabric.plugins.environments import TorchElasticEnvironment
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from phototag.errors import InvalidInputError
from phototag.training.optim import Freezer, build_optimizer, build_scheduler, submodule
from phototag.training.progress import Progress
from phototag.training.settings import EarlyStopping, Phase
from phototag.training.task import Task
from phototag.training.trainer import Trainer, TrainingDiverged, TrainingResult

#: Environment variables Fabric's seed_everything sets; `fit` puts them back.
SEED_VARIABLES = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")


def train(
    trainer: Trainer,
    module: nn.Module,
    tasks: Mapping[str, Task],
    train_data: Dataset,
    valid_data: Dataset | None,
) -> TrainingResult:
    """`Trainer.fit` (its docstring); `tasks` holds each phase's task by name."""
    phases = trainer.resolved_phases()
    _check(module, phases, tasks, valid_data)
    fabric = make_fabric(trainer)
    fabric.launch()
    home = next(module.parameters()).device
    freezer = Freezer(module)
    progress = Progress(trainer.progress and fabric.is_global_zero)
    history: list[dict[str, Any]] = []
    with _own_random_state(fabric.device):
        # each process draws its own dropout masks and crops; the data order is shared
        fabric.seed_everything(trainer.seed + fabric.global_rank, workers=True, verbose=False)
        try:
            for index, phase in enumerate(phases):
                run = _PhaseRun(fabric, trainer, module, freezer, phase, tasks[phase.name])
                history.extend(run.train(train_data, valid_data, trainer.seed + index, progress))
        finally:
            freezer.restore()
    module.to(home).eval()
    return TrainingResult(module, history, fabric.global_rank, fabric.world_size)


def make_fabric(trainer: Trainer) -> Fabric:
    """Fabric for this process: under torchrun, DDP over torchrun's processes and nodes
    (unless the trainer names devices or a strategy); otherwise one device."""
    devices: Any = trainer.devices
    strategy, nodes = trainer.strategy, 1
    if TorchElasticEnvironment.detect():
        local, world = int(os.environ["LOCAL_WORLD_SIZE"]), int(os.environ["WORLD_SIZE"])
        nodes = world // local
        devices = local if devices == "auto" else devices
        strategy = "ddp" if strategy == "auto" and world > 1 else strategy
    elif devices == "auto":
        devices = 1
    elif (len(devices) if isinstance(devices, tuple) else devices) != 1:
        raise InvalidInputError(
            "devices", "one device outside torchrun", repr(devices),
            "Start one process per device with torchrun --nproc-per-node N (docs/training.md).",
        )  # fmt: skip
    devices = list(devices) if isinstance(devices, tuple) else devices
    return Fabric(
        accelerator=trainer.accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=nodes,
        precision=trainer.precision,  # type: ignore[arg-type]
    )


def _check(
    module: nn.Module, phases: tuple[Phase, ...], tasks: Mapping[str, Task], valid: Any
) -> None:
    """Fail on bad names or a task without validation before any process group starts."""
    if not isinstance(module, nn.Module) or next(module.parameters(), None) is None:
        raise InvalidInputError("module", "a torch module with parameters", repr(module))
    for phase in phases:
        for name in phase.frozen:
            submodule(module, name, "frozen")
        for group in phase.optimizer.groups:  # type: ignore[union-attr]
            for name in group.parts:
                submodule(module, name, "groups")
        task = tasks[phase.name]
        if valid is not None and type(task).validation_value is Task.validation_value:
            task.validation_value(module, [])  # raises the task's own message


@contextmanager
def _own_random_state(device: torch.device) -> Iterator[None]:
    """Python's, NumPy's and torch's generators (and Fabric's seed variables) as they were
    before, once the block ends: seeding for training does not reseed the caller."""
    python, numpy = random.getstate(), np.random.get_state()
    variables = {name: os.environ.get(name) for name in SEED_VARIABLES}
    cuda = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)
        for name, value in variables.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _Best:
    """The best validation value of a phase so far, its weights, and the epochs since."""

    def __init__(self, rule: EarlyStopping) -> None:
        self.rule = rule
        self.value: float | None = None
        self.state: dict[str, torch.Tensor] | None = None
        self.waited = 0

    def should_stop(self, value: float, module: nn.Module, epoch: int) -> bool:
        """Keep `module`'s weights if `value` is the best yet; whether to stop after `epoch`."""
        if self.value is None or (
            value < self.value if self.rule.mode == "min" else value > self.value
        ):
            self.value, self.waited = value, 0
            self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            return False
        self.waited += 1
        return self.waited >= self.rule.patience and epoch >= self.rule.min_epochs


class _PhaseRun:
    """One phase: freeze its parts, set up optimizer, schedule and average, train epochs."""

    def __init__(
        self,
        fabric: Fabric,
        trainer: Trainer,
        module: nn.Module,
        freezer: Freezer,
        phase: Phase,
        task: Task,
    ) -> None:
        self.fabric, self.trainer, self.module = fabric, trainer, module
        self.freezer, self.phase, self.task = freezer, phase, task

    def train(
        self, train_data: Dataset, valid_data: Dataset | None, seed: int, progress: Progress
    ) -> list[dict[str, Any]]:
        """Train the phase's epochs (or until early stopping); its history entries."""
        fabric, phase, module = self.fabric, self.phase, self.module
        assert phase.epochs is not None and phase.optimizer and phase.schedule  # resolved
        self.freezer.freeze(phase.frozen)
        loader = self._train_loader(train_data, seed)
        steps = len(loader)
        optimizer = build_optimizer(module, phase.optimizer)
        per_step = phase.schedule.interval == "step"
        units = phase.epochs * steps if per_step else phase.epochs
        scheduler = build_scheduler(optimizer, phase.schedule, units)
        wrapped, fabric_optimizer = fabric.setup(module, optimizer)
        average = None
        if self.trainer.ema is not None:
            average = AveragedModel(
                module, multi_avg_fn=get_ema_multi_avg_fn(self.trainer.ema), use_buffers=True
            )
        watched = module if average is None else average.module
        valid_loader = None if valid_data is None else self._valid_loader(valid_data)
        rule = self.trainer.early_stopping
        best = _Best(rule) if rule is not None and valid_loader is not None else None
        history = []
        first: float | None = None  # the phase's first batch loss
        for epoch in range(1, phase.epochs + 1):
            started = time.perf_counter()
            record: dict[str, Any] = {"phase": phase.name, "epoch": epoch, **_rates(optimizer)}
            progress.start(f"{phase.name} {epoch}/{phase.epochs}", steps)
            self.freezer.train()
            total = torch.zeros((), device=fabric.device)
            for step, batch in enumerate(loader, 1):
                loss = self.task.training_step(wrapped, batch)
                fabric_optimizer.zero_grad(set_to_none=True)
                fabric.backward(loss)
                fabric_optimizer.step()
                if average is not None:
                    average.update_parameters(module)
                if scheduler is not None and per_step:
                    scheduler.step()
                total += loss.detach().float()
                if first is None:
                    first = float(fabric.all_reduce(loss.detach().float(), reduce_op="mean"))
                progress.step(total, step)
            if scheduler is not None and not per_step:
                scheduler.step()
            record["train_loss"] = float(fabric.all_reduce(total / steps, reduce_op="mean"))
            _check_divergence(record["train_loss"], first, self.trainer.divergence, phase, epoch)
            if valid_loader is not None:
                record["valid"] = self._validate(watched, valid_loader)
            record["time"] = time.perf_counter() - started
            history.append(record)
            progress.finish(record)
            if best is not None and best.should_stop(record["valid"], watched, epoch):
                break
        if best is not None and best.state is not None:
            module.load_state_dict(best.state)
        elif average is not None:
            module.load_state_dict(average.module.state_dict())
        return history

    def _train_loader(self, data: Dataset, seed: int) -> DataLoader:
        """Batches of this process: the same shuffled order (by `seed` and epoch) for any
        number of processes, each taking every N-th item of each global batch."""
        world, batch_size = self.fabric.world_size, self.trainer.batch_size
        if batch_size % world:
            raise InvalidInputError(
                "batch_size", f"a multiple of the number of processes ({world})", str(batch_size)
            )
        sampler = DistributedSampler(
            data, num_replicas=world, rank=self.fabric.global_rank, shuffle=True, seed=seed
        )
        loader = DataLoader(
            data,
            batch_size=batch_size // world,
            sampler=sampler,
            drop_last=self.trainer.drop_last,
            collate_fn=self.task.collate,
            num_workers=self.trainer.workers,
        )
        if len(loader) == 0:
            raise InvalidInputError(
                "train_data",
                f"at least one full batch ({batch_size} items)",
                f"{len(data)}",  # type: ignore[arg-type]
            )
        return self.fabric.setup_dataloaders(loader, use_distributed_sampler=False)  # type: ignore[return-value]

    def _valid_loader(self, data: Dataset) -> DataLoader:
        loader = DataLoader(
            data,
            batch_size=self.trainer.batch_size,
            collate_fn=self.task.collate,
            num_workers=self.trainer.workers,
        )
        return self.fabric.setup_dataloaders(loader, use_distributed_sampler=False)  # type: ignore[return-value]

    def _validate(self, module: nn.Module, loader: DataLoader) -> float:
        """The task's validation value of `module`, computed by rank 0 (on every batch, in
        the training precision, without gradients) and sent to all processes, so they
        all take the same early-stopping decision."""
        value = None
        if self.fabric.is_global_zero:
            precision = self.fabric.strategy.precision
            module.eval()
            with torch.no_grad(), precision.forward_context():
                batches = (precision.convert_input(batch) for batch in loader)
                value = float(self.task.validation_value(module, batches))
        return float(self.fabric.broadcast(value, src=0))


def _check_divergence(
    loss: float, first: float | None, factor: float | None, phase: Phase, epoch: int
) -> None:
    """Raise `TrainingDiverged` on a NaN or infinite epoch loss, or one above `factor`
    times the phase's (positive) `first` batch loss."""
    running_away = factor is not None and first is not None and 0 < factor * first < loss
    if math.isfinite(loss) and not running_away:
        return
    assert phase.optimizer is not None
    why = f"the mean loss is {loss:.4g}" + (
        f", {loss / first:.3g} times its first batch's ({first:.4g})" if running_away else ""
    )
    raise TrainingDiverged(
        f"training diverged in phase {phase.name!r}, epoch {epoch}: {why}; lower the "
        f"learning rate ({phase.optimizer.lr:g} now) or the batch's loss scale"
    )


def _rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The learning rate now: ``lr`` (first group), and ``lr_<name>`` of each group when
    there are several."""
    groups = optimizer.param_groups
    rates = {"lr": float(groups[0]["lr"])}
    if len(groups) > 1:
        rates.update({f"lr_{g['name']}": float(g["lr"]) for g in groups})
    return rates
