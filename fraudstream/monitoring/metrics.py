"""Every Prometheus metric fraudstream exports, declared in one place.

Names follow ``fraudstream_<subsystem>_<name>_<unit>``; counters end in ``_total``. Label
values are few and pre-initialised where they are known, so a series exists at 0 before the
first event and ``rate()`` / alert rules see it from the first scrape. The registry is an
argument: the daemon passes its own, tests pass a fresh ``CollectorRegistry`` and read values
with ``registry.get_sample_value``. ``docs/monitoring.md`` describes each metric; keep names
stable, dashboards and alert rules depend on them.

>>> from prometheus_client import CollectorRegistry
>>> registry = CollectorRegistry()
>>> m = Metrics(registry)
>>> m.events_consumed.labels(topic="transactions").inc(3)
>>> registry.get_sample_value("fraudstream_events_consumed_total", {"topic": "transactions"})
3.0
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

import fraudstream

NAMESPACE = "fraudstream"

# Pre-initialised label values. Others appear as they are first used.
DEFAULT_TOPICS = ("transactions", "labels")
# The decoder's reasons; the daemon adds fraudstream.features.REASONS (the parser's).
#: The daemon's own reasons: decoding, then the event-time checks (future, stale).
DEFAULT_INVALID_REASONS = ("empty", "oversize", "not_utf8", "not_json", "not_object",
                           "future_timestamp", "stale_timestamp")
DEFAULT_GUARD_REASONS = ("non_finite_loss", "non_finite_weights")
DECISIONS = ("approve", "review", "block")
BATCH_STAGES = ("total", "decode", "features", "score", "produce", "learn")
TRAIN_SOURCES = ("fresh", "replay")
REPLAY_CLASSES = ("legit", "fraud")
DRIFT_SIGNALS = (
    ("adwin", "log_loss"),
    ("page_hinkley", "score_mean"),
    ("psi", "feature_distribution"),
)
LIFECYCLE_ROLES = ("champion", "challenger")
PREQUENTIAL_GAUGES = (
    "roc_auc",
    "average_precision",
    "log_loss",
    "card_precision_at_100",
    "fraud_rate",
    "mean_score",
    "alert_rate",
)

BATCH_SIZE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000)
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
CHECKPOINT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """The daemon's metrics, registered on ``registry``.

    Attributes are plain ``prometheus_client`` metrics, used directly on the hot path
    (``m.scores.labels(decision="block").inc(n)``); the ``set_*`` / ``observe_*`` helpers take
    the dict-shaped outputs of :mod:`fraudstream.monitoring.prequential` and
    :mod:`fraudstream.monitoring.drift`.

    ``topics`` are the topic names the daemon consumes (pre-initialised for
    ``events_consumed``), ``invalid_reasons`` and ``guard_reasons`` the reason codes known at
    start. ``process=True`` adds the standard ``process_*`` and ``python_info`` collectors.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        topics: Iterable[str] = DEFAULT_TOPICS,
        invalid_reasons: Iterable[str] = DEFAULT_INVALID_REASONS,
        guard_reasons: Iterable[str] = DEFAULT_GUARD_REASONS,
        feature_names: Iterable[str] = (),
        ap_alert_threshold: float | None = None,
        process: bool = True,
    ):
        self.registry = registry
        r = registry
        ns = NAMESPACE

        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)

        # --- build ---------------------------------------------------------------------
        self.build = Info("build", "Version of fraudstream and its main libraries.",
                          namespace=ns, registry=r)
        self.build.info(build_labels())
        self.start_time = Gauge(
            "start_time_seconds", "Unix time the daemon started (for start-up grace periods).",
            namespace=ns, registry=r)
        self.start_time.set(time.time())

        # --- input ---------------------------------------------------------------------
        self.events_consumed = Counter(
            "events_consumed", "Records polled from Kafka (or a file source), by topic.",
            ["topic"], namespace=ns, registry=r)
        self.events_invalid = Counter(
            "events_invalid", "Events rejected by validation and sent to the DLQ, by reason.",
            ["reason"], namespace=ns, registry=r)
        self.consumer_lag = Gauge(
            "consumer_lag_messages", "Messages between the consumer position and the log end.",
            ["topic", "partition"], namespace=ns, registry=r)
        self.partitions_assigned = Gauge(
            "partitions_assigned", "Partitions currently assigned to this consumer, by topic.",
            ["topic"], namespace=ns, registry=r)

        # --- scoring -------------------------------------------------------------------
        self.scores = Counter(
            "scores", "Scores produced, by decision.", ["decision"], namespace=ns, registry=r)
        self.batch_size = Histogram(
            "batch_size_events", "Events per polled batch.",
            namespace=ns, registry=r, buckets=BATCH_SIZE_BUCKETS)
        self.score_latency = Histogram(
            "score_latency_seconds",
            "Time from the record's produce timestamp to its score being produced.",
            namespace=ns, registry=r, buckets=LATENCY_BUCKETS)
        self.batch_seconds = Histogram(
            "batch_processing_seconds", "Wall time spent on one polled batch, by stage.",
            ["stage"], namespace=ns, registry=r, buckets=LATENCY_BUCKETS)

        # --- labels and pending store --------------------------------------------------
        self.labels_joined = Counter(
            "labels_joined", "Label events joined with a pending scored row.",
            namespace=ns, registry=r)
        self.labels_unmatched = Counter(
            "labels_unmatched", "Label events with no pending row (unknown, duplicate, expired).",
            namespace=ns, registry=r)
        self.pending_expired = Counter(
            "pending_expired", "Pending rows dropped unlabelled after the TTL or size cap.",
            namespace=ns, registry=r)
        self.pending_bulk_expiries = Counter(
            "pending_bulk_expiries", "Batches in which more pending rows expired unlabelled than "
            "training.pending_bulk_expiry_rows (an event-time jump, or labels that stopped).",
            namespace=ns, registry=r)
        self.pending_rows = Gauge(
            "pending_rows", "Scored rows waiting for a label.", namespace=ns, registry=r)

        # --- training ------------------------------------------------------------------
        self.train_steps = Counter(
            "train_steps", "Accepted online training steps.", namespace=ns, registry=r)
        self.train_rows = Counter(
            "train_rows", "Rows learned in accepted steps, fresh or replayed.",
            ["source"], namespace=ns, registry=r)
        self.train_backlog = Gauge(
            "train_backlog_batches", "Joined batches handed to the learning thread and not learned yet.",
            namespace=ns, registry=r)
        self.train_loss = Gauge(
            "train_loss", "Loss of the last accepted training step.", namespace=ns, registry=r)
        self.guard_rejections = Counter(
            "guard_rejections", "Training steps rejected and rolled back, by reason.",
            ["reason"], namespace=ns, registry=r)
        self.replay_rows = Gauge(
            "replay_rows", "Rows held in the replay reservoir, by class.",
            ["class"], namespace=ns, registry=r)

        # --- prequential evaluation ------------------------------------------------------
        self.prequential = {
            name: Gauge(f"prequential_{name}",
                        f"Prequential {name.replace('_', ' ')} over the last N labelled rows "
                        "(scored before learning); NaN while undefined.",
                        namespace=ns, registry=r)
            for name in PREQUENTIAL_GAUGES
        }
        self.prequential_rows = Gauge(
            "prequential_window_rows", "Labelled rows in the prequential window.",
            namespace=ns, registry=r)
        self.ap_alert_threshold = Gauge(
            "alert_threshold_average_precision",
            "Configured floor for prequential average precision (used by the alert rule).",
            namespace=ns, registry=r)

        # --- drift -----------------------------------------------------------------------
        self.drift_detections = Counter(
            "drift_detections", "Drift detections, by detector and monitored signal.",
            ["detector", "signal"], namespace=ns, registry=r)
        self.drift_last_detection = Gauge(
            "drift_last_detection_timestamp_seconds",
            "Event time (Unix seconds) of the last detection, by detector.",
            ["detector"], namespace=ns, registry=r)
        self.feature_psi = Gauge(
            "feature_psi", "Population stability index of a feature against the reference.",
            ["feature"], namespace=ns, registry=r)

        # --- checkpoints and model -----------------------------------------------------------
        self.checkpoint_seconds = Histogram(
            "checkpoint_duration_seconds", "Time to write one checkpoint durably.",
            namespace=ns, registry=r, buckets=CHECKPOINT_BUCKETS)
        self.checkpoint_last_success = Gauge(
            "checkpoint_last_success_timestamp_seconds",
            "Unix time of the last durable checkpoint.", namespace=ns, registry=r)
        self.checkpoint_failures = Counter(
            "checkpoint_failures", "Checkpoint writes that failed.", namespace=ns, registry=r)
        self.model_version = Gauge(
            "model_version", "Sequence number of the model version in use.",
            namespace=ns, registry=r)
        self.model_promotions = Counter(
            "model_promotions", "Model versions promoted to serving.", namespace=ns, registry=r)
        self.model_rollbacks = Counter(
            "model_rollbacks", "Model versions rolled back.", namespace=ns, registry=r)
        self.model_average_precision = Gauge(
            "model_average_precision",
            "Prequential average precision of the served model (champion) and of the online "
            "learner (challenger) over the lifecycle window; NaN while undefined or off.",
            ["role"], namespace=ns, registry=r)

        self._lag_series: set[tuple[str, str]] = set()
        self._preinitialise(topics, invalid_reasons, guard_reasons, feature_names)
        if ap_alert_threshold is not None:
            self.ap_alert_threshold.set(ap_alert_threshold)

    def _preinitialise(self, topics, invalid_reasons, guard_reasons, feature_names) -> None:
        for topic in topics:
            self.events_consumed.labels(topic=topic)
        for reason in invalid_reasons:
            self.events_invalid.labels(reason=reason)
        for reason in guard_reasons:
            self.guard_rejections.labels(reason=reason)
        for decision in DECISIONS:
            self.scores.labels(decision=decision)
        for stage in BATCH_STAGES:
            self.batch_seconds.labels(stage=stage)
        for source in TRAIN_SOURCES:
            self.train_rows.labels(source=source)
        for cls in REPLAY_CLASSES:
            self.replay_rows.labels(**{"class": cls})
        for detector, signal in DRIFT_SIGNALS:
            self.drift_detections.labels(detector=detector, signal=signal)
        for feature in feature_names:
            self.feature_psi.labels(feature=feature)
        for gauge in self.prequential.values():
            gauge.set(math.nan)
        for role in LIFECYCLE_ROLES:
            self.model_average_precision.labels(role=role).set(math.nan)
        self.train_loss.set(math.nan)

    # --- helpers for dict-shaped inputs ------------------------------------------------------

    def set_prequential(self, snapshot: Mapping[str, Any]) -> None:
        """Copy a :meth:`Prequential.snapshot` into the gauges (None becomes NaN)."""
        for name, gauge in self.prequential.items():
            value = snapshot.get(name)
            gauge.set(math.nan if value is None else float(value))
        self.prequential_rows.set(float(snapshot.get("rows", 0)))

    def observe_detections(self, detections: Iterable[Any]) -> None:
        """Count drift detections (objects with ``detector``, ``signal``, ``event_time``)."""
        for d in detections:
            self.drift_detections.labels(detector=d.detector, signal=d.signal).inc()
            if d.event_time is not None and math.isfinite(d.event_time):
                self.drift_last_detection.labels(detector=d.detector).set(d.event_time)

    def set_feature_psi(self, values: Mapping[str, float]) -> None:
        for feature, value in values.items():
            self.feature_psi.labels(feature=feature).set(value)

    def set_consumer_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """``{(topic, partition): messages}``; partitions no longer assigned are removed.

        Removing series of revoked partitions keeps a rebalance from leaving a stale lag that
        would hold the "lag growing" alert open.
        """
        current = {(topic, str(partition)) for topic, partition in lag}
        for topic, partition in self._lag_series - current:
            self.consumer_lag.remove(topic, partition)
        for (topic, partition), value in lag.items():
            self.consumer_lag.labels(topic=topic, partition=str(partition)).set(value)
        self._lag_series = current


def build_labels() -> dict[str, str]:
    """Versions for the build info metric, read without importing heavy libraries."""
    from importlib import metadata

    def version_of(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "absent"

    tensorflow = version_of("tensorflow-cpu")
    if tensorflow == "absent":
        tensorflow = version_of("tensorflow")
    return {
        "version": fraudstream.__version__,
        "python": platform.python_version(),
        "tensorflow": tensorflow,
        "river": version_of("river"),
        "kafka_python": version_of("kafka-python"),
    }
