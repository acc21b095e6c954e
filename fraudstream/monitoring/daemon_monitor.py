"""The daemon's instruments: metrics, prequential evaluation, drift detection, readiness.

The host (the Kafka daemon, the HTTP-only server or a replay) is handed this monitor and
calls its hooks: ``attach`` once, ``on_batch`` after every batch, ``on_idle`` every loop,
``on_checkpoint`` / ``on_checkpoint_failed``, and ``state_dict`` / ``load_state_dict`` so the
prequential window and the drift detectors survive a restart inside the checkpoint. The
monitor reads the host only through :class:`~fraudstream.monitoring.host.MonitoredHost` and
changes nothing of it: :meth:`DaemonMonitor.flush` returns the drift reports, and the host
decides what they mean (adapt training, checkpoint, nothing).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from fraudstream.config import Settings
from fraudstream.monitoring.drift import DriftMonitor, DriftReport
from fraudstream.monitoring.host import MonitoredHost
from fraudstream.monitoring.loss import log_loss_each
from fraudstream.monitoring.metrics import DEFAULT_INVALID_REASONS, Metrics
from fraudstream.monitoring.prequential import Prequential

log = logging.getLogger(__name__)

SNAPSHOT_EVERY_S = 2.0
LAG_EVERY_S = 5.0
FLUSH_EVERY_S = 0.25  # prequential and drift updates are batched over polls: fixed cost per call
FLUSH_ROWS = 20_000


class DaemonMonitor:
    """Everything the daemon reports, fed from its hooks.

    ``serve``: the host should serve these metrics (and its API) over HTTP; the Kafka daemon
    does so while it runs (:meth:`fraudstream.daemon.app.Daemon.open`).
    """

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None, serve: bool = True):
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.serve = serve
        self.metrics: Metrics | None = None
        self.prequential = Prequential(settings.monitoring.prequential_window, settings.thresholds.review)
        self.drift: DriftMonitor | None = None
        self.host: MonitoredHost | None = None
        self.snapshot: dict[str, Any] = {}
        self.detections: list[Any] = []
        self._next_snapshot = 0.0
        self._next_lag = 0.0
        self._next_flush = 0.0
        self._scored: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._joined: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._buffered = 0
        self._expected_version: int | None = None  # the served version the expected score is of

    # -- lifecycle ------------------------------------------------------------------------

    def attach(self, host: MonitoredHost) -> None:
        """Called by the host once its state exists (restored or new)."""
        from fraudstream.features import REASONS

        self.host = host
        topics = self.settings.kafka.topics
        self.metrics = Metrics(
            self.registry,
            topics=[topics.transactions, topics.labels],
            invalid_reasons=tuple(DEFAULT_INVALID_REASONS) + tuple(REASONS),
            feature_names=host.features.feature_names,
            ap_alert_threshold=self.settings.monitoring.ap_alert_threshold,
        )
        self.drift = DriftMonitor(self.settings.monitoring, reference=host.drift_reference, metrics=self.metrics)
        if host.restored_monitoring_state:
            self.load_state_dict(host.restored_monitoring_state)
        self.metrics.model_version.set(host.served_version)
        lifecycle = host.lifecycle
        self._lifecycle_counts = (0, 0) if lifecycle is None else (lifecycle.promotions, lifecycle.rollbacks)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        host = self.host
        checks = {
            "state_loaded": host is not None,
            "partitions_assigned": bool(host and host.assigned_partitions()),
            "broker_reachable": bool(host and host.broker_reachable()),
        }
        return all(checks.values()), checks

    # -- hooks ----------------------------------------------------------------------------

    def on_batch(self, host: MonitoredHost, out, records: list | None = None) -> None:
        m = self.metrics
        topics = self.settings.kafka.topics
        now = time.time()
        if records:
            m.batch_size.observe(len(records))
            counts: dict[str, int] = {}
            for r in records:
                counts[r.topic] = counts.get(r.topic, 0) + 1
            for topic, n in counts.items():
                m.events_consumed.labels(topic=topic).inc(n)
            produced = [r.timestamp / 1000.0 for r in records if r.topic == topics.transactions and r.timestamp and r.timestamp > 0]
            for t in produced:
                m.score_latency.observe(max(0.0, now - t))
        m.batch_seconds.labels(stage="total").observe(out.seconds)
        for reason, n in out.invalid.items():
            m.events_invalid.labels(reason=reason).inc(n)
        decisions: dict[str, int] = {}
        for _, score in out.scores:
            decisions[score["decision"]] = decisions.get(score["decision"], 0) + 1
        for decision, n in decisions.items():
            m.scores.labels(decision=decision).inc(n)
        m.labels_unmatched.inc(out.unmatched_labels)
        m.pending_expired.inc(out.expired)
        if out.bulk_expiry:
            m.pending_bulk_expiries.inc()
        m.pending_rows.set(host.pending_rows())
        self.on_learned(host, out.steps)
        self.collect(out)

    def on_learned(self, host: MonitoredHost, steps: list) -> None:
        """Training steps finished (with a batch, or later by the learning thread)."""
        m = self.metrics
        for step in steps:
            if step.accepted:
                m.train_steps.inc()
                m.train_rows.labels(source="fresh").inc(step.rows)
                m.train_rows.labels(source="replay").inc(step.replayed)
                m.train_loss.set(step.loss)
            else:
                m.guard_rejections.labels(reason="non_finite_loss" if not np.isfinite(step.loss) else "non_finite_weights").inc()
        legit, fraud = host.replay_filled()
        m.replay_rows.labels(**{"class": "legit"}).set(legit)
        m.replay_rows.labels(**{"class": "fraud"}).set(fraud)
        m.model_version.set(host.served_version)

    def collect(self, out) -> None:
        """Keep a batch's scored and joined rows for the next :meth:`flush`."""
        if out.scored is not None and len(out.scored):
            self._scored.append((out.scored, out.scored_times, out.scored_X))
            self._buffered += len(out.scored)
        joined = out.joined
        if joined is not None and len(joined.ids):
            self.metrics.labels_joined.inc(len(joined.ids))
            customers = np.asarray([tx.customer for tx in joined.contexts], dtype=object)
            self._joined.append((joined.scores, joined.labels, customers, joined.times))
            self._buffered += len(joined.ids)

    def flush(self, host: MonitoredHost) -> list[DriftReport]:
        """Prequential and drift updates for every row collected since the last flush; the
        drift reports, each naming the configured action, for the host to carry out."""
        reports = []
        if self._scored or self._joined:
            self._judge_the_data_not_the_model(host)
        if self._scored:
            scores, times, X = (np.concatenate(parts) for parts in zip(*self._scored))
            reports.append(self.drift.update_scored_many(scores, times, X))
        if self._joined:
            scores, labels, customers, times = (np.concatenate(parts) for parts in zip(*self._joined))
            self.prequential.update_many(scores, labels, customers, times)
            reports.append(self.drift.update_labelled_many(scores, labels, times))
        self._scored, self._joined, self._buffered = [], [], 0
        for report in reports:
            self.detections.extend(report.detections)  # drift.py logs each detection
        self.detections = self.detections[-100:]
        return reports

    def _judge_the_data_not_the_model(self, host: MonitoredHost) -> None:
        """Tell the drift monitor when the feature windows are warm (or
        ``monitoring.drift_warmup_days`` after their first event), and the mean score the
        served model gives the reference sample, re-scored whenever the served version
        changed (a forward pass over about a thousand rows), and its log loss there."""
        features, days = host.features, self.settings.monitoring.drift_warmup_days
        if days is None or features.first_event_us is None:
            warm_from = features.warm_from_us
        else:
            warm_from = features.first_event_us + days * 86_400e6
        self.drift.warm_from = None if warm_from is None else warm_from / 1e6
        sample = self.drift.reference_sample
        version = host.served_version
        if sample is not None and version != self._expected_version:
            scores = host.score_served(sample)
            self.drift.expected_score = float(np.mean(scores))
            if self.drift.reference_labels is not None:
                self.drift.expected_loss = float(np.mean(log_loss_each(self.drift.reference_labels, scores)))
            self._expected_version = version

    def on_idle(self, host: MonitoredHost) -> list[DriftReport]:
        """Every loop: flush when due, refresh the gauges; the drift reports of a flush."""
        now = time.monotonic()
        reports = []
        if self._buffered and (now >= self._next_flush or self._buffered >= FLUSH_ROWS):
            self._next_flush = now + FLUSH_EVERY_S
            reports = self.flush(host)
        if now >= self._next_snapshot:
            self._next_snapshot = now + SNAPSHOT_EVERY_S
            self.snapshot = self.prequential.snapshot()
            self.metrics.set_prequential(self.snapshot)
            self._export_lifecycle(host)
            backlog = host.learning_backlog()
            if backlog is not None:
                self.metrics.train_backlog.set(backlog)
            self.metrics.partitions_assigned.clear()
            per_topic: dict[str, int] = {}
            for topic, _ in host.assigned_partitions():
                per_topic[topic] = per_topic.get(topic, 0) + 1
            for topic, n in per_topic.items():
                self.metrics.partitions_assigned.labels(topic=topic).set(n)
        if now >= self._next_lag:
            lag = host.consumer_lag()
            if lag is not None:
                self._next_lag = now + LAG_EVERY_S
                self.metrics.set_consumer_lag(lag)
        return reports

    def _export_lifecycle(self, host: MonitoredHost) -> None:
        """Count promotions and rollbacks made since the last look (by the rule or on request)
        and export each model's window AP."""
        lifecycle = host.lifecycle
        if lifecycle is None:
            return
        promotions, rollbacks = self._lifecycle_counts
        self.metrics.model_promotions.inc(max(0, lifecycle.promotions - promotions))
        self.metrics.model_rollbacks.inc(max(0, lifecycle.rollbacks - rollbacks))
        self._lifecycle_counts = (lifecycle.promotions, lifecycle.rollbacks)
        window = lifecycle.window_metrics()
        for role in ("champion", "challenger"):
            ap = window[role]["average_precision"]
            self.metrics.model_average_precision.labels(role=role).set(float("nan") if ap is None else ap)
        self.metrics.model_version.set(host.served_version)

    def on_checkpoint(self, host: MonitoredHost, info, seconds: float) -> None:
        self.metrics.checkpoint_seconds.observe(seconds)
        self.metrics.checkpoint_last_success.set(time.time())

    def on_checkpoint_failed(self, host: MonitoredHost, exc: Exception) -> None:
        self.metrics.checkpoint_failures.inc()

    # -- state ----------------------------------------------------------------------------

    def checkpoint_score(self) -> float | None:
        """The prequential AP used to keep the best checkpoint (call :meth:`flush` first)."""
        return self.prequential.snapshot().get("average_precision")

    def state_dict(self) -> dict[str, dict[str, Any]]:
        """The prequential window and the detectors. A checkpoint covers every processed row,
        so the host calls :meth:`flush` first (and acts on its reports)."""
        return {"prequential": self.prequential.state_dict(), "drift": self.drift.state_dict()}

    def load_state_dict(self, state: dict[str, dict[str, Any]]) -> None:
        if "prequential" in state:
            self.prequential.load_state_dict(state["prequential"])
        if "drift" in state:
            self.drift.load_state_dict(state["drift"])
