"""A real Prometheus scrapes fraudstream's /metrics; every dashboard and alert expression is
run against what it scraped.

The scraped process is a stand-in for the daemon: a driver thread feeds the real
``Prequential`` and ``DriftMonitor`` with a synthetic stream and updates every other metric
of a ``Metrics`` object served by ``MonitoringServer``, as the daemon's loop does. Phases:

1. healthy: good scores, fresh checkpoints, small steady lag. Every dashboard panel
   expression returns data and no alert expression does.
2. trouble: the model goes blind (AP falls, loss rises, scores shift, so ADWIN and
   Page-Hinkley fire), lag grows past 1000, checkpoints stop, 10% of events are invalid.
   Every alert expression except "daemon down" returns data, and so does the dashboard's
   drift annotation.
3. the HTTP server stops: "daemon down" returns data.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import httpx
import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry

from fraudstream.config.settings import MonitoringSettings
from fraudstream.monitoring.drift import DriftMonitor, reference_from
from fraudstream.monitoring.metrics import Metrics
from fraudstream.monitoring.prequential import Prequential
from fraudstream.monitoring.server import MonitoringServer, create_app
from prometheus_fixture import DEPLOY, PrometheusServer, require_binary, wait_for
from test_prometheus_deploy import annotation_exprs, concrete, panel_exprs

FEATURES = ["amount", "hour"]
ALERTS = {rule["alert"]: rule["expr"] for group in
          yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
          for rule in group["rules"]}


class Driver:
    """Plays the daemon's part against a Metrics object, one loop every ``tick`` seconds."""

    def __init__(self, metrics: Metrics, tick: float = 0.1):
        self.m = metrics
        self.tick = tick
        self.phase = "healthy"
        self.rng = np.random.default_rng(0)
        self.prequential = Prequential(window=2_000, threshold=0.5)
        ref = reference_from(self.rng.normal(size=(5_000, 2)), names=FEATURES)
        self.drift = DriftMonitor(
            MonitoringSettings(drift_psi_window=1_000, drift_page_hinkley_min_instances=200),
            reference=ref, metrics=metrics)
        self.event_time = 1_775_001_600.0
        self.lag = 50
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-driver", daemon=True)
        self.failure: BaseException | None = None
        self.start_wall = time.time()

    def start(self) -> None:
        self.m.start_time.set(self.start_wall)
        self.m.model_version.set(3)
        self.m.model_promotions.inc()
        self.m.partitions_assigned.labels(topic="transactions").set(3)
        self.m.partitions_assigned.labels(topic="labels").set(3)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.step()
                self._stop.wait(self.tick)
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            self.failure = exc
            raise

    def step(self) -> None:
        m, rng, bad = self.m, self.rng, self.phase == "trouble"
        n = 200
        times = self.event_time + np.sort(rng.uniform(0, 60, n))
        self.event_time += 60
        labels = (rng.random(n) < 0.05).astype(int)
        if bad:  # the fraud pattern changed: scores no longer follow labels and run higher
            scores = np.clip(0.3 + rng.normal(0, 0.05, n), 0, 1)
            X = np.c_[rng.normal(1.5, 1, n), rng.normal(size=n)]
        else:
            scores = np.clip(0.03 + 0.8 * labels + rng.normal(0, 0.03, n), 0, 1)
            X = rng.normal(size=(n, 2))
        customers = [f"c{i}" for i in rng.integers(0, 500, n)]

        # input and scoring
        m.events_consumed.labels(topic="transactions").inc(n)
        m.events_consumed.labels(topic="labels").inc(n)
        m.events_invalid.labels(reason="not_json").inc(40 if bad else 1)
        decisions = np.where(scores >= 0.9, "block", np.where(scores >= 0.5, "review", "approve"))
        for decision, count in zip(*np.unique(decisions, return_counts=True)):
            m.scores.labels(decision=str(decision)).inc(int(count))
        m.batch_size.observe(n)
        for latency in rng.uniform(0.005, 0.05, 20):
            m.score_latency.observe(latency)
        for stage in ("total", "decode", "features", "score", "produce", "learn"):
            m.batch_seconds.labels(stage=stage).observe(rng.uniform(0.001, 0.02))
        self.lag = self.lag + 400 if bad else 50
        m.set_consumer_lag({("transactions", p): self.lag for p in range(3)})

        # labels, prequential, learning
        m.labels_joined.inc(n)
        m.labels_unmatched.inc(2)
        m.pending_expired.inc(1)
        m.pending_rows.set(10_000)
        self.prequential.update_many(scores, labels, customers, times)
        m.set_prequential(self.prequential.snapshot())
        m.train_steps.inc(3)
        m.train_rows.labels(source="fresh").inc(n)
        m.train_rows.labels(source="replay").inc(n)
        m.train_loss.set(float(rng.uniform(0.05, 0.1)))
        m.guard_rejections.labels(reason="non_finite_loss").inc(0)
        m.replay_rows.labels(**{"class": "legit"}).set(15_000)
        m.replay_rows.labels(**{"class": "fraud"}).set(5_000)

        # drift: the real detectors, counting into the metrics
        self.drift.update_scored_many(scores, times, X)
        self.drift.update_labelled_many(scores, labels, times)

        # checkpoints
        if bad:
            m.checkpoint_failures.inc()
            m.checkpoint_last_success.set(time.time() - 700)
            m.start_time.set(time.time() - 900)
        else:
            m.checkpoint_seconds.observe(float(rng.uniform(0.1, 0.5)))
            m.checkpoint_last_success.set(time.time())
            m.model_rollbacks.inc(0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_binary("prometheus")
    registry = CollectorRegistry()
    metrics = Metrics(registry, feature_names=FEATURES, ap_alert_threshold=0.2)
    server = MonitoringServer(create_app(metrics), host="127.0.0.1", port=0).start()
    driver = Driver(metrics)
    driver.start()
    prometheus = PrometheusServer(
        tmp_path_factory.mktemp("prometheus"), targets=[f"127.0.0.1:{server.port}"],
        rule_files=[DEPLOY / "prometheus" / "alerts.yml"])
    try:
        prometheus.start()
        yield prometheus, server, driver
    finally:
        prometheus.stop()
        driver.stop()
        server.stop()
    if driver.failure is not None:
        raise driver.failure


def non_empty(prometheus: PrometheusServer, exprs: list[str]) -> dict[str, list]:
    return {e: prometheus.query(e) for e in exprs}


def test_exposition_passes_promtool_lint(stack):
    _, server, _ = stack
    text = httpx.get(server.url + "/metrics").text
    result = subprocess.run([require_binary("promtool"), "check", "metrics"], input=text,
                            text=True, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fraudstream_prequential_average_precision" in text


def test_phases_dashboard_and_alerts(stack):
    prometheus, server, driver = stack
    exprs = [concrete(e) for e in panel_exprs()]

    # --- 1. healthy ------------------------------------------------------------------
    wait_for(lambda: prometheus.query('up{job="fraudstream"} == 1'), 60, "the first scrape")

    def all_dashboard_data():
        results = non_empty(prometheus, exprs)
        missing = [e for e, r in results.items() if not r]
        return not missing or None

    try:
        wait_for(all_dashboard_data, 60, "data for every dashboard expression")
    except AssertionError:
        missing = [e for e, r in non_empty(prometheus, exprs).items() if not r]
        raise AssertionError("dashboard expressions without data:\n" + "\n".join(missing))
    healthy = {name: prometheus.query(expr) for name, expr in ALERTS.items()}
    assert {n: r for n, r in healthy.items() if r} == {}, "alerts firing while healthy"
    ap = float(prometheus.query("fraudstream_prequential_average_precision")[0]["value"][1])
    assert ap > 0.9

    # --- 2. trouble ------------------------------------------------------------------
    driver.phase = "trouble"
    expected = set(ALERTS) - {"FraudstreamDown"}

    def firing():
        now = {name for name, expr in ALERTS.items() if prometheus.query(expr)}
        return now if expected <= now else None

    try:
        got = wait_for(firing, 90, "every alert expression but FraudstreamDown to return data")
    except AssertionError:
        now = {name for name, expr in ALERTS.items() if prometheus.query(expr)}
        raise AssertionError(f"alerts without data: {sorted(expected - now)}")
    assert "FraudstreamDown" not in got
    detectors = {r["metric"]["detector"] for r in
                 prometheus.query(ALERTS["FraudstreamDriftDetected"])}
    assert {"adwin", "page_hinkley", "psi"} <= detectors
    # the drift annotation marks the detections on every panel
    for expr in annotation_exprs():
        assert prometheus.query(concrete(expr)), expr
    # every dashboard expression still answers in the trouble phase
    assert not [e for e, r in non_empty(prometheus, exprs).items() if not r]
    # rules loaded into the live server evaluate without error
    rules = prometheus.rules()
    assert {r["name"] for r in rules} == set(ALERTS)
    assert all(r["health"] in ("ok", "unknown") for r in rules), json.dumps(rules)[:2000]

    # --- 3. daemon down ------------------------------------------------------------------
    server.stop()
    wait_for(lambda: prometheus.query(ALERTS["FraudstreamDown"]), 30,
             "FraudstreamDown's expression to return data after the server stopped")
