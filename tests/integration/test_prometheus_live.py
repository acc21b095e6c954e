"""A real Prometheus scrapes a running ``fraudstream run`` fed by the real broker; every
dashboard and alert expression is run against what it scraped.

The daemon starts from an artifact trained a moment before on 18 simulated days, so its
feature PSI is measured against the training rows' histograms stored in the artifact. A
second simulation of the same world is produced to its topics as transactions and label
events, and everything the alerts watch for is made to happen for real:

1. healthy: the pre-drift days. Every dashboard panel expression returns data, feature PSI
   is populated and the amount's is small; no invalid events, no lag, fresh checkpoints,
   so those alert expressions return nothing.
2. trouble: the daemon is frozen with SIGSTOP (Prometheus cannot scrape it: ``up == 0``,
   the "daemon down" expression), and meanwhile the post-drift days (customers spend 4x,
   the large-amount fraud rule moves from 220 to 1000, compromised customers switch to the
   ``stealth`` pattern) and 1,500 garbage records are produced. After SIGCONT the daemon
   works through the backlog: lag jumps past 1000 (lag growing), far more than 5% of the
   consumed records go to the DLQ (invalid events high), ADWIN, Page-Hinkley and PSI each
   fire on the drifted rows (drift detected, and the dashboard's drift annotation; ADWIN and
   PSI may fire earlier too, while the fresh daemon's per-entity windows warm up, so the
   test checks that every detector's count rises in this phase), and the amount's PSI
   rises past the threshold. ``monitoring.ap_alert_threshold`` is configured at 0.99, above
   what the model reaches on this stream (about 0.2 before the drift, 0.3 after), so the
   average precision expression has data once 1000 labelled rows are in its window.
3. idle: with nothing left to consume the daemon writes no more checkpoints. The
   checkpoint-stale rule says 10 minutes; here its expression is evaluated with both of its
   600 s thresholds replaced by ``STALE_AFTER_S`` (the rule file keeps 600), and returns
   data once the newest checkpoint is that old.
4. stopped: SIGTERM, a clean exit, and ``up == 0`` again.

Alert rules carry ``for:`` durations (up to 15 minutes); the test evaluates their
expressions, not the alert states, and checks that the live server loaded every rule.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

from daemon_harness import DAEMON_ENV, LOG_LEVEL, Daemon, DaemonRunner, make_topics, producer
from prometheus_fixture import DEPLOY, PrometheusServer, free_port, require_binary, wait_for
from test_prometheus_deploy import annotation_exprs, concrete, panel_exprs

ALERTS = {rule["alert"]: rule["expr"] for group in
          yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
          for rule in group["rules"]}
#: The checkpoint-stale rule's 600 s thresholds, shortened for the test (see the docstring).
STALE_AFTER_S = 12
CUSTOMERS = TERMINALS = 200
DRIFT_DAY = 6  # first post-drift day of the live stream (0-based)
LIVE_DAYS = 10
GARBAGE = 1_500  # invalid records produced during the trouble phase
AP_FLOOR = 0.99
PSI_THRESHOLD = 0.25
#: ADWIN's confidence; larger than the default 0.002 so it decides on the few thousand
#: post-drift labels a test can afford.
ADWIN_DELTA = 0.05


def stale_expr() -> str:
    expr = ALERTS["FraudstreamCheckpointStale"]
    assert expr.count("> 600") == 2, expr
    return expr.replace("> 600", f"> {STALE_AFTER_S}")


# -- the model and the stream ---------------------------------------------------------------


def train_artifact(out: Path) -> Path:
    """What ``fraudstream train`` does, on 18 simulated days (about 6,000 transactions)."""
    from fraudstream.config import load_settings
    from fraudstream.config.simulate import SimulatorSettings
    from fraudstream.models.training import train_offline
    from fraudstream.simulate.engine import simulate

    sim = simulate(SimulatorSettings(customers=CUSTOMERS, terminals=TERMINALS), 18, 1)
    settings = load_settings(None, model={"epochs": 2, "split": {"train_days": 11, "delay_days": 2}})
    report = train_offline(sim.transactions, settings, out)
    assert report.metrics["average_precision"] > 0.3, report.metrics
    return report.artifact


def live_stream() -> tuple[list[tuple[str, bytes, bytes]], list[tuple[str, bytes, bytes]]]:
    """``(kind, key, value)`` records before and from ``DRIFT_DAY``; each label follows its
    transaction within minutes of event time, so the prequential window fills at once."""
    from fraudstream.config.simulate import DriftChange, LabelDelay, SimulatorSettings
    from fraudstream.simulate.engine import simulate
    from fraudstream.simulate.output import merged_events

    settings = SimulatorSettings(
        customers=CUSTOMERS, terminals=TERMINALS, label_delay=LabelDelay(days=0.001),
        drift=(DriftChange(day=DRIFT_DAY, preset="stealth", spending_multiplier=4.0,
                           amount_threshold=1_000.0),),
    )
    sim = simulate(settings, LIVE_DAYS, 2)
    cut = sim.transactions["timestamp"].min().floor("D") + np.timedelta64(DRIFT_DAY, "D")
    cut_text = cut.strftime("%Y-%m-%dT%H:%M:%S")
    tx = sim.transactions
    customer_of = dict(zip(tx["transaction_id"], tx["customer_id"]))
    before, after = [], []
    for kind, event in merged_events(sim, inline_labels=False, label_events=True):
        record = (kind, customer_of[event["transaction_id"]].encode(), json.dumps(event).encode())
        (before if event["timestamp"] < cut_text else after).append(record)
    return before, after


# -- the daemon -------------------------------------------------------------------------------


def write_daemon_config(path: Path, bootstrap: str, topics, checkpoints: Path, port: int) -> Path:
    config = {
        "kafka": {"bootstrap_servers": bootstrap, "topics": topics.as_config(),
                  "group_id": path.parent.name, "client_id": "fraudstream-live", "batch_size": 500},
        "checkpoints": {"directory": str(checkpoints), "every_steps": 1_000, "every_seconds": 2.0,
                        "keep": 2},
        "monitoring": {
            "host": "127.0.0.1", "port": port,
            "prequential_window": 1_000,
            "ap_alert_threshold": AP_FLOOR,
            "drift_psi_window": 500,
            "drift_psi_threshold": PSI_THRESHOLD,
            "drift_page_hinkley_min_instances": 300,
            "drift_adwin_delta": ADWIN_DELTA,
            # the stream is 10 days long: the detectors judge it from the first event, windows
            # filling or not (the default waits for the windows' 37-day warm-up)
            "drift_warmup_days": 0,
        },
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def send(bootstrap: str, topics, records, per_second: float | None = None) -> None:
    """Produce ``(kind, key, value)`` records, paced to ``per_second`` when given."""
    topic_of = {"transaction": topics.transactions, "label": topics.labels,
                "garbage": topics.transactions}
    prod = producer(bootstrap)
    try:
        chunk = 250
        started = time.monotonic()
        for i in range(0, len(records), chunk):
            for kind, key, value in records[i:i + chunk]:
                prod.send(topic_of[kind], value=value, key=key)
            if per_second:
                ahead = (i + chunk) / per_second - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        prod.flush(timeout=60)
    finally:
        prod.close(timeout=10)


# -- queries ------------------------------------------------------------------------------------


def values(prometheus: PrometheusServer, expr: str) -> dict[str, float]:
    """Instant query as ``{series labels (as text): value}``."""
    return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1])
            for r in prometheus.query(expr)}


def scalar(prometheus: PrometheusServer, expr: str) -> float | None:
    result = prometheus.query(expr)
    return float(result[0]["value"][1]) if result else None


def firing(prometheus: PrometheusServer) -> set[str]:
    return {name for name, expr in ALERTS.items() if prometheus.query(expr)}


def drained(prometheus: PrometheusServer, expected: int):
    """Every produced record counted as consumed, and the lag read as zero."""
    def check():
        consumed = scalar(prometheus, "sum(fraudstream_events_consumed_total)")
        lag = scalar(prometheus, "sum(fraudstream_consumer_lag_messages)")
        return consumed is not None and consumed >= expected and lag == 0
    return check


def promtool_lint(url: str) -> str:
    text = httpx.get(url + "/metrics", timeout=10).text
    result = subprocess.run([require_binary("promtool"), "check", "metrics"], input=text,
                            text=True, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return text


# -- the test -----------------------------------------------------------------------------------


def test_dashboard_and_alerts_against_the_running_daemon(kafka_bootstrap, unique_topic, tmp_path):
    require_binary("prometheus")
    require_binary("promtool")
    started = time.monotonic()
    topics = make_topics(unique_topic)
    artifact = train_artifact(tmp_path / "artifact")
    healthy_records, drift_records = live_stream()

    port = free_port()
    workdir = tmp_path / "daemon"
    workdir.mkdir()
    config = write_daemon_config(workdir / "config.yaml", kafka_bootstrap, topics,
                                 workdir / "checkpoints", port)
    runner = DaemonRunner(workdir)
    prometheus = PrometheusServer(tmp_path / "prometheus", targets=[f"127.0.0.1:{port}"],
                                  rule_files=[DEPLOY / "prometheus" / "alerts.yml"])
    try:
        daemon = start_daemon(runner, config, artifact)
        prometheus.start()
        daemon.wait_until(lambda: prometheus.query('up{job="fraudstream"} == 1'), 90,
                          "Prometheus to scrape the daemon")

        # --- 1. healthy ----------------------------------------------------------------------
        send(kafka_bootstrap, topics, healthy_records, per_second=4_000)
        daemon.wait_until(drained(prometheus, len(healthy_records)), 60,
                          "the daemon to consume the healthy phase")
        # the newest checkpoint is recent while records flow in
        wait_for(lambda: scalar(prometheus, "fraudstream_checkpoint_last_success_timestamp_seconds"),
                 10, "a checkpoint")
        assert prometheus.query(stale_expr()) == [], "checkpoint stale while checkpointing"
        exprs = [concrete(e) for e in panel_exprs()]

        def missing_panels() -> list[str]:
            return [e for e in exprs if not prometheus.query(e)]

        try:
            wait_for(lambda: not missing_panels(), 30, "data for every dashboard panel expression")
        except AssertionError:
            raise AssertionError("panel expressions without data:\n" + "\n".join(missing_panels())) from None
        transactions = sum(kind == "transaction" for kind, _, _ in healthy_records)
        assert scalar(prometheus, "sum(fraudstream_scores_total)") == transactions
        # the prequential gauges are refreshed every 2 s
        wait_for(lambda: scalar(prometheus, "fraudstream_prequential_window_rows") == 1_000, 10,
                 "a full prequential window")
        assert 0 < scalar(prometheus, "fraudstream_prequential_average_precision") < 1
        psi = values(prometheus, "fraudstream_feature_psi")
        assert psi and all(v > 0 for v in psi.values()), f"PSI not populated from the artifact: {psi}"
        amount_psi = scalar(prometheus, 'fraudstream_feature_psi{feature="amount"}')
        seen = {"healthy_ap": scalar(prometheus, "fraudstream_prequential_average_precision"),
                "healthy_log_loss": scalar(prometheus, "fraudstream_prequential_log_loss"),
                "healthy_amount_psi": amount_psi, "healthy_detectors": values(
                    prometheus, "sum by (detector) (fraudstream_drift_detections_total)"),
                "healthy_s": time.monotonic() - started}
        assert amount_psi < PSI_THRESHOLD, f"amount PSI {amount_psi} before any drift"
        quiet = {"FraudstreamDown", "FraudstreamConsumerLagGrowing", "FraudstreamInvalidEventsHigh"}
        assert not firing(prometheus) & quiet
        promtool_lint(f"http://127.0.0.1:{port}")

        # --- 2. trouble --------------------------------------------------------------------
        garbage = [("garbage", b"g", b"{not json " + str(i).encode()) for i in range(GARBAGE)]
        trouble = drift_records[:len(drift_records) // 2] + garbage + drift_records[len(drift_records) // 2:]
        os.kill(daemon.pid, signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            send(kafka_bootstrap, topics, trouble)
            wait_for(lambda: prometheus.query(ALERTS["FraudstreamDown"]), 20,
                     "FraudstreamDown's expression while the daemon is frozen")
            # the daemon refreshes its lag every 5 s: frozen longer, it reads it first thing
            time.sleep(max(0.0, 6.0 - (time.monotonic() - frozen)))
        finally:
            os.kill(daemon.pid, signal.SIGCONT)
        lagging = daemon.wait_until(
            lambda: prometheus.query(ALERTS["FraudstreamConsumerLagGrowing"]), 30,
            "FraudstreamConsumerLagGrowing's expression after the backlog")
        total = len(healthy_records) + len(trouble)
        daemon.wait_until(drained(prometheus, total), 60, "the daemon to consume the backlog")

        # Bulk expiry needs rows that wait longer than the TTL: this stream has none (its
        # labels come within minutes of event time); promtool's rule tests cover the rule.
        expected = set(ALERTS) - {"FraudstreamDown", "FraudstreamCheckpointStale",
                                  "FraudstreamConsumerLagGrowing", "FraudstreamPendingBulkExpiry"}
        try:
            wait_for(lambda: expected <= firing(prometheus), 20, "the alert expressions")
        except AssertionError:
            raise AssertionError(f"alerts without data: {sorted(expected - firing(prometheus))}\n"
                                 f"{daemon.tail(40)}") from None
        detectors = {r["metric"]["detector"] for r in
                     prometheus.query(ALERTS["FraudstreamDriftDetected"])}
        assert {"adwin", "page_hinkley", "psi"} <= detectors, detectors
        # ... and each fired on the drifted traffic, not only on the daemon's warm-up before it
        detections = values(prometheus, "sum by (detector) (fraudstream_drift_detections_total)")
        assert all(detections[k] > v for k, v in seen["healthy_detectors"].items()), (
            seen["healthy_detectors"], detections)
        for expr in annotation_exprs():
            assert prometheus.query(concrete(expr)), expr
        seen |= {"lag": [r["value"][1] for r in lagging], "detectors": values(
            prometheus, "sum by (detector) (fraudstream_drift_detections_total)"),
            "drift_amount_psi": scalar(prometheus, 'fraudstream_feature_psi{feature="amount"}'),
            "drift_ap": scalar(prometheus, "fraudstream_prequential_average_precision"),
            "drift_log_loss": scalar(prometheus, "fraudstream_prequential_log_loss"),
            "trouble_s": time.monotonic() - started}
        assert seen["drift_amount_psi"] > PSI_THRESHOLD
        invalid = scalar(prometheus, "sum(fraudstream_events_invalid_total)")
        assert invalid == GARBAGE, invalid
        assert missing_panels() == []
        rules = prometheus.rules()
        assert {r["name"] for r in rules} == set(ALERTS)
        assert all(r["health"] in ("ok", "unknown") for r in rules), json.dumps(rules)[:2000]
        promtool_lint(f"http://127.0.0.1:{port}")

        # --- 3. idle: no more checkpoints ----------------------------------------------------------
        last = scalar(prometheus, "fraudstream_checkpoint_last_success_timestamp_seconds")
        assert last is not None and last > time.time() - 60, "no recent checkpoint to go stale"
        daemon.wait_until(lambda: prometheus.query(stale_expr()), STALE_AFTER_S + 15,
                          f"the checkpoint-stale expression ({STALE_AFTER_S} s)")

        # --- 4. stopped --------------------------------------------------------------------------
        assert daemon.terminate(timeout=60) == 0, daemon.tail()
        wait_for(lambda: prometheus.query(ALERTS["FraudstreamDown"]), 20,
                 "FraudstreamDown's expression after the daemon stopped")
    finally:
        prometheus.stop()
        runner.close()
    print(f"live monitoring proof: {seen}, {time.monotonic() - started:.1f} s")


def start_daemon(runner: DaemonRunner, config: Path, artifact: Path) -> Daemon:
    """``fraudstream run --config ... --artifact ...`` as a subprocess; ``runner`` kills it by
    pid at the end if the test has not stopped it."""
    log_path = runner.workdir / "daemon.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fraudstream", "run", "--config", str(config),
             "--artifact", str(artifact), "--log-level", LOG_LEVEL],
            cwd=runner.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=os.environ | DAEMON_ENV, start_new_session=True,
        )
    daemon = Daemon(proc, log_path)
    runner.started.append(daemon)
    return daemon
