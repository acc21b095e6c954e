"""A Rich progress bar for Keras training, with one summary line per epoch."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fraudstream.models.backend import keras

_SHOWN = ("loss", "val_ap", "val_roc_auc", "val_card_precision")


class RichProgress(keras.callbacks.Callback):
    """Bar over the batches of each epoch; after each epoch, its loss and validation metrics.

    Updates the bar every ``every`` batches: a redraw per batch would cost more than a
    small network's training step.
    """

    def __init__(self, console: Console | None = None, every: int = 20, prefix: str = ""):
        super().__init__()
        self.console = console or Console(stderr=True)
        self.every = max(1, every)
        self.prefix = prefix
        self._progress: Progress | None = None
        self._task: Any = None
        self._pending = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[loss]}"),
            console=self.console,
            transient=True,
        )
        self._progress.start()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        assert self._progress is not None
        total = self.params.get("steps")
        epochs = self.params.get("epochs")
        self._task = self._progress.add_task(
            f"{self.prefix}epoch {epoch + 1}/{epochs}", total=total, loss=""
        )
        self._pending = 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._pending += 1
        if self._pending >= self.every and self._progress is not None:
            loss = (logs or {}).get("loss")
            self._progress.update(
                self._task,
                advance=self._pending,
                loss=f"loss {float(loss):.4f}" if loss is not None else "",
            )
            self._pending = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._progress is not None:
            self._progress.remove_task(self._task)
        logs = logs or {}
        shown = "  ".join(f"{k} {float(logs[k]):.4f}" for k in _SHOWN if k in logs)
        self.console.print(f"{self.prefix}epoch {epoch + 1}/{self.params.get('epochs')}  {shown}")

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
