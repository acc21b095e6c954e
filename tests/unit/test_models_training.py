"""Offline training on synthetic data: time split, leakage, imbalance, best epoch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import keras

from fraudstream.config.features import FeatureSpec
from fraudstream.config.model import ModelParams, SplitParams
from fraudstream.models.builder import build_model
from fraudstream.models.evaluation import average_precision
from fraudstream.models.exceptions import TrainingDataInvalid
from fraudstream.models.epochs import EpochState
from fraudstream.models.training import (
    EvalSet,
    fit_model,
    imbalance_fit_args,
    prepare_dataset,
    time_split,
)

DAY = pd.Timedelta(days=1)


def synthetic_events(days=90, per_day=200, seed=0):
    """Events whose label depends on the amount; timestamps shuffled (not sorted)."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    start = pd.Timestamp("2026-01-01T00:00:00Z")
    ts = start + pd.to_timedelta(rng.uniform(0, days, n), unit="D")
    amount = rng.lognormal(3, 1, n)
    label = (rng.random(n) < 1 / (1 + np.exp(-(amount / 40 - 6)))).astype(float)
    label[:3] = 1.0
    frame = pd.DataFrame({
        "transaction_id": [f"t{i}" for i in range(n)],
        "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "customer_id": rng.integers(0, 300, n).astype(str),
        "terminal_id": rng.integers(0, 50, n).astype(str),
        "amount": amount,
        "label": label,
    })
    frame.loc[5:20, "label"] = np.nan  # not yet labelled
    return frame


class RecordingPipeline:
    """Stand-in feature pipeline that records what it was fitted on."""

    def __init__(self, spec):
        self.spec = spec
        self.feature_names = ["amount", "epoch_days"]
        self.fitted_on = None

    def transform_many(self, frame):
        ts = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
        return np.c_[frame["amount"].to_numpy(), (ts - pd.Timestamp("2026-01-01", tz="UTC")) / DAY]

    def fit_normalizer(self, X):
        self.fitted_on = X.copy()
        self.mean, self.std = X.mean(0), X.std(0) + 1e-9

    def normalize(self, X):
        return ((X - self.mean) / self.std).astype(np.float32)

    def state_dict(self):
        return {"mean": self.mean, "std": self.std}


def test_time_split_defaults_and_explicit():
    ts = pd.DatetimeIndex(pd.date_range("2026-01-01 00:10", "2026-03-31 23:00", freq="h", tz="UTC"))
    cut = time_split(ts, SplitParams())
    assert cut.train_start == pd.Timestamp("2026-01-01", tz="UTC")
    assert (cut.train_end - cut.train_start) == 60 * DAY
    assert (cut.valid_start - cut.train_end) == 7 * DAY
    train, valid = cut.masks(ts)
    assert not np.any(train & valid)
    assert ts[valid].min() >= ts[train].max() + 7 * DAY - pd.Timedelta(hours=1)
    assert ts[valid].max() == ts.max()
    cut = time_split(ts, SplitParams(train_days=30, delay_days=3, validation_days=10))
    train, valid = cut.masks(ts)
    assert ts[train].max() < pd.Timestamp("2026-01-31", tz="UTC")
    assert ts[valid].min() >= pd.Timestamp("2026-02-03", tz="UTC")
    assert ts[valid].max() < pd.Timestamp("2026-02-13", tz="UTC")
    with pytest.raises(TrainingDataInvalid):
        time_split(ts, SplitParams(train_days=85, delay_days=7))


def test_prepare_dataset_has_no_leakage():
    events = synthetic_events()
    pipes = []

    def factory(spec):
        pipes.append(RecordingPipeline(spec))
        return pipes[-1]

    data = prepare_dataset(events, FeatureSpec(), SplitParams(), factory)
    pipe = pipes[0]
    day_of_row_train = pipe.fitted_on[:, 1]
    assert day_of_row_train.max() < 60  # normaliser saw training days only
    assert pipe.fitted_on.shape[0] == data.X_train.shape[0] == data.y_train.size
    # validation rows come from day 67 on, and rows stay aligned with their labels
    valid_days = data.valid.X[:, 1] * pipe.std[1] + pipe.mean[1]
    assert valid_days.min() >= 67
    assert data.info["valid_rows"] + data.info["train_rows"] < len(events) - 16
    assert data.valid.days.max() - data.valid.days.min() == 22
    labelled = events.dropna(subset=["label"])
    ts = pd.to_datetime(labelled["timestamp"], utc=True, format="ISO8601")
    in_valid = ts >= pd.Timestamp("2026-03-09", tz="UTC")
    assert data.y_train.sum() + data.valid.y.sum() == labelled["label"][(ts < pd.Timestamp("2026-03-02", tz="UTC")) | in_valid].sum()
    assert data.valid.y.sum() == labelled["label"][in_valid].sum()
    assert data.X_train.dtype == np.float32


def test_the_drift_reference_skips_the_windows_warm_up():
    events = synthetic_events()  # 90 days from 2026-01-01
    pipes = []
    data = prepare_dataset(events, FeatureSpec(), SplitParams(), lambda spec: pipes.append(RecordingPipeline(spec)) or pipes[-1])
    pipe = pipes[0]
    days = data.X_reference[:, 1] * pipe.std[1] + pipe.mean[1]
    assert FeatureSpec().warmup_days() == 37.0  # 30-day label window + 7 days of delay
    assert 37 <= days.min() < 37.1 and days.max() > 89  # every row after the warm-up, labelled or not
    assert data.info["drift_reference_rows"] == days.size
    reference = data.drift_reference()
    assert [f["name"] for f in reference["features"]] == ["amount", "epoch_days"]
    assert reference["rows"] == days.size

    short = prepare_dataset(synthetic_events(days=30), FeatureSpec(), SplitParams(train_days=15, delay_days=5),
                            lambda spec: pipes.append(RecordingPipeline(spec)) or pipes[-1])
    # shorter than the warm-up: the newest quarter of its rows
    assert short.info["drift_reference_rows"] == 30 * 200 // 4


def test_an_artifact_sees_nothing_after_its_validation_end():
    """Drift reference, normaliser and validation metrics come from rows before the
    validation end only, however much history follows it."""
    events = synthetic_events()  # 90 days from 2026-01-01
    pipes = []
    split = SplitParams(train_days=45, delay_days=7, validation_days=14)  # validation ends on day 66
    data = prepare_dataset(events, FeatureSpec(), split, lambda spec: pipes.append(RecordingPipeline(spec)) or pipes[-1])
    pipe = pipes[0]
    assert data.split.valid_end == pd.Timestamp("2026-03-08", tz="UTC")
    reference_days = data.X_reference[:, 1] * pipe.std[1] + pipe.mean[1]
    assert 37 <= reference_days.min() and reference_days.max() < 66
    assert pipe.fitted_on[:, 1].max() < 45
    valid_days = data.valid.X[:, 1] * pipe.std[1] + pipe.mean[1]
    assert valid_days.min() >= 52 and valid_days.max() < 66
    # the sample the score-mean and log-loss detectors re-score: labelled reference rows
    reference = data.drift_reference()
    sample = np.asarray(reference["sample"])
    assert len(sample) == min(1_000, len(data.X_reference)) == len(reference["sample_labels"])
    sample_days = sample[:, 1] * pipe.std[1] + pipe.mean[1]
    assert 37 <= sample_days.min() and sample_days.max() < 66
    assert set(reference["sample_labels"]) <= {0, 1}


def test_prepare_dataset_with_the_real_feature_pipeline():
    features = pytest.importorskip("fraudstream.features")
    events = synthetic_events(days=30, per_day=60)
    data = prepare_dataset(events, FeatureSpec(), SplitParams(train_days=15, delay_days=5), None)
    assert data.X_train.shape[1] == len(data.feature_names) == features.FeaturePipeline().n_features
    assert np.all(np.isfinite(data.X_train)) and np.all(np.isfinite(data.valid.X))
    assert abs(float(data.X_train.mean())) < 0.5


def test_imbalance_policies():
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.array([0] * 8 + [1, 1], dtype=np.float32)
    Xo, yo, cw = imbalance_fit_args(ModelParams(imbalance="oversample", fraud_weight=None), X, y, seed=0)
    assert cw is None and yo.size == 8 + 2 * 4 and yo.sum() == 8
    assert set(map(tuple, Xo[yo == 1])) == {tuple(X[8]), tuple(X[9])}
    _, _, cw = imbalance_fit_args(ModelParams(imbalance="class_weight", fraud_weight=None), X, y, seed=0)
    assert cw == {0: 1.0, 1: 4.0}
    _, _, cw = imbalance_fit_args(ModelParams(imbalance="class_weight"), X, y, seed=0)
    assert cw == {0: 1.0, 1: 10.0}  # the default weight
    _, _, cw = imbalance_fit_args(ModelParams(imbalance="class_weight", fraud_weight=2.5), X, y, 0)
    assert cw == {0: 1.0, 1: 2.5}
    Xn, yn, cw = imbalance_fit_args(ModelParams(imbalance="none"), X, y, seed=0)
    assert cw is None and Xn is X


def test_the_best_epoch_and_early_stopping_ignore_nan():
    state = EpochState()
    improved = [state.record(epoch, {"val_ap": ap}) for epoch, ap in enumerate([0.1, 0.5, 0.3, float("nan")])]
    assert improved == [True, True, False, False]
    assert (state.best_epoch, state.best_value, state.epochs_done) == (1, 0.5, 4)
    assert state.patience_exhausted(2) and not state.patience_exhausted(3) and not state.patience_exhausted(0)


def learnable(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    logit = 2.5 * X[:, 0] - 2.0 * X[:, 1] * X[:, 2] - 6.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return X, y


def test_fit_learns_keeps_best_epoch_and_is_deterministic():
    Xt, yt = learnable(12_000, 0)
    Xv, yv = learnable(4_000, 1)
    valid = EvalSet(Xv, yv, (np.arange(yv.size) % 300).astype(str), np.arange(yv.size) // 1000)
    params = ModelParams(epochs=4, batch_size=128, early_stopping_patience=0)
    result = fit_model(params, Xt, yt, valid, seed=7)
    assert set(result.metrics) == {"average_precision", "roc_auc", "card_precision_at_100"}
    assert result.metrics["average_precision"] > 3 * yv.mean()  # far above chance
    assert result.metrics["roc_auc"] > 0.8
    # The returned model is the best epoch's, not the last one's.
    assert result.metrics["average_precision"] == pytest.approx(max(result.history["val_ap"]), abs=1e-9)
    assert result.best_epoch == int(np.argmax(result.history["val_ap"]))
    again = fit_model(params, Xt, yt, valid, seed=7)
    assert again.history["val_ap"] == pytest.approx(result.history["val_ap"], abs=1e-6)


def test_fit_refuses_hopeless_data():
    X = np.zeros((100, 3), np.float32)
    y = np.zeros(100, np.float32)
    y[0] = 1
    valid = EvalSet(X[:10], np.zeros(10, np.float32))
    with pytest.raises(TrainingDataInvalid):
        fit_model(ModelParams(epochs=1), X, y, valid)
    assert keras.__version__.startswith("3")


def test_trained_artifact_carries_the_psi_reference_the_daemon_uses(tmp_path):
    """``train`` stores the feature histograms of the history's rows after the windows'
    warm-up; the daemon's pipeline reads them. They are taken in the normalised space the
    daemon scores (and computes PSI) in."""
    from fraudstream.config import load_settings
    from fraudstream.daemon.engine import Engine
    from fraudstream.models.artifact import load_artifact
    from fraudstream.models.training import train_offline
    from fraudstream.monitoring.drift import psi

    settings = load_settings(
        None,
        model={"epochs": 1, "split": {"train_days": 15, "delay_days": 5}},
        monitoring={"drift_psi_bins": 8},
    )
    events = synthetic_events(days=30, per_day=60)
    report = train_offline(events, settings, tmp_path / "art")
    art = load_artifact(report.artifact)
    reference = art.drift_reference
    assert reference is not None
    assert [f["name"] for f in reference["features"]] == art.feature_names
    assert reference["rows"] == report.data["drift_reference_rows"]
    assert max(len(f["proportions"]) for f in reference["features"]) == 8

    # the reference rows as the daemon would score them match the reference exactly; the
    # same rows in raw units do not (the amount alone sits far off the normalised bins)
    data = prepare_dataset(events, settings.features, settings.model.split)
    assert np.all(psi(reference, data.X_reference) < 1e-9)
    raw = data.pipeline.transform_many(events)[-data.X_reference.shape[0]:]
    assert psi(reference, raw)[art.feature_names.index("amount")] > 1.0

    pipeline = Engine.create(settings, report.artifact)
    assert pipeline.drift_reference == reference
