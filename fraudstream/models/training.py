"""Offline training: time split, class imbalance, best-epoch selection by validation AP.

The split follows the way a fraud model meets production: train on the past, leave a gap
as long as the label delay (frauds at the end of the training window are not known yet when
the model is built), validate on what follows. Every row of one day lands on one side only,
and the normaliser is fitted on training rows alone, so no validation information leaks.

Validation metrics are computed in numpy at the end of every epoch (exact AP, ROC AUC and
the handbook's card precision@k); the weights of the epoch with the best AP are kept.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import shutil
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
from fraudstream.models.epochs import EpochState, TrainingCheckpoint, epoch_order, training_dir
from fraudstream.models.exceptions import ArtifactExists, ArtifactInvalid, TrainingDataInvalid
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
    fit_normalizer: bool = True,
) -> Dataset:
    """Features for every event (in time order, so windows see the full history), then the
    time split, the normaliser fitted on training rows, and the labelled rows of each side.

    ``pipeline_factory`` builds the feature pipeline from ``spec`` (default: the shared
    :class:`fraudstream.features.FeaturePipeline`). ``fit_normalizer=False`` keeps the
    normaliser the factory's pipeline already holds (training continued from an artifact).
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
    if fit_normalizer:
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


# -- fitting -------------------------------------------------------------------------------


@dataclass
class FitResult:
    model: keras.Model
    best_epoch: int
    epochs_run: int
    metrics: dict[str, float]
    history: dict[str, list[float]]
    resumed_after: int = 0  # epochs restored from a checkpoint instead of trained by this call


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
    checkpoint: TrainingCheckpoint | None = None,
) -> FitResult:
    """Train from scratch (or continue ``model``) and return the best epoch's model.

    One ``fit`` call per epoch, on the rows in :func:`epoch_order` (a function of the seed
    and the epoch), so that the state after any epoch determines the rest of the run: with
    ``checkpoint``, each epoch's state is written down and a run started again resumes after
    the last finished epoch, on the same batches. The best epoch by validation AP is kept
    and its weights restored at the end; early stopping watches the same value.

    Determinism: ``keras.utils.set_random_seed(seed)`` seeds the initialisers and dropout
    before the model is built.
    """
    seed = params.seed if seed is None else seed
    keras.utils.set_random_seed(seed)
    if model is None:
        model = build_model(params, X_train.shape[1], seed)
    X, y, class_weight = imbalance_fit_args(params, X_train, y_train, seed)
    state, best_weights = EpochState(), None
    if checkpoint is not None:
        resumed = checkpoint.load(model)
        if resumed is not None:
            state, best_weights = resumed
    resumed_after = state.epochs_done
    cbs: list[keras.callbacks.Callback] = [ValidationMetrics(valid, params.top_k), *callbacks, _StopAfterOneEpoch()]
    for epoch in range(state.epochs_done, params.epochs):
        if state.patience_exhausted(params.early_stopping_patience):
            break
        order = epoch_order(seed, epoch, y.size)
        history = model.fit(
            X[order],
            y[order],
            batch_size=params.batch_size,
            epochs=params.epochs,  # the callbacks show "epoch e/E"; _StopAfterOneEpoch ends the call
            initial_epoch=epoch,
            class_weight=class_weight,
            shuffle=False,
            callbacks=cbs,
            verbose=0,
        )
        improved = state.record(epoch, {k: float(v[-1]) for k, v in history.history.items()})
        if improved:
            best_weights = [np.array(w, copy=True) for w in model.get_weights()]
        if checkpoint is not None:
            checkpoint.save(model, state, best_weights, improved)
    if state.best_epoch is None or best_weights is None:
        raise TrainingDataInvalid("no epoch produced a finite validation AP (diverged?)")
    model.set_weights(best_weights)
    scores = Scorer(model).score_many(valid.X)
    metrics = valid.metrics(scores, params.top_k)
    return FitResult(
        model=model,
        best_epoch=state.best_epoch,
        epochs_run=state.epochs_done,
        metrics=metrics,
        history=state.history,
        resumed_after=resumed_after,
    )


class _StopAfterOneEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.model.stop_training = True


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
    resumed_after: int = 0  # epochs a previous, interrupted run had finished
    initial_metrics: dict[str, float] | None = None  # the starting artifact on this validation


#: What a run continued from an artifact takes from the configuration rather than from the
#: artifact: how this run trains and is judged. Everything else (architecture, optimiser and
#: its learning rate) is the artifact's, since its weights and optimiser state depend on it.
RUN_FIELDS = ("epochs", "batch_size", "early_stopping_patience", "imbalance", "fraud_weight", "top_k", "seed", "split")


def spec_differences(artifact_spec: dict[str, Any], config_spec: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths where two feature specs (as JSON data) differ."""
    out = []
    for key in sorted(set(artifact_spec) | set(config_spec)):
        a, c = artifact_spec.get(key), config_spec.get(key)
        if isinstance(a, dict) and isinstance(c, dict):
            out += spec_differences(a, c, f"{prefix}{key}.")
        elif a != c:
            out.append(f"{prefix}{key} (artifact {json.dumps(a)}, config {json.dumps(c)})")
    return out


def _lineage(parent: Any, initial: dict[str, float]) -> list[dict[str, Any]]:
    """The artifact's ancestry, oldest first, ending with the artifact it continued."""
    meta = parent.metadata
    return list(meta.get("lineage", [])) + [{
        "model_version": meta.get("model_version"),
        "path": str(parent.path),
        "created_at": meta.get("created_at"),
        "first_event": meta.get("data", {}).get("first_event"),
        "last_event": meta.get("data", {}).get("last_event"),
        "metrics": meta.get("metrics", {}),
        "metrics_on_new_validation": initial,
    }]


def _run_fingerprint(params: ModelParams, data: Dataset, parent_version: str | None) -> str:
    """Identity of a training run, for resuming: the same data, settings and start point.
    ``epochs`` is left out so that a resumed run may be given more of them."""
    blob = json.dumps({
        "params": params.model_dump(mode="json", exclude={"epochs", "tuning"}),
        "train": [list(data.X_train.shape), float(data.X_train.sum(dtype=np.float64)), float(data.y_train.sum())],
        "valid": [list(data.valid.X.shape), float(data.valid.y.sum())],
        "features": data.feature_names,
        "parent": parent_version,
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def train_offline(
    events: pd.DataFrame,
    settings: Any,
    out: Path,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    overwrite: bool = False,
    pipeline_factory: Callable[[Any], Any] | None = None,
    init_from: Path | None = None,
    restart: bool = False,
) -> TrainReport:
    """Features, split, fit, then save the artifact; what ``fraudstream train`` runs.

    ``init_from``: continue that artifact's model (weights and optimiser state) on these
    events, keeping its feature spec and fitted normaliser; the feature spec of ``settings``
    must be the artifact's. Every epoch's state is kept in :func:`training_dir` of ``out``
    (and the best epoch's artifact in its ``best/``) until the artifact is saved, so a run
    killed mid-way and started again resumes after its last finished epoch; ``restart``
    discards such a state instead.
    """
    from fraudstream.models.artifact import load_artifact, save_artifact

    out = Path(out)
    if out.exists() and not overwrite:
        raise ArtifactExists(out)  # before the training, not after it
    params: ModelParams = settings.model
    parent = None
    if init_from is not None:
        parent = load_artifact(init_from)
        differ = spec_differences(parent.feature_spec, settings.features.model_dump(mode="json"))
        if differ:
            raise ArtifactInvalid(init_from, "incompatible",
                                  f"its feature spec differs from the config's: {'; '.join(differ)}")
        params = parent.params.model_copy(update={name: getattr(params, name) for name in RUN_FIELDS})
        # The weights were learned on inputs scaled by the artifact's normaliser: refitting it
        # on the new rows would move every input under them (and the daemon keeps it too).
        pipeline_factory = lambda spec: parent.feature_pipeline()  # noqa: E731
    data = prepare_dataset(events, settings.features, params.split, pipeline_factory,
                           fit_normalizer=parent is None)
    reference = data.drift_reference(settings.monitoring.drift_psi_bins)
    feature_state = feature_state_of(data.pipeline)
    initial = None
    extra: dict[str, Any] = {}
    if parent is not None:
        initial = data.valid.metrics(Scorer(parent.model).score_many(data.valid.X), params.top_k)
        extra["lineage"] = _lineage(parent, initial)

    def save(model: keras.Model, path: Path, metrics: dict[str, float], info: dict[str, Any],
             more: dict[str, Any]) -> None:
        save_artifact(path, model, params=params, feature_spec=settings.features, feature_state=feature_state,
                      feature_names=data.feature_names, metrics=metrics, data=info, drift_reference=reference,
                      extra={**extra, **more}, overwrite=True)

    state_dir = training_dir(out)
    if restart:
        shutil.rmtree(state_dir, ignore_errors=True)

    def save_best(model: keras.Model) -> None:
        metrics = data.valid.metrics(Scorer(model).score_many(data.valid.X), params.top_k)
        save(model, state_dir / "best", metrics, dict(data.info, partial=True), {})

    checkpoint = TrainingCheckpoint(state_dir, _run_fingerprint(params, data, parent and parent.model_version),
                                    on_best=save_best)
    result = fit_model(params, data.X_train, data.y_train, data.valid, callbacks=callbacks,
                       model=None if parent is None else parent.model, checkpoint=checkpoint)
    info = dict(data.info, best_epoch=result.best_epoch + 1, epochs_run=result.epochs_run)
    if initial is not None:
        info["initial_metrics"] = initial
    if out.exists() and not overwrite:
        raise ArtifactExists(out)
    save(result.model, out, result.metrics, info, {"history": result.history})
    checkpoint.discard()
    return TrainReport(out, result.metrics, result.best_epoch, result.epochs_run, info, result.resumed_after, initial)
