"""Learning quality of the daemon's loop, prequentially, against river's online baseline.

The default simulated population (5,000 customers, 10,000 terminals) over 60 days, labels
7 days after their transaction. ``replay`` runs the daemon's own pipeline from a fresh
model; every transaction is scored before its label is learned. Over the last 4 weeks its
average precision must beat river's StandardScaler | LogisticRegression, learning online on
the same feature rows with the same label delay, by at least 0.05; and training with the
replay reservoir must beat training without it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudstream.config import load_settings
from fraudstream.config.simulate import SimulatorSettings
from fraudstream.daemon.replay import run_replay
from fraudstream.features import FeaturePipeline, read_events
from river_baseline import river_prequential_scores
from fraudstream.models.evaluation import average_precision
from fraudstream.simulate.engine import simulate
from fraudstream.simulate.output import write_transactions

pytestmark = pytest.mark.slow

DAYS = 60
DELAY_S = 7 * 86_400.0
FEATURES = {"preset": "extended"}


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    path = tmp_path_factory.mktemp("quality") / "tx.jsonl"
    write_transactions(simulate(SimulatorSettings(), days=DAYS, seed=0), path, inline_labels=True)
    return path


def last_four_weeks_ap(stream, replay_ratio: float) -> float:
    settings = load_settings(features=FEATURES, training={"replay_ratio": replay_ratio})
    result, _ = run_replay(settings, stream, label_delay="7d")
    assert result.counters["invalid"] == {} and result.counters["pending_at_end"] == 0
    return result.last_days(28)["average_precision"]


@pytest.fixture(scope="module")
def with_replay(stream):
    return last_four_weeks_ap(stream, replay_ratio=1.0)


def test_daemon_beats_online_logistic_regression(stream, with_replay):
    frame = read_events(stream)
    X = FeaturePipeline(load_settings(features=FEATURES).features).transform_many(frame)
    times = (pd.to_datetime(frame["timestamp"], utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    y = frame["label"].to_numpy()
    scores = river_prequential_scores(X, y, times, DELAY_S)
    last = times >= times.max() - 28 * 86_400
    river_ap = average_precision(y[last], scores[last])
    print(f"last 4 weeks AP: daemon {with_replay:.4f}, river StandardScaler|LogisticRegression {river_ap:.4f}")
    assert with_replay >= river_ap + 0.05


def test_replay_reservoir_beats_no_replay(stream, with_replay):
    without = last_four_weeks_ap(stream, replay_ratio=0.0)
    print(f"last 4 weeks AP: with replay {with_replay:.4f}, without {without:.4f}")
    assert with_replay > without
