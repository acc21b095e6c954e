"""A concept drift on a known day, replayed through the daemon's loop with its drift monitor.

Shared by ``test_drift_detection.py`` (which asserts) and ``bench/bench_drift.py`` (which
reports the numbers in ``bench/results/drift.json`` and ``docs/monitoring.md``).

The scenario:

1. simulate ``customers`` customers (twice as many terminals) for ``days`` days; from
   ``change_day`` the ``change`` is in force: by default the amount rule's threshold falls
   from 220 to 120 (``LOWER_THRESHOLD``), so a band of amounts the model learnt as
   legitimate turns fraudulent, a change that contradicts what it learnt; ``STEALTH`` (the
   ``stealth`` preset) brings frauds that look like ordinary spending instead;
2. **warm-up**: a fresh model learns online from the first ``warm_days`` (a file replay with
   the 7-day label delay, no monitoring), so it has learned the pre-change pattern and its
   feature windows are full; the pipeline is saved as a checkpoint;
3. **monitored replay**: from that checkpoint, the rest of the stream (``warm_days`` to
   ``days``) is replayed with the daemon's monitor (``DaemonMonitor``), once per drift
   action. Every labelled row feeds ADWIN on its log loss, as in the daemon.

The warm-up keeps ADWIN away from what is not concept drift: a fresh model's first weeks
(its loss moves while it learns) and the simulator's first four weeks (the fraud rate rises
while 28-day terminal compromises accumulate).

**Detection delay in labelled rows.** Labels are learned in the order they arrive; with a
fixed delay that is transaction-time order, so the first label of a post-change transaction
arrives ``label_delay`` after the change. The delay of a detection is the number of labelled
rows of post-change transactions learned up to and including the row that triggered it
(:func:`labelled_after`); a detection triggered by a pre-change row fired *before*
the change.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from fraudstream.config import load_settings
from fraudstream.config.simulate import DriftChange, SimulatorSettings
from fraudstream.daemon.checkpoint import CheckpointStore
from fraudstream.daemon.engine import Engine
from fraudstream.daemon.replay import ReplayResult, run_replay
from fraudstream.models.evaluation import average_precision
from fraudstream.monitoring.daemon_monitor import DaemonMonitor
from fraudstream.simulate.engine import simulate
from fraudstream.simulate.output import write_transactions

DAY = 86_400.0
LABEL_DELAY = "7d"
LABEL_DELAY_DAYS = 7
# The change: amounts above 120 are fraud instead of above 220. Amounts of 120-220, which the
# model learnt as ordinary (its replay reservoir holds them as legitimate), turn fraudulent.
LOWER_THRESHOLD = {"amount_threshold": 120.0}
# For comparison: new fraud evidence that contradicts nothing the model learnt (see the docs).
STEALTH = {"preset": "stealth"}


@dataclasses.dataclass
class Scenario:
    customers: int = 1_000
    days: int = 49
    warm_days: int = 28
    change_day: int = 35
    seed: int = 0
    # the DriftChange fields in force from change_day (docs/simulator.md)
    change: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(LOWER_THRESHOLD))

    @property
    def label_days(self) -> int:
        """Days after the change whose transactions have labels before the stream ends."""
        return self.days - self.change_day - LABEL_DELAY_DAYS


@dataclasses.dataclass
class Prepared:
    scenario: Scenario
    stream: Path  # transactions from warm_days on, inline labels
    checkpoint: Any  # CheckpointInfo of the warmed-up pipeline
    start: float  # Unix time of day 0
    warm_ap_last_week: float | None

    @property
    def change_time(self) -> float:
        return self.start + self.scenario.change_day * DAY


def prepare(scenario: Scenario, workdir: Path, settings_overrides: dict[str, Any] | None = None) -> Prepared:
    """Simulate, write the warm-up part and the stream, and warm a fresh model up."""
    sim = simulate(
        SimulatorSettings(customers=scenario.customers, terminals=2 * scenario.customers,
                          drift=(DriftChange(day=scenario.change_day, **scenario.change),)),
        days=scenario.days, seed=scenario.seed,
    )
    tx = sim.transactions
    warm_file, stream_file = workdir / "warm.jsonl", workdir / "stream.jsonl"
    write_transactions(dataclasses.replace(sim, transactions=tx[tx.day < scenario.warm_days].reset_index(drop=True)),
                       warm_file, inline_labels=True)
    write_transactions(dataclasses.replace(sim, transactions=tx[tx.day >= scenario.warm_days].reset_index(drop=True)),
                       stream_file, inline_labels=True)
    settings = load_settings(**(settings_overrides or {}))
    warm, pipeline = run_replay(settings, warm_file, label_delay=LABEL_DELAY)
    info = pipeline.save_checkpoint(CheckpointStore(workdir / "checkpoints", keep=1), {}, reason="warm-up")
    start = float(tx["timestamp"].min().normalize().timestamp())
    return Prepared(scenario, stream_file, info, start, warm.last_days(7)["average_precision"])


@dataclasses.dataclass
class Run:
    action: str
    result: ReplayResult
    adwin: list[dict[str, Any]]  # ADWIN detections in firing order
    daily_ap: list[float | None]  # per event-time day from the change, prequential AP

    def first_adwin_after_change(self) -> dict[str, Any] | None:
        return next((d for d in self.adwin if d["post_change_labelled_rows"] > 0), None)

    def adwin_before_change(self) -> list[dict[str, Any]]:
        return [d for d in self.adwin if d["post_change_labelled_rows"] == 0]


def labelled_after(result: ReplayResult, since: float, detection: dict[str, Any]) -> int:
    """Labelled rows of transactions at or after ``since`` learned up to and including the
    row that triggered ``detection`` (an ADWIN one, which counts labelled rows)."""
    return int(np.count_nonzero(result.times[: detection["labelled_rows"]] >= since))


def monitored_replay(prepared: Prepared, action: str, monitoring: dict[str, Any] | None = None,
                     settings_overrides: dict[str, Any] | None = None) -> Run:
    """Replay the stream from the warmed-up checkpoint with the daemon's monitor."""
    overrides = dict(settings_overrides or {})
    overrides["monitoring"] = {**overrides.get("monitoring", {}), **(monitoring or {}), "drift_action": action}
    settings = load_settings(**overrides)
    logging.getLogger("fraudstream.monitoring.drift").setLevel(logging.ERROR)  # one line per detection
    result, _ = run_replay(
        settings, prepared.stream, label_delay=LABEL_DELAY,
        monitor=DaemonMonitor(settings, serve=False),
        pipeline=Engine.from_checkpoint(settings, prepared.checkpoint),
    )
    change = prepared.change_time
    adwin = [dict(d, post_change_labelled_rows=labelled_after(result, change, d),
                  day=(d["event_time"] - prepared.start) / DAY)
             for d in result.detections if d["detector"] == "adwin"]
    day = np.floor((result.times - prepared.start) / DAY).astype(int)
    s = prepared.scenario
    daily = []
    for d in range(s.change_day, s.days):
        m = day == d
        y = result.labels[m]
        daily.append(average_precision(y, result.scored[m]) if m.any() and y.min() != y.max() else None)
    return Run(action, result, adwin, daily)


def window_ap(prepared: Prepared, run: Run, first_day: int, last_day: int) -> float:
    """Prequential AP over transactions of event-time days [first_day, last_day)."""
    day = np.floor((run.result.times - prepared.start) / DAY).astype(int)
    m = (day >= first_day) & (day < last_day)
    return average_precision(run.result.labels[m], run.result.scored[m])
