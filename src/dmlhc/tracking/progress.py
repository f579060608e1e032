"""Training progress (``callbacks/progress.yaml``): on a terminal, Lightning's bars with the epoch count out of
``max_epochs``; without one (a log file, a batch job, a pipe), one line per epoch instead of redrawn bars."""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar


class EpochProgressBar(TQDMProgressBar):
    """``lines``: None (default) picks bars when stdout is a terminal, lines otherwise; True or False forces."""

    def __init__(self, lines: bool | None = None, refresh_rate: int = 1):
        super().__init__(refresh_rate=refresh_rate)
        self.lines = not sys.stdout.isatty() if lines is None else bool(lines)
        self._epoch_start = 0.0
        if self.lines:
            self.disable()  # the bars are never drawn; hooks below print the lines

    def enable(self) -> None:
        if not self.lines:
            super().enable()

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self._epoch_start = time.monotonic()
        if not self.lines:
            self.train_progress_bar.set_description(f"Epoch {epoch_of(trainer)}")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.lines and trainer.is_global_zero and not trainer.sanity_checking:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                       if k.startswith(("train/", "val/")) and "class" not in k and v.numel() == 1}
            shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
            print(f"epoch {epoch_of(trainer)}: {shown}  ({time.monotonic() - self._epoch_start:.1f} s)", flush=True)


def epoch_of(trainer: pl.Trainer) -> str:
    """``"3/150"``: the epoch under way (from 1) out of ``max_epochs`` (just the count when there is no maximum)."""
    maximum = trainer.max_epochs
    return f"{trainer.current_epoch + 1}/{maximum}" if maximum and maximum > 0 else str(trainer.current_epoch + 1)


def without_disabled_progress(callbacks: list, enable_progress_bar: bool) -> list:
    """The callbacks for a Trainer; its ``enable_progress_bar=False`` (no progress at all) drops progress bars,
    which Lightning would otherwise refuse."""
    return [c for c in callbacks if enable_progress_bar or not isinstance(c, ProgressBar)]
