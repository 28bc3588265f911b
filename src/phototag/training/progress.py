"""Training progress on stderr: a tqdm bar per epoch on a terminal, one line per epoch in
logs (when the stream is not a terminal), nothing when quiet."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import SupportsFloat, TextIO

from tqdm import tqdm

#: Steps between refreshes of the running loss shown on a terminal's bar.
LOSS_REFRESH = 25


def describe(record: Mapping[str, object]) -> str:
    """``train_loss 0.1234, lr 0.001, valid 0.5, 1.2 s`` from a `history_` entry."""
    shown = []
    for key, value in record.items():
        if key in ("phase", "epoch"):
            continue
        if key == "time":
            shown.append(f"{value:.1f} s")
        elif isinstance(value, float):
            shown.append(f"{key} {value:.4g}")
    return ", ".join(shown)


class Progress:
    """Progress of one process (only rank 0 shows any)."""

    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.bar_mode = enabled and self.stream.isatty()
        self._bar: tqdm | None = None
        self._label = ""

    def start(self, label: str, steps: int) -> None:
        """An epoch of `steps` optimizer steps begins."""
        self._label = label
        if self.bar_mode:
            self._bar = tqdm(total=steps, desc=label, file=self.stream, unit="step", leave=True)

    def step(self, loss_sum: SupportsFloat, steps: int) -> None:
        """Step `steps` of the epoch done, its losses summing to `loss_sum` (read only when
        a bar shows the running mean, so logs cost no device synchronisation)."""
        if self._bar is None:
            return
        self._bar.update(1)
        if self._bar.n % LOSS_REFRESH == 0:
            self._bar.set_postfix_str(f"loss {float(loss_sum) / steps:.4g}", refresh=False)

    def finish(self, record: Mapping[str, object]) -> None:
        """The epoch's `history_` entry: the bar's last words, or a line of its own."""
        text = describe(record)
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.close()
            self._bar = None
        elif self.enabled:
            print(f"{self._label}: {text}", file=self.stream, flush=True)
