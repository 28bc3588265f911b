"""`Trainer`: every training setting in one frozen, JSON-friendly object, and `fit`.

Importing this module imports neither torch nor Lightning: `fit` loads the loop
(`phototag.training.loop`) when it runs, so the annotate path stays light.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from phototag.errors import InvalidInputError, PhototagError, check_choice, check_float, check_int
from phototag.training.settings import EarlyStopping, OptimizerSettings, Phase, Schedule
from phototag.training.task import Task

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import Dataset

PRECISIONS = ("64-true", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true")
ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps")


@dataclass
class TrainingResult:
    """What `Trainer.fit` returns. `module` is the module passed in, trained in place, back
    on its own device in eval mode, with each phase's final weights: the best epoch's
    with early stopping, the moving average's with EMA. `history_` has one entry per
    epoch: ``phase``, ``epoch`` (1-based, per phase), ``lr`` (the first parameter
    group's at the epoch's first step; ``lr_<group>`` for each when there are several),
    ``train_loss`` (mean over the epoch's steps and processes), ``valid`` (the task's
    validation value, with validation data) and ``time`` (seconds, validation included).
    """

    module: nn.Module
    history_: list[dict[str, Any]]
    global_rank: int = 0
    world_size: int = 1

    @property
    def is_global_zero(self) -> bool:
        """Whether this process writes results (rank 0 of a torchrun job; always alone)."""
        return self.global_rank == 0


class TrainingDiverged(PhototagError):
    """The training loss became NaN or infinite, or ran away (`Trainer.divergence`); the
    message names the phase, the epoch and the learning rate to lower."""


def is_main_process() -> bool:
    """Whether this process writes results: rank 0 of a torchrun job (its ``RANK``
    variable), or a process alone. For programs whose models train inside ``fit``."""
    return os.environ.get("RANK", "0") == "0"


def end_distributed() -> None:
    """Close the torchrun process group, if there is one. Call it before a DDP program
    exits: gloo's threads outliving the interpreter abort the process."""
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@dataclass(frozen=True)
class Trainer:
    """How to train a torch module: phases, optimizer, schedule, early stopping, EMA,
    precision, devices and seed. See docs/training.md.

    Args:
        epochs: epochs of each phase that does not set its own.
        batch_size: items per optimizer step over all processes (each of N torchrun
            processes takes ``batch_size / N``; it must divide).
        optimizer: optimizer, learning rate, weight decay and parameter groups.
        schedule: learning-rate schedule of each phase that does not set its own.
        phases: stages trained one after the other (empty: one phase ``"train"``).
        early_stopping: stop a phase when the validation value stops improving and keep
            its best epoch (needs validation data; None: train every epoch).
        ema: decay of an exponential moving average of the weights (and buffers), which
            is validated and is the result (None: no average).
        precision: Lightning Fabric precision (``"32-true"``, ``"bf16-mixed"``, ...).
        accelerator: ``"auto"``, ``"cpu"``, ``"cuda"``/``"gpu"`` or ``"mps"``.
        devices: ``"auto"`` (one outside torchrun; torchrun's processes under it), or a
            Fabric device choice for one process (e.g. ``[1]``: the second GPU).
        strategy: Fabric strategy (``"auto"``: DDP when torchrun started several
            processes; ``"ddp_find_unused_parameters_true"`` for modules that leave
            some trainable parameters out of a loss).
        seed: seeds data order, dropout and every generator during `fit`.
        workers: data-loading processes per training process (0: load in-process).
        drop_last: drop each epoch's last, smaller batch.
        progress: report each epoch on stderr (a bar on a terminal, lines in logs).
        divergence: raise `TrainingDiverged` when an epoch's mean training loss exceeds
            this multiple of the phase's first batch loss (a finite loss running away,
            as too high a learning rate makes it); None: only on a NaN or infinite loss.
    """

    epochs: int = 10
    batch_size: int = 32
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    schedule: Schedule = field(default_factory=Schedule)
    phases: tuple[Phase, ...] = ()
    early_stopping: EarlyStopping | None = None
    ema: float | None = None
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: int | str | tuple[int, ...] = "auto"
    strategy: str = "auto"
    seed: int = 0
    workers: int = 0
    drop_last: bool = False
    progress: bool = True
    divergence: float | None = 100.0

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 1)
        if not isinstance(self.optimizer, OptimizerSettings):
            raise InvalidInputError("optimizer", "OptimizerSettings", repr(self.optimizer))
        if not isinstance(self.schedule, Schedule):
            raise InvalidInputError("schedule", "a Schedule", repr(self.schedule))
        phases = tuple(self.phases)
        if not all(isinstance(p, Phase) for p in phases):
            raise InvalidInputError("phases", "Phase objects", repr(self.phases))
        if len({p.name for p in phases}) != len(phases):
            raise InvalidInputError("phases", "phases with distinct names", repr(phases))
        object.__setattr__(self, "phases", phases)
        if self.early_stopping is not None and not isinstance(self.early_stopping, EarlyStopping):
            raise InvalidInputError(
                "early_stopping", "EarlyStopping or None", repr(self.early_stopping)
            )
        if self.ema is not None and check_float("ema", self.ema, 0.0) >= 1:
            raise InvalidInputError("ema", "None or a decay between 0 and 1", repr(self.ema))
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("accelerator", self.accelerator, ACCELERATORS)
        if isinstance(self.devices, list):
            object.__setattr__(self, "devices", tuple(self.devices))
        if not (self.devices == "auto" or isinstance(self.devices, int | tuple)):
            raise InvalidInputError(
                "devices", "'auto', a count or device indices", repr(self.devices)
            )
        if not isinstance(self.strategy, str):
            raise InvalidInputError("strategy", "a Fabric strategy name", repr(self.strategy))
        check_int("seed", self.seed, 0)
        check_int("workers", self.workers, 0)
        if self.divergence is not None:
            check_float("divergence", self.divergence, 1.0)
        for name in ("drop_last", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(name, "True or False", repr(getattr(self, name)))

    def resolved_phases(self) -> tuple[Phase, ...]:
        """The phases `fit` trains, with the trainer's epochs, optimizer and schedule
        filled in where a phase leaves them None."""
        phases = self.phases or (Phase("train"),)
        return tuple(
            replace(
                phase,
                epochs=phase.epochs or self.epochs,
                optimizer=phase.optimizer or self.optimizer,
                schedule=phase.schedule or self.schedule,
            )
            for phase in phases
        )

    def fit(
        self,
        module: nn.Module,
        task: Task | Mapping[str, Task],
        train_data: Dataset,
        valid_data: Dataset | None = None,
    ) -> TrainingResult:
        """Train `module` in place on `train_data` (a map-style torch dataset whose items
        `task.collate` batches), validating on `valid_data` after each epoch.

        `task` is one `Task` for every phase, or one per phase name. Under torchrun each
        process calls `fit` with the same arguments; each trains on its share of every
        batch and all end with the same weights.
        """
        from phototag.training.loop import train

        return train(self, module, _phase_tasks(task, self.resolved_phases()), train_data,
                     valid_data)  # fmt: skip


def _phase_tasks(task: Task | Mapping[str, Task], phases: Sequence[Phase]) -> dict[str, Task]:
    """The task of each phase, by name."""
    names = [phase.name for phase in phases]
    if isinstance(task, Task):
        return dict.fromkeys(names, task)
    if not isinstance(task, Mapping) or set(task) != set(names):
        raise InvalidInputError(
            "task", f"a Task, or a mapping from each phase name ({', '.join(names)}) to one",
            repr(task),
        )  # fmt: skip
    for name, each in task.items():
        if not isinstance(each, Task):
            raise InvalidInputError("task", f"a Task for phase {name!r}", repr(each))
    return dict(task)
