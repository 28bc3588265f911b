"""DDP: two torchrun processes (gloo, CPU) train a tiny model to the weights one process gets.

The same file is the worker torchrun starts (``python -m torch.distributed.run
--nproc-per-node 2 tests/test_training_ddp.py OUT``). Both runs see the same global
batches: the trainer's sampler shuffles the same way for any number of processes, each
of 2 processes takes every second item of a batch of 12 (6 each), and DDP averages the
two halves' gradients, which equals one process's gradient over all 12.

Tolerance: 1e-5 absolute on the weights (values of order 0.1-1). The two runs do the same
arithmetic except the order of float32 additions in the gradient (two means of 6 averaged
by gloo's all-reduce vs one mean of 12), which differ by about 1e-7 relative per step;
over 15 Adam steps they stay well below 1e-5, while one changed batch or a skipped
averaging step moves the weights by 1e-2 or more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from phototag.training import (
    EarlyStopping,
    LossTask,
    OptimizerSettings,
    Phase,
    Schedule,
    Trainer,
    TrainingResult,
    end_distributed,
)

TOLERANCE = 1e-5


def train_tiny() -> TrainingResult:
    """Two phases (all, then the head with the body frozen), warm-up + cosine, EMA and
    early stopping on a validation set: every part of the loop that crosses processes."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(48, 6, generator=generator)
    y = torch.tanh(x @ torch.randn(6, 3, generator=generator))
    with torch.random.fork_rng():
        torch.manual_seed(1)
        module = nn.Sequential(
            OrderedDict(body=nn.Sequential(nn.Linear(6, 16), nn.Tanh()), head=nn.Linear(16, 3))
        )
    trainer = Trainer(
        batch_size=12,
        optimizer=OptimizerSettings(lr=0.05, weight_decay=0.01),
        schedule=Schedule("cosine", warmup=2),
        phases=(Phase("all", epochs=3), Phase("head", epochs=2, frozen=("body",))),
        early_stopping=EarlyStopping(patience=2),
        ema=0.8,
        accelerator="cpu",
        progress=False,
    )
    task = LossTask(nn.functional.mse_loss)
    return trainer.fit(module, task, TensorDataset(x[:36], y[:36]), TensorDataset(x[36:], y[36:]))


@pytest.mark.integration
def test_two_processes_reach_the_weights_of_one(tmp_path: Path) -> None:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", __file__, str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = json.loads((tmp_path / "ranks.json").read_text())
    assert ranks == [[0, 2], [1, 2]]  # really two processes of one job

    alone = train_tiny()
    assert (alone.global_rank, alone.world_size) == (0, 1)
    for rank in (0, 1):
        state = torch.load(tmp_path / f"weights{rank}.pt", weights_only=True)
        for name, value in alone.module.state_dict().items():
            difference = (state[name] - value).abs().max().item()
            assert difference < TOLERANCE, (rank, name, difference)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [(h["phase"], h["epoch"]) for h in history] == [
        (h["phase"], h["epoch"]) for h in alone.history_
    ]
    for theirs, ours in zip(history, alone.history_, strict=True):
        assert abs(theirs["train_loss"] - ours["train_loss"]) < TOLERANCE
        assert abs(theirs["valid"] - ours["valid"]) < TOLERANCE


if __name__ == "__main__":  # a torchrun worker
    out = Path(sys.argv[1])
    result = train_tiny()
    torch.save(result.module.state_dict(), out / f"weights{result.global_rank}.pt")
    gathered: list[object] = [None, None]
    torch.distributed.all_gather_object(gathered, [result.global_rank, result.world_size])
    if result.is_global_zero:
        (out / "ranks.json").write_text(json.dumps(gathered))
        (out / "history.json").write_text(json.dumps(result.history_))
    end_distributed()
