"""The one way phototag trains torch models (docs/training.md).

`Trainer` holds the settings and runs `fit(module, task, train_data, valid_data)` on
Lightning Fabric (devices, precision, seeding, DDP under torchrun) with phototag's loop
on top: phases that freeze named parts, parameter groups, warm-up + cosine or step
schedules, early stopping that restores the best weights, EMA, a per-epoch `history_`
and progress. Importing this package imports neither torch nor Lightning.
"""

from phototag.training.settings import EarlyStopping, Group, OptimizerSettings, Phase, Schedule
from phototag.training.task import LossTask, Task
from phototag.training.trainer import (
    Trainer,
    TrainingDiverged,
    TrainingResult,
    end_distributed,
    is_main_process,
)

__all__ = [
    "EarlyStopping",
    "Group",
    "LossTask",
    "OptimizerSettings",
    "Phase",
    "Schedule",
    "Task",
    "Trainer",
    "TrainingDiverged",
    "TrainingResult",
    "end_distributed",
    "is_main_process",
]
