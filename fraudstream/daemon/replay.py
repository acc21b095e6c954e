"""``fraudstream replay``: the daemon's pipeline over files, as fast as possible, for backtests.

Transactions and label events are merged in event-time order and fed to the same
:class:`~fraudstream.daemon.pipeline.Pipeline` that serves Kafka, batch by batch. Every
transaction is scored before its label is learned, so the scores and the report are
prequential: what the daemon would have scored and how well, had it run on that stream.

Given the daemon's monitor (``fraudstream.monitoring.daemon_monitor.DaemonMonitor``, built
by the caller because data flows one way), the replay also runs the daemon's drift detection
and its configured action (``adapt`` changes training as it would in the daemon). The
monitor is flushed after every batch instead of on a wall-clock interval, so a replay is
deterministic; each detection is recorded with the number of labelled rows seen until then.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.config import Settings
from fraudstream.consumers.files import merge_events, parse_duration
from fraudstream.daemon.decode import LABEL, TX, Incoming
from fraudstream.daemon.pipeline import Pipeline
from fraudstream.features import read_events
from fraudstream.models.evaluation import average_precision, card_precision_per_day, day_index, roc_auc

log = logging.getLogger(__name__)

DAY = 86_400.0


@dataclass
class ReplayResult:
    """Per labelled transaction, in the order labels were learned: its score at transaction
    time, label, customer and time; and the drift detections, in the order they fired."""

    scores: pd.DataFrame  # transaction_id, score, model_version (every valid transaction)
    scored: np.ndarray
    labels: np.ndarray
    customers: np.ndarray
    times: np.ndarray
    counters: dict[str, Any] = field(default_factory=dict)
    detections: list[dict[str, Any]] = field(default_factory=list)

    def labelled_after(self, since: float, detection: dict[str, Any]) -> int:
        """Labelled rows of transactions at or after ``since`` learned up to and including
        the row that triggered ``detection``: its delay, in labelled rows, after a change at
        ``since`` (only meaningful for detectors of labelled rows, i.e. ADWIN)."""
        return int(np.count_nonzero(self.times[: detection["labelled_rows"]] >= since))

    def metrics(self, since: float | None = None, k: int = 100) -> dict[str, float | None]:
        """ROC AUC, AP and card precision@k over labelled transactions at or after ``since``."""
        keep = np.ones(len(self.labels), bool) if since is None else self.times >= since
        y, s = self.labels[keep], self.scored[keep]
        if len(y) == 0 or y.min() == y.max():
            return {"transactions": int(len(y)), "average_precision": None, "roc_auc": None, f"card_precision_at_{k}": None}
        cp = card_precision_per_day(y, s, self.customers[keep], day_index(self.times[keep]), k)
        return {
            "transactions": int(len(y)),
            "frauds": int(y.sum()),
            "average_precision": average_precision(y, s),
            "roc_auc": roc_auc(y, s),
            f"card_precision_at_{k}": cp.mean,
        }

    def last_days(self, days: float) -> dict[str, float | None]:
        return self.metrics(since=float(self.times.max()) - days * DAY if len(self.times) else None)

    def daily(self, k: int = 100) -> list[dict[str, Any]]:
        day = day_index(self.times)
        rows = []
        for d in np.unique(day):
            m = day == d
            y, s = self.labels[m], self.scored[m]
            two = y.min() != y.max()
            cp = card_precision_per_day(y, s, self.customers[m], day[m], k).mean
            rows.append({
                "day": str(np.datetime64(int(d), "D")), "transactions": int(m.sum()), "frauds": int(y.sum()),
                "average_precision": average_precision(y, s) if two else None,
                "roc_auc": roc_auc(y, s) if two else None, f"card_precision_at_{k}": cp,
            })
        return rows


class ReplayHost:
    """What the daemon's monitor reads of a daemon, for a replay: the pipeline, no Kafka.

    A ``checkpoint`` drift action cannot write a checkpoint here (a replay has none); it is
    counted instead, so the report shows when the daemon would have written one.
    """

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.assigned: set[tuple[str, int]] = set()
        self.source = None
        self.checkpoints_requested = 0

    def request_checkpoint(self, reason: str, tags: list[str] | None = None) -> None:
        self.checkpoints_requested += 1


def run_replay(
    settings: Settings,
    data: Path,
    labels: Path | None = None,
    label_delay: str | None = "7d",
    artifact: Path | None = None,
    on_batch: Callable[[int, int, Any], None] | None = None,
    monitor: Any = None,
    pipeline: Pipeline | None = None,
) -> tuple[ReplayResult, Pipeline]:
    """Replay ``data`` (and ``labels``) through a new pipeline; return what it scored.

    ``monitor`` (a ``DaemonMonitor`` made with ``serve=False``) adds drift detection and
    the configured drift action, as in the daemon; without it nothing is monitored.
    ``pipeline`` continues an existing pipeline (e.g. restored from a checkpoint, with its
    model and feature windows warm) instead of creating one from ``artifact``.
    """
    fields = settings.features.fields
    transactions = read_events(data, fields)
    label_frame = read_events(labels, fields) if labels else None
    delay = None if labels else parse_duration(label_delay) if label_delay else None
    merged = merge_events(transactions, fields, label_frame, delay, settings.features.epoch_unit)
    if pipeline is None:
        pipeline = Pipeline.create(settings, artifact)
    host = ReplayHost(pipeline)
    if monitor is not None:
        monitor.attach(host)
    detections: list[dict[str, Any]] = []
    kinds = {"tx": TX, "label": LABEL}
    ids, scores, versions = [], [], []
    joined_scores, joined_labels, joined_customers, joined_times = [], [], [], []
    invalid: dict[str, int] = {}
    total = len(merged.events)
    done = 0
    for batch_kinds, batch_events in merged.batches(settings.kafka.batch_size):
        batch = [Incoming(kinds[k], e) for k, e in zip(batch_kinds, batch_events)]
        out = pipeline.process(batch, received_at=0.0)
        for _, score in out.scores:
            ids.append(score["transaction_id"])
            scores.append(score["score"])
            versions.append(score["model_version"])
        for reason, n in out.invalid.items():
            invalid[reason] = invalid.get(reason, 0) + n
        if out.joined is not None and len(out.joined.ids):
            joined_scores.append(out.joined.scores)
            joined_labels.append(out.joined.labels)
            joined_customers.extend(tx.customer for tx in out.joined.contexts)
            joined_times.append(out.joined.times)
        if monitor is not None:
            monitor.on_batch(host, out, None)
            for report in monitor.flush(pipeline):  # detects and carries out the action
                detections.extend(_detection_record(d, report.action) for d in report.detections)
        done += len(batch)
        if on_batch is not None:
            on_batch(done, total, pipeline)
    cat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)  # noqa: E731
    result = ReplayResult(
        scores=pd.DataFrame({"transaction_id": ids, "score": scores, "model_version": versions}),
        scored=cat(joined_scores, np.float64),
        labels=cat(joined_labels, np.int8),
        customers=np.asarray(joined_customers, dtype=object),
        times=cat(joined_times, np.float64),
        counters={
            "events": total,
            "transactions_scored": len(ids),
            "labels_joined": len(joined_customers),
            "invalid": invalid,
            "train_steps": pipeline.trainer.steps,
            "rows_learned": pipeline.trainer.rows_learned,
            "rejected_steps": pipeline.trainer.rejected_steps,
            "pending_at_end": len(pipeline.pending),
            "late_events": pipeline.features.late_events,
            **({"drift_action": settings.monitoring.drift_action, "drift_detections": len(detections),
                "drift_checkpoints_requested": host.checkpoints_requested} if monitor is not None else {}),
        },
        detections=detections,
    )
    return result, pipeline


def _detection_record(detection: Any, action: str) -> dict[str, Any]:
    """A detection as plain data: detector, signal, event time (Unix and RFC 3339), the rows
    of its signal seen until then (``labelled_rows`` for ADWIN, ``scored_rows`` otherwise),
    the action taken and the detector's figures."""
    values = dict(detection.values)
    labelled = values.pop("labelled_rows", None)
    scored = values.pop("scored_rows", None)
    when = detection.event_time
    return {
        "detector": detection.detector,
        "signal": detection.signal,
        "event_time": when,
        "event_time_utc": str(np.datetime64(int(when * 1000), "ms")) + "Z" if when is not None else None,
        "labelled_rows": labelled,
        "scored_rows": scored,
        "action": action,
        "values": values,
    }


def write_report(result: ReplayResult, out: Path, title: str = "fraudstream replay") -> dict[str, Any]:
    """``scores.csv``, ``report.json``, ``report.md`` and ``rolling_ap.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    result.scores.to_csv(out / "scores.csv", index=False)
    report = {
        "overall": result.metrics(),
        "last_28_days": result.last_days(28),
        "counters": result.counters,
        "daily": result.daily(),
        "drift_detections": result.detections,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    lines = [f"# {title}", "", "| window | transactions | frauds | ROC AUC | AP | card precision@100 |", "|---|---|---|---|---|---|"]
    for name in ("overall", "last_28_days"):
        m = report[name]
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        lines.append(f"| {name} | {m['transactions']} | {m.get('frauds', '-')} | {fmt(m['roc_auc'])} | "
                     f"{fmt(m['average_precision'])} | {fmt(m['card_precision_at_100'])} |")
    lines += ["", "Counters: " + ", ".join(f"{k}={v}" for k, v in result.counters.items()), ""]
    lines += _detections_markdown(result.detections)
    lines += ["![rolling average precision](rolling_ap.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    _plot_rolling_ap(result, out / "rolling_ap.png")
    return report


def _detections_markdown(detections: list[dict[str, Any]], limit: int = 50) -> list[str]:
    if not detections:
        return []
    lines = ["## Drift detections", "",
             "| detector | signal | event time (UTC) | labelled rows | scored rows | action |",
             "|---|---|---|---|---|---|"]
    for d in detections[:limit]:
        cell = lambda v: "-" if v is None else str(v)  # noqa: E731
        lines.append(f"| {d['detector']} | {d['signal']} | {cell(d['event_time_utc'])} | "
                     f"{cell(d['labelled_rows'])} | {cell(d['scored_rows'])} | {d['action']} |")
    if len(detections) > limit:
        lines.append(f"| ... {len(detections) - limit} more in report.json | | | | | |")
    return lines + [""]


def _plot_rolling_ap(result: ReplayResult, path: Path, window_days: int = 7) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    day = day_index(result.times)
    xs, ys = [], []
    for d in np.unique(day):
        m = (day > d - window_days) & (day <= d)
        y = result.labels[m]
        if y.min() != y.max():
            xs.append(np.datetime64(int(d), "D").astype("datetime64[ms]").astype(object))
            ys.append(average_precision(y, result.scored[m]))
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(xs, ys)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"AP, trailing {window_days} days")
    ax.set_title("Prequential average precision over event time")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
