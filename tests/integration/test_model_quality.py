"""Model quality of the defaults, prequentially, against the defaults before issue 14.

The default simulator (a smaller population: 1,000 customers, 2,000 terminals) over 120 days,
labels 7 days after their transaction. Each model is trained offline on the first 60 days
(``train``'s own split inside them), then ``replay`` scores days 60..120 with online learning
on, every transaction before its label is learned; the figures are over the last 4 weeks.
"Before" is the handbook's 15 features with the fully balanced fraud weight; "now" is the
settings a user gets by default. Costs about 3.5 minutes wall on the shared 2-core machine
under load (two trainings, two replays; 203 and 222 s measured at load average 8-11).

Measured here (seed 3): AP 0.7677 -> 0.7846, AUC 0.8965 -> 0.8967. The issue's goal (AP
+0.05, AUC >= 0.90) is not reached: the gain asserted is the one measured on every stream
tried (3 seeds, +0.012 to +0.017), with room for noise, and AUC must not fall. On this small
population frauds are 4% of transactions (the simulator compromises a fixed number of
terminals a day), more of them on terminals whose frauds are not known yet, so AUC sits below
the 0.898-0.907 of the 2,000-customer bench streams for both models.

The full-size figures (2,000 customers, two seeds, 4-week means) are in
``bench/bench_quality.py`` and docs/features.md.
"""

from __future__ import annotations

import pandas as pd
import pytest

from fraudstream.config import load_settings
from fraudstream.config.simulate import SimulatorSettings
from fraudstream.daemon.replay import run_replay
from fraudstream.features import read_events
from fraudstream.models.training import train_offline
from fraudstream.simulate.engine import simulate
from fraudstream.simulate.output import write_transactions

pytestmark = pytest.mark.slow

DAYS, TRAIN_DAYS, TEST_DAYS = 120, 60, 28
MARGIN = 0.01
BEFORE = {"features": {"preset": "handbook"}, "model": {"fraud_weight": None}}


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model_quality")
    sim = simulate(SimulatorSettings(customers=1000, terminals=2000), days=DAYS, seed=3)
    path = tmp / "stream.csv"
    write_transactions(sim, path, inline_labels=True)
    return path, sim.transactions["timestamp"].min().floor("D")


def prequential(stream, tmp_path, **overrides) -> dict:
    path, first_day = stream
    settings = load_settings(**overrides)
    events = read_events(path, settings.features.fields)
    head = pd.to_datetime(events["timestamp"], utc=True) < first_day + pd.Timedelta(days=TRAIN_DAYS)
    train_offline(events[head].reset_index(drop=True), settings, tmp_path / "artifact")
    start = first_day + pd.Timedelta(days=TRAIN_DAYS)
    result, _ = run_replay(settings, path, label_delay="7d", artifact=tmp_path / "artifact",
                           start=start.timestamp())
    assert result.counters["invalid"] == {} and result.counters["train_steps"] > 100
    return result.metrics(since=(first_day + pd.Timedelta(days=DAYS - TEST_DAYS)).timestamp())


def test_defaults_beat_the_handbook_defaults_prequentially(stream, tmp_path):
    before = prequential(stream, tmp_path / "before", **BEFORE)
    now = prequential(stream, tmp_path / "now")
    print(f"last 4 weeks, {now['frauds']} frauds: AP {before['average_precision']:.4f} -> "
          f"{now['average_precision']:.4f}, AUC {before['roc_auc']:.4f} -> {now['roc_auc']:.4f}")
    assert now["frauds"] >= 300, "enough frauds in the test weeks for a meaningful AP"
    assert now["roc_auc"] >= 0.89 and now["roc_auc"] >= before["roc_auc"] - 0.005
    assert now["average_precision"] >= before["average_precision"] + MARGIN
