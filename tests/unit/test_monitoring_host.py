"""The monitor reads a host through one typed view and reports; the host decides."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from types import SimpleNamespace

import numpy as np
import pytest

from fraudstream.config import load_settings
from fraudstream.daemon.app import Daemon
from fraudstream.daemon.checkpoint import CheckpointStore
from fraudstream.daemon.engine import Engine
from fraudstream.daemon.replay import ReplayHost
from fraudstream.daemon.serve import ApiHost
from fraudstream.monitoring.daemon_monitor import DaemonMonitor
from fraudstream.monitoring.drift import AdaptPlan, DriftReport
from fraudstream.monitoring.host import MonitoredHost


@pytest.fixture(scope="module")
def settings():
    return load_settings()


def test_every_host_shows_the_monitor_the_same_view(settings, tmp_path):
    pipe = Engine.create(settings)
    store = CheckpointStore(tmp_path)
    hosts = [Daemon(settings, store, pipe), ApiHost(settings, pipe, store), ReplayHost(pipe)]
    for host in hosts:
        assert isinstance(host, MonitoredHost), type(host).__name__
        assert host.served_version == pipe.served_version and host.pending_rows() == 0
        assert host.replay_filled() == (0, 0) and host.learning_backlog() is None
        assert host.assigned_partitions() == set() and not host.broker_reachable() and host.consumer_lag() is None


def test_the_monitor_reports_a_drift_and_the_host_acts_on_it(settings):
    pipe = Engine.create(settings)
    host = ReplayHost(pipe)
    monitor = DaemonMonitor(settings, serve=False)
    monitor.attach(host)
    action = {"now": "adapt"}
    monitor.drift.update_scored_many = lambda *_: DriftReport([], action["now"], AdaptPlan(3.0, 0.8, 5, 1.0))

    def batch() -> list[DriftReport]:
        n = 4
        monitor.collect(SimpleNamespace(scored=np.full(n, 0.1), scored_times=np.arange(n, dtype=float),
                                        scored_X=np.zeros((n, pipe.features.n_features), np.float32), joined=None))
        return monitor.flush(host)

    lr = pipe.learner.learning_rate
    reports = batch()
    assert [r.action for r in reports] == ["adapt"]
    assert pipe.learner.learning_rate == lr  # reported, not acted on
    host.act_on_drift(reports)
    assert pipe.learner.learning_rate == pytest.approx(3 * lr)

    action["now"] = "checkpoint"
    host.act_on_drift(batch())
    assert host.checkpoints_requested == 1
