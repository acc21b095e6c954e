"""``tune --objective prequential``: trials are judged by a replay through the online
learner that never hands it a label before its delay; the validation that picks each
trial's epoch ends where the scored window begins."""

from __future__ import annotations

import csv
import subprocess
import sys
from functools import partial

import numpy as np
import pandas as pd
import pytest

from fraudstream.config import load_settings
from fraudstream.config.model import SplitParams
from fraudstream.daemon.engine import Engine
from fraudstream.daemon.replay_objective import ReplayObjective
from fraudstream.features import read_events
from fraudstream.models import tuning
from fraudstream.models.artifact import load_artifact
from fraudstream.models.exceptions import TrainingDataInvalid
from fraudstream.models.online_training import OnlineTrainer

DELAY_DAYS = 7
ONE_POINT = {"first_width": [None], "n_layers": [1], "dropout": [0.0], "l1": [0.0], "l2": [0.0],
             "learning_rate": [1e-3], "optimizer": ["adam"], "batch_size": [256], "initializer": ["glorot_uniform"]}


def settings_for(**tuning_overrides):
    tuning_section = {"objective": "prequential", "prequential_days": 7, "epochs": 1, "search_space": ONE_POINT,
                      "online_space": {"minibatch_size": [32, 64], "replay_ratio": [1.0], "replay_fraud_share": [0.5],
                                       "replay_steps": [0], "imbalance": ["class_weight", "none"], "fraud_weight": [None]}}
    tuning_section.update(tuning_overrides)
    return load_settings(model={"split": {"train_days": 20, "delay_days": DELAY_DAYS}, "tuning": tuning_section})


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    path = tmp_path_factory.mktemp("prequential") / "events.csv"
    subprocess.run([sys.executable, "-m", "fraudstream", "simulate", "--days", "40", "--customers", "200",
                    "--terminals", "400", "--seed", "2", "--out", str(path), "--inline-labels",
                    "--no-label-events", "--no-progress"], check=True, capture_output=True)
    return path


def test_the_validation_ends_where_the_scored_window_begins():
    ts = pd.date_range("2026-01-01", periods=40 * 24, freq="h", tz="UTC")
    split, cut = tuning.prequential_split(ts, SplitParams(train_days=20, delay_days=7), days=7)
    window_start = ts.max() - pd.Timedelta(days=7)
    assert cut.train_end == pd.Timestamp("2026-01-21", tz="UTC") and cut.valid_end == window_start
    assert split.validation_days == pytest.approx((window_start - cut.valid_start) / pd.Timedelta(days=1))
    with pytest.raises(TrainingDataInvalid, match="model.tuning.prequential_days"):
        tuning.prequential_split(ts, SplitParams(train_days=20, delay_days=7), days=13)
    with pytest.raises(TrainingDataInvalid, match="model.split.validation_days"):
        tuning.prequential_split(ts, SplitParams(train_days=20, delay_days=7, validation_days=10), days=7)


def test_trial_values_set_the_online_settings_and_the_class_weighting():
    base = settings_for().model
    values = {"n_layers": 3, "minibatch_size": 32, "replay_ratio": 2.0, "imbalance": "none", "fraud_weight": 0.0}
    params = tuning.params_from_values(base, values)
    assert (params.n_layers, params.imbalance, params.fraud_weight) == (3, "none", None)
    assert tuning.online_settings(values) == {"minibatch_size": 32, "replay_ratio": 2.0}


def test_a_trial_never_learns_a_label_before_its_delay(tmp_path, stream, monkeypatch):
    """What the online learner receives, row by row, against the stream's clock at that
    moment: every label reaches it at least the delay after its transaction."""
    settings = settings_for()
    events = read_events(stream, settings.features.fields)
    seconds = (pd.to_datetime(events["timestamp"], utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    tx_time = dict(zip(events["transaction_id"].astype(str), seconds))
    clock = {"now": -np.inf}
    received: list[tuple[str, float]] = []
    process, add_many = Engine.process, OnlineTrainer.add_many

    def clocked(self, batch, *args, **kwargs):
        times = [pd.Timestamp(r.value["timestamp"]).timestamp() for r in batch]
        clock["now"] = max([clock["now"], *times])  # the newest event (transaction or label) read
        return process(self, batch, *args, **kwargs)

    def recorded(self, X, y, ids):
        received.extend((i, clock["now"]) for i in ids)
        return add_many(self, X, y, ids)

    monkeypatch.setattr(Engine, "process", clocked)
    monkeypatch.setattr(OnlineTrainer, "add_many", recorded)
    report = tuning.tune_offline(events, settings, tmp_path, strategy="grid", verbose=0,
                                 replay=partial(ReplayObjective, settings, stream))
    assert report.trials_run_now == 4  # the grid: 2 mini-batch sizes x 2 class weightings
    assert len(received) > 1000
    start = pd.to_datetime(events["timestamp"], utc=True).min().floor("D") + pd.Timedelta(days=20)
    early = [(i, now - tx_time[i]) for i, now in received if now < tx_time[i] + DELAY_DAYS * 86_400]
    assert not early, f"{len(early)} labels learned before their delay, e.g. {early[:3]}"
    assert min(tx_time[i] for i, _ in received) >= start.timestamp(), "nothing before the training end is learned"

    rows = list(csv.DictReader(open(tmp_path / "leaderboard.csv")))
    assert [float(r["prequential_ap"]) for r in rows] == sorted((float(r["prequential_ap"]) for r in rows), reverse=True)
    assert {(r["minibatch_size"], r["imbalance"]) for r in rows} == {("32", "class_weight"), ("32", "none"),
                                                                      ("64", "class_weight"), ("64", "none")}
    best = load_artifact(tmp_path / "best")
    assert best.metadata["tuning"]["objective"] == "prequential_ap"
    assert best.metadata["tuning"]["training"]["minibatch_size"] == int(rows[0]["minibatch_size"])
    assert best.params.imbalance == rows[0]["imbalance"]
