"""The training engine: schedules, early stopping, EMA, phases, history, seeding, progress.

DDP (two torchrun processes) is in tests/test_training_ddp.py.
"""

from __future__ import annotations

import copy
import io
import math
import random
import subprocess
import sys
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from phototag.errors import InvalidInputError
from phototag.training import (
    EarlyStopping,
    Group,
    LossTask,
    OptimizerSettings,
    Phase,
    Schedule,
    Task,
    Trainer,
)
from phototag.training.optim import build_optimizer, build_scheduler
from phototag.training.progress import Progress

MSE = LossTask(nn.functional.mse_loss)
LOADED = ("torch", "lightning_fabric")


def data(n: int = 24, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=generator)
    return TensorDataset(x, torch.tanh(x @ torch.randn(3, 2, generator=generator)))


def network(seed: int = 0, dropout: float = 0.0) -> nn.Sequential:
    """Named parts ``a`` (with a batch norm), ``b`` and ``c``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(OrderedDict(
            a=nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)),
            b=nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Dropout(dropout)),
            c=nn.Linear(4, 2),
        ))  # fmt: skip


def quiet(**settings: Any) -> Trainer:
    return Trainer(batch_size=8, accelerator="cpu", progress=False, **settings)


def same(left: nn.Module, right: nn.Module, prefix: str = "") -> bool:
    """Exactly equal state (parameters and buffers) under `prefix`."""
    a, b = left.state_dict(), right.state_dict()
    keys = [k for k in a if k.startswith(prefix)]
    return bool(keys) and all(torch.equal(a[k], b[k]) for k in keys)


# ----------------------------------------------------------------------- imports
def imported(code: str) -> list[str]:
    """Which of torch and lightning_fabric are imported after running `code`."""
    check = f"{code}; import sys; print([m for m in {LOADED!r} if m in sys.modules])"
    return eval(subprocess.check_output([sys.executable, "-c", check], text=True))


def test_importing_training_loads_neither_torch_nor_lightning() -> None:
    assert imported("import phototag.training") == []


def test_the_annotate_path_does_not_import_lightning() -> None:
    code = "import phototag.models, phototag.app.cli, phototag.app.commands.annotate"
    assert "lightning_fabric" not in imported(code)


# --------------------------------------------------------------------- schedules
def learning_rates(schedule: Schedule, units: int, lr: float = 1.0) -> list[float]:
    """The rate of each of `units` units (what the optimizer uses in unit t)."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = build_scheduler(optimizer, schedule, units)
    rates = []
    for _ in range(units):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return rates


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (Schedule("constant"), lambda t: 1.0),
        (Schedule("constant", warmup=3), lambda t: (t + 1) / 4 if t < 3 else 1.0),
        (Schedule("cosine"), lambda t: 0.5 * (1 + math.cos(math.pi * t / 10))),
        (
            Schedule("cosine", warmup=3, min_lr=0.1),
            lambda t: (t + 1) / 4 if t < 3 else 0.1 + 0.45 * (1 + math.cos(math.pi * (t - 3) / 7)),
        ),
        (Schedule("step", step_size=3, gamma=0.5), lambda t: 0.5 ** (t // 3)),
        (
            Schedule("step", warmup=2, step_size=3, gamma=0.5),
            lambda t: (t + 1) / 3 if t < 2 else 0.5 ** ((t - 2) // 3),
        ),
    ],
)  # fmt: skip
def test_schedules_give_the_documented_rates(schedule: Schedule, expected: Any) -> None:
    rates = learning_rates(schedule, 10)
    assert rates == pytest.approx([expected(t) for t in range(10)], rel=1e-12, abs=1e-15)


def test_trainer_steps_the_schedule_per_step_or_per_epoch() -> None:
    cosine = 0.5 * (1 + np.cos(np.pi * np.arange(4) / 4))
    per_epoch = quiet(epochs=4, schedule=Schedule("cosine", interval="epoch"))
    history = per_epoch.fit(network(), MSE, data()).history_
    assert [h["lr"] for h in history] == pytest.approx(1e-3 * cosine, rel=1e-12)
    # 24 items in batches of 8: 3 steps an epoch, 12 in all; epoch e starts at step 3e
    per_step = quiet(epochs=4, schedule=Schedule("cosine", warmup=3))
    history = per_step.fit(network(), MSE, data()).history_
    at_step = [1e-3 / 4] + [1e-3 * 0.5 * (1 + math.cos(math.pi * (s - 3) / 9)) for s in (3, 6, 9)]
    assert [h["lr"] for h in history] == pytest.approx(at_step, rel=1e-12)


def test_parameter_groups_train_at_their_own_rates() -> None:
    settings = OptimizerSettings(
        lr=0.01, groups=(Group(("a", "b"), lr=0.002, weight_decay=0.1), Group("c", lr=0.0))
    )
    module = network()
    start = copy.deepcopy(module)
    history = quiet(epochs=1, optimizer=settings).fit(module, MSE, data()).history_
    assert history[0]["lr_a+b"] == 0.002 and history[0]["lr_c"] == 0.0
    assert "lr_rest" not in history[0]  # every parameter is in a group
    assert same(module, start, "c.") and not same(module, start, "a.")


@pytest.mark.parametrize(
    ("settings", "kind", "expected"),
    [
        (
            OptimizerSettings("adamw", betas=(0.8, 0.999)),
            torch.optim.AdamW,
            {"betas": (0.8, 0.999)},
        ),
        (OptimizerSettings("adam", weight_decay=0.1), torch.optim.Adam, {"weight_decay": 0.1}),
        (OptimizerSettings("sgd", momentum=0.9), torch.optim.SGD, {"momentum": 0.9}),
        (OptimizerSettings("rmsprop", lr=1e-4), torch.optim.RMSprop, {"lr": 1e-4, "momentum": 0}),
    ],
)
def test_optimizers_take_their_settings(
    settings: OptimizerSettings, kind: type, expected: dict[str, Any]
) -> None:
    optimizer = build_optimizer(network(), settings)
    assert type(optimizer) is kind
    group = optimizer.param_groups[0]
    assert {key: group[key] for key in expected} == expected


def test_parameter_groups_must_name_parts_once() -> None:
    overlapping = OptimizerSettings(groups=(Group("a"), Group(("a", "b"))))
    with pytest.raises(InvalidInputError, match="overlap"):
        quiet(epochs=1, optimizer=overlapping).fit(network(), MSE, data())
    with pytest.raises(InvalidInputError, match=r"groups: .*\(a, b, c\), got 'd'"):
        quiet(epochs=1, optimizer=OptimizerSettings(groups=(Group("d"),))).fit(
            network(), MSE, data()
        )


# ---------------------------------------------------------------- early stopping
class Scripted(LossTask):
    """Mean squared error, with validation values read from a script."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(nn.functional.mse_loss)
        self.values = iter(values)

    def validation_value(self, module: nn.Module, batches: Any) -> float:
        return next(self.values)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_early_stopping_restores_the_best_epoch_exactly(mode: str) -> None:
    sign = 1 if mode == "min" else -1
    values = [sign * v for v in (5.0, 3.0, 4.0, 3.5, 1.0, 0.5)]  # best: epoch 2
    module = network()
    trainer = quiet(epochs=6, early_stopping=EarlyStopping(mode=mode, patience=2))
    history = trainer.fit(module, Scripted(values), data(), data(8, seed=1)).history_
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]  # two epochs without a better value
    assert [h["valid"] for h in history] == values[:4]
    two_epochs = network()
    quiet(epochs=2).fit(two_epochs, MSE, data())
    after_four = network()
    quiet(epochs=4).fit(after_four, MSE, data())
    assert same(module, two_epochs) and not same(module, after_four)


def test_early_stopping_waits_for_min_epochs() -> None:
    module, one_epoch = network(), network()
    rule = EarlyStopping(patience=1, min_epochs=3)
    history = (
        quiet(epochs=5, early_stopping=rule)
        .fit(module, Scripted([1.0, 2.0, 3.0, 4.0, 5.0]), data(), data(8, seed=1))
        .history_
    )
    quiet(epochs=1).fit(one_epoch, MSE, data())
    assert len(history) == 3 and same(module, one_epoch)


def test_without_early_stopping_every_epoch_trains_and_the_last_weights_stay() -> None:
    module, reference = network(), network()
    history = quiet(epochs=3).fit(module, Scripted([1.0, 2.0, 3.0]), data(), data(8, 1)).history_
    quiet(epochs=3).fit(reference, MSE, data())
    assert len(history) == 3 and same(module, reference)


def test_validation_needs_a_task_that_defines_it() -> None:
    class LossOnly(Task):
        def training_step(self, module: nn.Module, batch: Any) -> torch.Tensor:
            return nn.functional.mse_loss(module(batch[0]), batch[1])

    quiet(epochs=1).fit(network(), LossOnly(), data())  # no validation: fine
    with pytest.raises(InvalidInputError, match="valid_data"):
        quiet(epochs=1).fit(network(), LossOnly(), data(), data(8, 1))


def test_validation_value_of_a_loss_task_is_the_mean_over_items() -> None:
    module = network()
    valid = data(10, seed=1)  # batches of 8 and 2
    history = quiet(epochs=1).fit(module, MSE, data(), valid).history_
    x, y = valid.tensors
    with torch.no_grad():
        expected = nn.functional.mse_loss(module(x), y).item()
    assert history[0]["valid"] == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------- EMA
class Two(nn.Module):
    """Two parameters; the loss ``mean(x @ w)`` has the constant gradient ``mean(x)``."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w


def test_ema_weights_equal_a_hand_computed_average() -> None:
    c = [0.5, -0.25]  # every item's x: the gradient of each step, exactly
    items = TensorDataset(torch.tensor([c] * 4), torch.zeros(4))
    trainer = Trainer(
        epochs=3, batch_size=2, optimizer=OptimizerSettings("sgd", lr=0.1, momentum=0.0),
        ema=0.75, precision="64-true", accelerator="cpu", progress=False,
    )  # fmt: skip
    task = LossTask(lambda out, _: out.mean())
    result = trainer.fit(Two(), task, items, items)
    weights = [[1.0 - 0.1 * s * c[0], -2.0 - 0.1 * s * c[1]] for s in range(1, 7)]
    average = weights[0]  # the average starts as the weights after the first step
    averages = [average]
    for w in weights[1:]:
        average = [0.75 * e + 0.25 * v for e, v in zip(average, w, strict=True)]
        averages.append(average)
    assert result.module.w.tolist() == pytest.approx(averages[-1], abs=1e-12)
    # validation (x = c, loss = c . w) watches the average at the end of each epoch
    expected = [c[0] * e[0] + c[1] * e[1] for e in averages[1::2]]
    assert [h["valid"] for h in result.history_] == pytest.approx(expected, abs=1e-12)
    without = Trainer(**{**trainer.__dict__, "ema": None}).fit(Two(), task, items)
    assert without.module.w.tolist() == pytest.approx(weights[-1], abs=1e-12)


# ------------------------------------------------------------------------ phases
class Snapshot(LossTask):
    """Mean squared error that keeps the module's state as its first step sees it."""

    def __init__(self) -> None:
        super().__init__(nn.functional.mse_loss)
        self.first: nn.Module | None = None

    def training_step(self, module: nn.Module, batch: Any) -> torch.Tensor:
        if self.first is None:
            self.first = copy.deepcopy(network())
            self.first.load_state_dict(module.state_dict())
        return super().training_step(module, batch)


def test_phases_freeze_exactly_the_named_parts() -> None:
    module = network()
    start = copy.deepcopy(module)
    tasks = {"one": MSE, "two": Snapshot()}
    phases = (Phase("one", epochs=2, frozen=("a",)), Phase("two", epochs=1, frozen=("b", "c")))
    history = quiet(phases=phases).fit(module, tasks, data()).history_
    middle = tasks["two"].first
    assert middle is not None
    # phase one: part a (weights and batch-norm statistics) untouched, b and c trained
    assert same(middle, start, "a.")
    assert not same(middle, start, "b.") and not same(middle, start, "c.")
    # phase two: b and c untouched, a trained (its batch norm in training mode again)
    assert same(module, middle, "b.") and same(module, middle, "c.")
    assert not same(module, middle, "a.0.") and not same(module, middle, "a.1.running_mean")
    assert all(p.requires_grad for p in module.parameters())  # flags given back
    assert [(h["phase"], h["epoch"]) for h in history] == [("one", 1), ("one", 2), ("two", 1)]


def test_phases_take_their_own_settings_or_the_trainers() -> None:
    trainer = quiet(
        epochs=3,
        optimizer=OptimizerSettings(lr=0.5),
        phases=(Phase("own", epochs=1, optimizer=OptimizerSettings(lr=0.25)), Phase("inherit")),
    )
    resolved = trainer.resolved_phases()
    assert [(p.epochs, p.optimizer.lr) for p in resolved] == [(1, 0.25), (3, 0.5)]  # type: ignore[union-attr]
    history = trainer.fit(network(), MSE, data()).history_
    assert [(h["phase"], h["lr"]) for h in history] == [("own", 0.25)] + [("inherit", 0.5)] * 3


def test_a_phase_must_leave_something_to_train() -> None:
    frozen_all = quiet(phases=(Phase("none", frozen=("a", "b", "c")),))
    with pytest.raises(InvalidInputError, match="frozen"):
        frozen_all.fit(network(), MSE, data())
    with pytest.raises(InvalidInputError, match="task"):
        quiet(phases=(Phase("one"),)).fit(network(), {"two": MSE}, data())


# ------------------------------------------------------------ history and seeds
def test_history_has_one_entry_per_epoch() -> None:
    result = quiet(epochs=3).fit(network(), MSE, data(), data(8, seed=1))
    assert [h["epoch"] for h in result.history_] == [1, 2, 3]
    for entry in result.history_:
        assert set(entry) == {"phase", "epoch", "lr", "train_loss", "valid", "time"}
        assert entry["time"] > 0 and math.isfinite(entry["train_loss"])
    losses = [h["train_loss"] for h in result.history_]
    assert losses[-1] < losses[0]
    assert not result.module.training  # handed back in eval mode


def test_seeded_runs_are_identical_and_leave_the_callers_generators_alone() -> None:
    def run(seed: int) -> tuple[nn.Module, list[float]]:
        module = network(dropout=0.3)  # dropout draws from the seeded generator
        history = quiet(epochs=2, seed=seed).fit(module, MSE, data(), data(8, 1)).history_
        return module, [h["train_loss"] for h in history] + [h["valid"] for h in history]

    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    first = run(0)
    after = torch.rand(2), np.random.rand(2), random.random()
    second = run(0)
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    expected = torch.rand(2), np.random.rand(2), random.random()
    assert same(first[0], second[0]) and first[1] == second[1]
    assert not same(first[0], run(1)[0])
    assert torch.equal(after[0], expected[0]) and np.array_equal(after[1], expected[1])
    assert after[2] == expected[2]


# ---------------------------------------------------------------------- progress
def test_progress_is_one_line_per_epoch_in_logs_and_nothing_when_quiet(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Trainer(epochs=2, batch_size=8, accelerator="cpu").fit(network(), MSE, data())
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["train 1/2", "train 2/2"]
    assert "train_loss" in lines[0] and "lr 0.001" in lines[0]
    quiet(epochs=2).fit(network(), MSE, data())
    assert capsys.readouterr().err == ""


def test_progress_draws_a_bar_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(True, stream)
    progress.start("train 1/1", 3)
    for step in (1, 2, 3):
        progress.step(torch.tensor(0.5 * step), step)
    progress.finish({"phase": "train", "epoch": 1, "train_loss": 0.25, "time": 1.0})
    shown = stream.getvalue()
    assert "train 1/1" in shown and "3/3" in shown and "train_loss 0.25" in shown


# ------------------------------------------------------------------ bad settings
@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: Trainer(epochs=0), "epochs"),
        (lambda: Trainer(ema=1.0), "ema"),
        (lambda: Trainer(precision="8-bit"), "precision"),
        (lambda: Trainer(phases=(Phase("x"), Phase("x"))), "phases"),
        (lambda: Schedule("linear"), "schedule"),
        (lambda: Schedule(interval="batch"), "interval"),
        (lambda: OptimizerSettings("lbfgs"), "optimizer"),
        (lambda: OptimizerSettings(betas=(0.9, 1.0)), "betas"),
        (lambda: EarlyStopping(mode="lowest"), "mode"),
        (lambda: Phase("x", frozen=(1,)), "frozen"),  # type: ignore[arg-type]
    ],
)
def test_bad_settings_say_which_argument(make: Any, argument: str) -> None:
    with pytest.raises(InvalidInputError, match=f"^{argument}: expected"):
        make()


def test_several_devices_need_torchrun() -> None:
    with pytest.raises(InvalidInputError, match="torchrun --nproc-per-node"):
        quiet(devices=2).fit(network(), MSE, data())


def test_too_few_items_for_a_full_batch() -> None:
    with pytest.raises(InvalidInputError, match="train_data"):
        quiet(drop_last=True).fit(network(), MSE, data(4))


def test_only_rank_zero_is_the_main_process(monkeypatch):
    from phototag.training import is_main_process

    monkeypatch.delenv("RANK", raising=False)
    assert is_main_process()
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()


def test_a_diverging_loss_stops_training_with_advice():
    import torch
    from torch.utils.data import TensorDataset

    from phototag.training import LossTask, OptimizerSettings, Trainer, TrainingDiverged

    x = torch.ones(8, 1)
    data = TensorDataset(x, torch.full((8, 1), float("inf")))
    trainer = Trainer(epochs=2, batch_size=4, optimizer=OptimizerSettings("sgd", lr=0.5),
                      accelerator="cpu", progress=False)  # fmt: skip
    with pytest.raises(TrainingDiverged, match=r"phase 'train', epoch 1.*lower the learning rate"):
        trainer.fit(torch.nn.Linear(1, 1), LossTask(torch.nn.functional.mse_loss), data)


def test_a_finite_loss_running_away_stops_training_unless_allowed():
    import torch
    from torch.utils.data import TensorDataset

    from phototag.training import LossTask, OptimizerSettings, Trainer, TrainingDiverged

    data = TensorDataset(torch.full((8, 1), 10.0), torch.zeros(8, 1))  # SGD at lr 1 overshoots
    settings = dict(epochs=2, batch_size=4, optimizer=OptimizerSettings("sgd", lr=1.0),
                    accelerator="cpu", progress=False)  # fmt: skip
    task = LossTask(torch.nn.functional.mse_loss)
    with pytest.raises(TrainingDiverged, match=r"epoch 1: the mean loss is .* times its first"):
        Trainer(**settings).fit(torch.nn.Linear(1, 1), task, data)
    result = Trainer(**settings, divergence=None).fit(torch.nn.Linear(1, 1), task, data)
    losses = [record["train_loss"] for record in result.history_]
    assert len(losses) == 2 and losses[1] > 1e6 * losses[0] > 0
