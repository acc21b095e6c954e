"""Offline training: time split, class imbalance, best-epoch selection by validation AP.

The split follows the way a fraud model meets production: train on the past, leave a gap
as long as the label delay (frauds at the end of the training window are not known yet when
the model is built), validate on what follows. Every row of one day lands on one side only,
and the normaliser is fitted on training rows alone, so no validation information leaks.

Validation metrics are computed in numpy at the end of every epoch (exact AP, ROC AUC and
the handbook's card precision@k); the weights of the epoch with the best AP are kept.
"""

from __future__ import annotations

import inspect
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from fraudstream.config.model import ModelParams, SplitParams
from fraudstream.config.settings import MonitoringSettings
from fraudstream.features.reference import reference_from
from fraudstream.models import evaluation
from fraudstream.models.backend import keras
from fraudstream.models.builder import build_model, fraud_weight
from fraudstream.models.exceptions import TrainingDataInvalid
from fraudstream.models.scorer import Scorer

log = logging.getLogger(__name__)

DAY = pd.Timedelta(days=1)
DEFAULT_PSI_BINS = MonitoringSettings.model_fields["drift_psi_bins"].default
#: Reference rows the artifact carries for the score-mean detector. The same rows are
#: re-scored by each model served, so what moves their mean is the model, not the draw.
REFERENCE_SAMPLE_ROWS = 1_000


# -- the time split ------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeSplit:
    """Half-open event-time intervals: train ``[train_start, train_end)``, validation
    ``[valid_start, valid_end)``; the gap ``[train_end, valid_start)`` is used by neither."""

    train_start: pd.Timestamp
    train_end: pd.Timestamp
    valid_start: pd.Timestamp
    valid_end: pd.Timestamp

    def masks(self, timestamps: pd.Series | pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        ts = pd.DatetimeIndex(timestamps)
        train = np.asarray((ts >= self.train_start) & (ts < self.train_end))
        valid = np.asarray((ts >= self.valid_start) & (ts < self.valid_end))
        return train, valid

    def to_dict(self) -> dict[str, str]:
        return {name: getattr(self, name).isoformat() for name in
                ("train_start", "train_end", "valid_start", "valid_end")}


def time_split(timestamps: pd.Series | pd.DatetimeIndex, split: SplitParams) -> TimeSplit:
    """Cut at whole days from the first event's UTC midnight.

    ``train_days`` None takes two thirds of the calendar days the events touch (60 of 90),
    rounded down; ``validation_days`` None runs to the last event.
    """
    ts = pd.DatetimeIndex(timestamps)
    if ts.size == 0:
        raise TrainingDataInvalid("no events to split")
    start = ts.min().floor("D")
    last = ts.max()
    span_days = (last - start) / DAY
    train_days = split.train_days
    if train_days is None:
        calendar_days = (last.floor("D") - start) / DAY + 1  # days touched by the events
        train_days = max(1.0, math.floor(calendar_days * 2.0 / 3.0))
    train_end = start + pd.Timedelta(days=train_days)
    valid_start = train_end + pd.Timedelta(days=split.delay_days)
    if split.validation_days is None:
        valid_end = last + pd.Timedelta(microseconds=1)
    else:
        valid_end = valid_start + pd.Timedelta(days=split.validation_days)
    if valid_start > last:
        raise TrainingDataInvalid(
            f"the events span {span_days:.1f} days: too short for {train_days:g} training days "
            f"and a {split.delay_days:g}-day gap before validation"
        )
    return TimeSplit(start, train_end, valid_start, valid_end)


# -- data sets -----------------------------------------------------------------------------


@dataclass
class EvalSet:
    """Validation rows plus what card precision@k needs (customer and day of each row)."""

    X: np.ndarray
    y: np.ndarray
    customer_ids: np.ndarray | None = None
    days: np.ndarray | None = None

    def metrics(self, scores: np.ndarray, k: int) -> dict[str, float]:
        return evaluation.summarize(self.y, scores, self.customer_ids, self.days, k)


@dataclass
class Dataset:
    """Normalised train and validation matrices and where they came from."""

    X_train: np.ndarray
    y_train: np.ndarray
    valid: EvalSet
    feature_names: list[str]
    split: TimeSplit | None = None
    pipeline: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    X_reference: np.ndarray | None = None  # normalised rows for the PSI reference
    y_reference: np.ndarray | None = None  # their labels (NaN where unlabelled)

    def drift_reference(self, bins: int = DEFAULT_PSI_BINS) -> dict[str, Any]:
        """Histogram of each feature over the reference rows, for the daemon's PSI.

        Built from the normalised matrix because the daemon computes PSI on the rows it
        scores, which are normalised with the same fitted normaliser; a reference in raw
        units would make every feature look drifted. ``bins`` is
        ``monitoring.drift_psi_bins``. It carries a sample of the same rows, which the
        daemon re-scores with each model it serves (the baselines of the score-mean and
        log-loss detectors).
        """
        if self.X_reference is None:
            rows, labels = self.X_train, self.y_train
        else:
            rows, labels = self.X_reference, self.y_reference
        return reference_from(rows, bins, list(self.feature_names), sample=REFERENCE_SAMPLE_ROWS, labels=labels)


def _timestamps(column: pd.Series, epoch_unit: str = "s") -> pd.DatetimeIndex:
    if pd.api.types.is_datetime64_any_dtype(column):
        ts = pd.DatetimeIndex(column)
        return ts.tz_convert("UTC") if ts.tz is not None else ts.tz_localize("UTC")
    if pd.api.types.is_numeric_dtype(column):
        return pd.DatetimeIndex(pd.to_datetime(column, unit=epoch_unit, utc=True))
    return pd.DatetimeIndex(pd.to_datetime(column, utc=True, format="ISO8601"))


def prepare_dataset(
    events: pd.DataFrame,
    spec: Any,
    split: SplitParams,
    pipeline_factory: Callable[[Any], Any] | None = None,
) -> Dataset:
    """Features for every event (in time order, so windows see the full history), then the
    time split, the normaliser fitted on training rows, and the labelled rows of each side.

    ``pipeline_factory`` builds the feature pipeline from ``spec`` (default: the shared
    :class:`fraudstream.features.FeaturePipeline`).
    """
    if pipeline_factory is None:
        from fraudstream.features import FeaturePipeline

        pipeline_factory = FeaturePipeline
    fields = spec.fields
    for role in ("timestamp", "customer", "label"):
        if getattr(fields, role) not in events.columns:
            raise TrainingDataInvalid(f"the events have no {getattr(fields, role)!r} column ({role})")
    pipe = pipeline_factory(spec)
    dropped = 0
    if hasattr(pipe, "validate_many"):
        # Invalid events (the daemon would send them to the DLQ) are never trained on.
        ok = np.asarray(pipe.validate_many(events)) == ""
        dropped = int((~ok).sum())
        if dropped:
            events = events.loc[ok].reset_index(drop=True)
    ts = _timestamps(events[fields.timestamp], getattr(spec, "epoch_unit", "s"))
    if not ts.is_monotonic_increasing:
        order = np.argsort(ts.asi8, kind="stable")
        events = events.iloc[order].reset_index(drop=True)
        ts = ts[order]
    X_raw = np.asarray(pipe.transform_many(events))
    if X_raw.shape[0] != len(events):
        raise TrainingDataInvalid(f"{X_raw.shape[0]} feature rows for {len(events)} events")
    labels = pd.to_numeric(events[fields.label], errors="coerce").to_numpy(dtype=np.float64)
    labelled = np.isfinite(labels)
    cut = time_split(ts, split)
    train_mask, valid_mask = cut.masks(ts)
    train_mask &= labelled
    valid_mask &= labelled
    pipe.fit_normalizer(X_raw[train_mask])
    X_train = np.asarray(pipe.normalize(X_raw[train_mask]), dtype=np.float32)
    X_valid = np.asarray(pipe.normalize(X_raw[valid_mask]), dtype=np.float32)
    y_train = labels[train_mask].astype(np.float32)
    y_valid = labels[valid_mask].astype(np.float32)
    _check_side("training", y_train)
    _check_side("validation", y_valid)
    valid = EvalSet(
        X=X_valid,
        y=y_valid,
        customer_ids=events[fields.customer].to_numpy()[valid_mask].astype(str),
        days=evaluation.day_index(ts[valid_mask].tz_localize(None).to_numpy()),
    )
    info = {
        "events": int(len(events)),
        "invalid_events_dropped": dropped,
        "first_event": ts.min().isoformat(),
        "last_event": ts.max().isoformat(),
        "split": cut.to_dict(),
        "delay_days": split.delay_days,
        "train_rows": int(y_train.size),
        "train_frauds": int(y_train.sum()),
        "valid_rows": int(y_valid.size),
        "valid_frauds": int(y_valid.sum()),
    }
    # the reference sees nothing after the validation end: an artifact holds no information
    # from after the data it was built and judged on
    reference = _reference_rows(ts, spec.warmup_days(), before=cut.valid_end)
    info["drift_reference_rows"] = int(reference.sum())
    X_reference = np.asarray(pipe.normalize(X_raw[reference]), dtype=np.float32)
    return Dataset(X_train, y_train, valid, list(pipe.feature_names), cut, pipe, info, X_reference, labels[reference])


#: At least this many rows make the PSI reference, however short the history.
MIN_REFERENCE_ROWS = 1_000


def _reference_rows(ts: pd.DatetimeIndex, warmup_days: float, before: pd.Timestamp | None = None) -> np.ndarray:
    """Rows before ``before`` whose windows had the whole warm-up behind them: the
    distribution a daemon sees once its windows are full. The first ``warmup_days`` of a
    history hold windows still filling (a 30-day count is small on day 3), which would make
    every full window look drifted. A history shorter than that keeps its newest rows (the
    fullest windows). ``ts`` is sorted."""
    if not len(ts):
        return np.zeros(0, bool)
    usable = len(ts) if before is None else int(ts.searchsorted(pd.Timestamp(before), "left"))
    mask = np.zeros(len(ts), bool)
    mask[:usable] = np.asarray(ts[:usable] >= ts.min() + pd.Timedelta(days=warmup_days))
    if mask.sum() < min(MIN_REFERENCE_ROWS, usable):
        log.warning("the history (%.1f days) is shorter than the feature windows' warm-up (%g days): the drift "
                    "reference uses its newest rows, whose windows are not full yet",
                    (ts[usable - 1] - ts.min()) / pd.Timedelta(days=1), warmup_days)
        mask[:] = False
        mask[max(0, usable - max(MIN_REFERENCE_ROWS, usable // 4)):usable] = True
    return mask


def _check_side(name: str, y: np.ndarray) -> None:
    if y.size == 0:
        raise TrainingDataInvalid(f"no labelled {name} rows")
    if not 0 < y.sum() < y.size:
        raise TrainingDataInvalid(f"the {name} rows hold a single class ({int(y.sum())} frauds)")


# -- callbacks -----------------------------------------------------------------------------


class ValidationMetrics(keras.callbacks.Callback):
    """Adds ``val_ap``, ``val_roc_auc`` and ``val_card_precision`` to each epoch's logs.

    Place it before any callback that reads those names (early stopping, checkpointing,
    KerasTuner's objective): Keras hands every callback the same logs dict, in list order.
    """

    def __init__(self, valid: EvalSet, k: int = 100):
        super().__init__()
        self.valid = valid
        self.k = k

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        scores = Scorer(self.model).score_many(self.valid.X)
        if not np.all(np.isfinite(scores)):
            logs.update(val_ap=0.0, val_roc_auc=0.0, val_card_precision=0.0)
            return
        m = self.valid.metrics(scores, self.k)
        logs["val_ap"] = m["average_precision"]
        logs["val_roc_auc"] = m["roc_auc"]
        if f"card_precision_at_{self.k}" in m:
            logs["val_card_precision"] = m[f"card_precision_at_{self.k}"]


class BestEpoch(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the best ``monitor`` value and restores them when
    training ends (the in-memory equivalent of ``ModelCheckpoint(save_best_only=True)``)."""

    def __init__(self, monitor: str = "val_ap"):
        super().__init__()
        self.monitor = monitor
        self.best_value = -math.inf
        self.best_epoch: int | None = None
        self.best_logs: dict[str, float] = {}
        self._weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is not None and np.isfinite(value) and value > self.best_value:
            self.best_value = float(value)
            self.best_epoch = epoch
            self.best_logs = {k: float(v) for k, v in (logs or {}).items()}
            self._weights = [np.array(w, copy=True) for w in self.model.get_weights()]

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._weights is not None:
            self.model.set_weights(self._weights)


# -- fitting -------------------------------------------------------------------------------


@dataclass
class FitResult:
    model: keras.Model
    best_epoch: int
    epochs_run: int
    metrics: dict[str, float]
    history: dict[str, list[float]]


def imbalance_fit_args(
    params: ModelParams, X: np.ndarray, y: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[int, float] | None]:
    """Apply the class-imbalance policy: class weights, or repeated fraud rows."""
    weight = fraud_weight(params, y)
    if params.imbalance == "class_weight":
        return X, y, {0: 1.0, 1: weight}
    if params.imbalance == "oversample":
        repeats = max(1, int(round(weight)))
        frauds = np.flatnonzero(y > 0.5)
        extra = np.repeat(frauds, repeats - 1)
        index = np.concatenate([np.arange(y.size), extra])
        np.random.default_rng(seed).shuffle(index)
        return X[index], y[index], None
    return X, y, None


def fit_model(
    params: ModelParams,
    X_train: np.ndarray,
    y_train: np.ndarray,
    valid: EvalSet,
    *,
    seed: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    model: keras.Model | None = None,
) -> FitResult:
    """Train from scratch (or continue ``model``) and return the best epoch's model.

    Determinism: ``keras.utils.set_random_seed(seed)`` seeds Python, numpy and TensorFlow
    (batch shuffling) before the model is built.
    """
    seed = params.seed if seed is None else seed
    keras.utils.set_random_seed(seed)
    if model is None:
        model = build_model(params, X_train.shape[1], seed)
    X, y, class_weight = imbalance_fit_args(params, X_train, y_train, seed)
    best = BestEpoch("val_ap")
    cbs: list[keras.callbacks.Callback] = [ValidationMetrics(valid, params.top_k), best]
    if params.early_stopping_patience > 0:
        cbs.append(
            keras.callbacks.EarlyStopping(
                monitor="val_ap", mode="max", patience=params.early_stopping_patience
            )
        )
    cbs.extend(callbacks)
    history = model.fit(
        X,
        y,
        batch_size=params.batch_size,
        epochs=params.epochs,
        class_weight=class_weight,
        shuffle=True,
        callbacks=cbs,
        verbose=0,
    )
    if best.best_epoch is None:
        raise TrainingDataInvalid("no epoch produced a finite validation AP (diverged?)")
    scores = Scorer(model).score_many(valid.X)
    metrics = valid.metrics(scores, params.top_k)
    return FitResult(
        model=model,
        best_epoch=best.best_epoch,
        epochs_run=len(history.epoch),
        metrics=metrics,
        history={k: [float(v) for v in vals] for k, vals in history.history.items()},
    )


def feature_state_of(pipeline: Any) -> dict[str, Any]:
    """The feature state an artifact carries: spec, counters and fitted normaliser.

    Per-entity window contents are left out: they describe the training period's customers
    at its end, which a daemon starting on live traffic must build up from its own events.
    """
    if "include_windows" in inspect.signature(pipeline.state_dict).parameters:
        return pipeline.state_dict(include_windows=False)
    return pipeline.state_dict()


# -- the train command ---------------------------------------------------------------------


@dataclass
class TrainReport:
    artifact: Path
    metrics: dict[str, float]
    best_epoch: int
    epochs_run: int
    data: dict[str, Any]


def train_offline(
    events: pd.DataFrame,
    settings: Any,
    out: Path,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    overwrite: bool = False,
    pipeline_factory: Callable[[Any], Any] | None = None,
) -> TrainReport:
    """Features, split, fit, then save the artifact; what ``fraudstream train`` runs."""
    from fraudstream.models.artifact import save_artifact

    params: ModelParams = settings.model
    data = prepare_dataset(events, settings.features, params.split, pipeline_factory)
    result = fit_model(params, data.X_train, data.y_train, data.valid, callbacks=callbacks)
    info = dict(data.info, best_epoch=result.best_epoch + 1, epochs_run=result.epochs_run)
    save_artifact(
        out,
        result.model,
        params=params,
        feature_spec=settings.features,
        feature_state=feature_state_of(data.pipeline),
        feature_names=data.feature_names,
        metrics=result.metrics,
        data=info,
        drift_reference=data.drift_reference(settings.monitoring.drift_psi_bins),
        extra={"history": result.history},
        overwrite=overwrite,
    )
    return TrainReport(out, result.metrics, result.best_epoch, result.epochs_run, info)
