"""Per-epoch training checkpoints: what makes a killed ``fraudstream train`` resumable.

After every epoch the whole training state goes to a directory next to the artifact
(``OUT.training/``): every model variable (weights and the dropout layers' seed-generator
states), every optimiser variable (step count, moments), the weights of the best epoch so
far, and the loop's own state (epochs done, history, best epoch). The order of the rows in
epoch ``e`` depends only on ``(seed, e)`` (:func:`epoch_order`), so a run resumed after
epoch ``e`` trains epoch ``e + 1`` on the same batches as an uninterrupted run would.

Writing, in this order, so a crash at any point leaves the previous epoch's state whole:

1. ``epoch-NNNN.npz`` under a temporary name, fsynced, renamed;
2. ``state.json`` (which names that file) the same way: its rename is the commit;
3. the files of earlier epochs are deleted.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fraudstream.durable import fsync_path, write_json
from fraudstream.models.backend import keras
from fraudstream.models.exceptions import TrainingResumeInvalid

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
STATE_FILE = "state.json"


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The row order of one epoch: a function of the seed and the epoch number only."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def training_dir(out: Path | str) -> Path:
    """Where the training state of the artifact ``out`` lives while it is trained."""
    out = Path(out)
    return out.with_name(out.name + ".training")


@dataclass
class EpochState:
    """The loop's state after ``epochs_done`` epochs (everything but the variables)."""

    epochs_done: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int | None = None  # 0-based
    best_value: float = -math.inf
    best_logs: dict[str, float] = field(default_factory=dict)

    def record(self, epoch: int, logs: dict[str, float], monitor: str = "val_ap") -> bool:
        """Add one finished epoch; True when it is the best so far (by ``monitor``)."""
        for name, value in logs.items():
            self.history.setdefault(name, []).append(float(value))
        self.epochs_done = epoch + 1
        value = logs.get(monitor)
        if value is not None and np.isfinite(value) and value > self.best_value:
            self.best_value, self.best_epoch, self.best_logs = float(value), epoch, dict(logs)
            return True
        return False

    def patience_exhausted(self, patience: int) -> bool:
        """Early stopping: ``patience`` epochs in a row without a better value (0 = never)."""
        if patience <= 0 or self.epochs_done == 0:
            return False
        since = self.epochs_done - 1 - (-1 if self.best_epoch is None else self.best_epoch)
        return since >= patience


def _variables(model: keras.Model) -> tuple[list[Any], list[Any]]:
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    return list(model.variables), list(optimizer.variables)


class TrainingCheckpoint:
    """The per-epoch state of one training run, in ``directory``.

    ``fingerprint`` names the run (data, parameters, starting artifact): a directory left by
    another run is refused rather than resumed. ``on_best(model)`` is called whenever an epoch
    is the best so far, with that epoch's weights in the model; ``train`` saves an artifact
    there, so the best model found is usable even if the run never finishes.
    """

    def __init__(self, directory: Path | str, fingerprint: str,
                 on_best: Callable[[keras.Model], None] | None = None):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.on_best = on_best

    def load(self, model: keras.Model) -> tuple[EpochState, list[np.ndarray] | None] | None:
        """Restore the last finished epoch into ``model``; None when there is none."""
        state_path = self.directory / STATE_FILE
        if not state_path.is_file():
            return None
        try:
            saved = json.loads(state_path.read_text())
        except ValueError as exc:
            raise TrainingResumeInvalid(f"{state_path} is unreadable ({exc}); delete {self.directory} to start afresh") from exc
        if saved.get("schema_version") != SCHEMA_VERSION or saved.get("fingerprint") != self.fingerprint:
            raise TrainingResumeInvalid(
                f"{self.directory} holds a training run over other data or settings; "
                "rerun with --restart to discard it, or choose another --out"
            )
        model_vars, opt_vars = _variables(model)
        with np.load(self.directory / saved["arrays"], allow_pickle=False) as arrays:
            values = [arrays[f"m{i}"] for i in range(saved["n_model"])]
            opt_values = [arrays[f"o{i}"] for i in range(saved["n_optimizer"])]
            best = [arrays[f"b{i}"] for i in range(saved["n_best"])] if saved["n_best"] else None
        if len(values) != len(model_vars) or len(opt_values) != len(opt_vars):
            raise TrainingResumeInvalid(f"{self.directory}: the saved variables do not fit the model")
        for var, value in zip(model_vars + opt_vars, values + opt_values):
            var.assign(value)
        state = EpochState(**saved["loop"])
        log.info("resuming training from %s after epoch %d", self.directory, state.epochs_done)
        return state, best

    def save(self, model: keras.Model, state: EpochState, best_weights: list[np.ndarray] | None,
             improved: bool) -> None:
        """Record a finished epoch (steps in the module docstring)."""
        if improved and self.on_best is not None:
            self.on_best(model)
        self.directory.mkdir(parents=True, exist_ok=True)
        model_vars, opt_vars = _variables(model)
        arrays = {f"m{i}": np.asarray(v.numpy()) for i, v in enumerate(model_vars)}
        arrays.update({f"o{i}": np.asarray(v.numpy()) for i, v in enumerate(opt_vars)})
        arrays.update({f"b{i}": w for i, w in enumerate(best_weights or [])})
        name = f"epoch-{state.epochs_done:04d}.npz"
        # 1. the arrays
        tmp = self.directory / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.directory / name)
        # 2. the state that names them: the commit point
        saved = {
            "schema_version": SCHEMA_VERSION,
            "fingerprint": self.fingerprint,
            "arrays": name,
            "n_model": len(model_vars),
            "n_optimizer": len(opt_vars),
            "n_best": len(best_weights or []),
            "loop": asdict(state),
        }
        write_json(self.directory / STATE_FILE, saved)
        fsync_path(self.directory)
        # 3. older epochs
        for old in self.directory.glob("epoch-*.npz"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def discard(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
