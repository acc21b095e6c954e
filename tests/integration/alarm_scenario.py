"""A backtest as a fraud team runs it, to count drift alarms: train, then replay everything.

Shared by ``test_drift_false_alarms.py`` (which asserts) and ``bench/bench_drift_alarms.py``
(which reports false alarms and detection delays in ``bench/results/drift_alarms.json``).

The scenario, with the default config throughout:

1. simulate ``customers`` customers (twice as many terminals) for ``days`` days; with
   ``change`` set, those ``DriftChange`` fields are in force from ``change_day``;
2. ``train`` on the first ``train_days`` days (the artifact, with its drift reference);
3. ``replay`` the whole stream from day 0 through the artifact, labels 7 days late, with the
   daemon's monitor (``DaemonMonitor``): every detection is recorded with its event day.

The replay starts with empty feature windows, as a backtest from a file does; detections of
rows before the windows' warm-up (the longest window plus its label delay, 37 days with the
default features) would judge half-filled windows, not the data.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from fraudstream.config import load_settings
from fraudstream.config.simulate import DriftChange, SimulatorSettings
from fraudstream.daemon.replay import ReplayResult, run_replay
from fraudstream.features import read_events
from fraudstream.models.training import train_offline
from fraudstream.monitoring.daemon_monitor import DaemonMonitor
from fraudstream.simulate.engine import simulate
from fraudstream.simulate.output import write_transactions

DAY = 86_400.0
LABEL_DELAY = "7d"
DETECTORS = ("psi", "page_hinkley", "adwin")


@dataclasses.dataclass
class AlarmScenario:
    customers: int = 1_000
    days: int = 180
    train_days: int = 60
    seed: int = 0
    change_day: int | None = None
    change: dict[str, Any] | None = None  # DriftChange fields (docs/simulator.md), from change_day


@dataclasses.dataclass
class Prepared:
    scenario: AlarmScenario
    stream: Path  # every day, inline labels
    artifact: Path
    start: float  # Unix time of day 0


def prepare(scenario: AlarmScenario, workdir: Path, settings_overrides: dict[str, Any] | None = None) -> Prepared:
    """Simulate, write the stream and the training part, and train the artifact."""
    drift = () if scenario.change is None else (DriftChange(day=scenario.change_day, **scenario.change),)
    sim = simulate(SimulatorSettings(customers=scenario.customers, terminals=2 * scenario.customers, drift=drift),
                   days=scenario.days, seed=scenario.seed)
    tx = sim.transactions
    stream, history = workdir / "stream.csv", workdir / "train.csv"
    write_transactions(sim, stream, inline_labels=True)
    write_transactions(dataclasses.replace(sim, transactions=tx[tx.day < scenario.train_days].reset_index(drop=True)),
                       history, inline_labels=True)
    settings = load_settings(**(settings_overrides or {}))
    artifact = workdir / "artifact"
    train_offline(read_events(history, settings.features.fields), settings, artifact)
    return Prepared(scenario, stream, artifact, float(tx["timestamp"].min().normalize().timestamp()))


@dataclasses.dataclass
class Alarms:
    result: ReplayResult
    detections: list[dict[str, Any]]  # in firing order, each with its event ``day``
    warm_from_day: float | None  # the first day the detectors judged

    def days_of(self, detector: str) -> list[float]:
        return [d["day"] for d in self.detections if d["detector"] == detector]

    def first_after(self, detector: str, day: float) -> float | None:
        return next((d for d in self.days_of(detector) if d >= day), None)


def replay_with_alarms(prepared: Prepared, settings_overrides: dict[str, Any] | None = None) -> Alarms:
    """Replay the whole stream through the artifact with the daemon's monitor."""
    settings = load_settings(**(settings_overrides or {}))
    logging.getLogger("fraudstream.monitoring.drift").setLevel(logging.ERROR)  # one line per alarm
    monitor = DaemonMonitor(settings, serve=False)
    result, pipeline = run_replay(settings, prepared.stream, label_delay=LABEL_DELAY,
                                  artifact=prepared.artifact, monitor=monitor)
    detections = [dict(d, day=(d["event_time"] - prepared.start) / DAY) for d in result.detections]
    warm_from = monitor.drift.warm_from
    return Alarms(result, detections, None if warm_from is None else (warm_from - prepared.start) / DAY)
