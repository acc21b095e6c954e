"""``fraudstream replay``: the daemon's pipeline over files, as fast as possible, for backtests.

Transactions and label events are merged in event-time order and fed to the same
:class:`~fraudstream.daemon.engine.Engine` that serves Kafka, batch by batch. Every
transaction is scored before its label is learned, so the scores and the report are
prequential: what the daemon would have scored and how well, had it run on that stream.

Given the daemon's monitor (``fraudstream.monitoring.daemon_monitor.DaemonMonitor``, built
by the caller because data flows one way), the replay also runs the daemon's drift detection
and its configured action (``adapt`` changes training as it would in the daemon). The
monitor is flushed after every batch instead of on a wall-clock interval, so a replay is
deterministic; each detection is recorded with the number of labelled rows seen until then.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.config import Settings
from fraudstream.consumers.files import merge_chunks, parse_duration
from fraudstream.daemon.decode import LABEL, TX, Incoming
from fraudstream.daemon.engine import Engine
from fraudstream.daemon.host import EngineHost
from fraudstream.features import EventChunks
from fraudstream.models.evaluation import average_precision, card_precision_per_day, day_index, roc_auc
from fraudstream.monitoring.daemon_monitor import DaemonMonitor

log = logging.getLogger(__name__)

DAY = 86_400.0
LEARNING_SWITCH_INTERVAL_S = 0.0002  # see run_replay


@dataclass
class ReplayResult:
    """Per labelled transaction, in the order labels were learned: its score at transaction
    time, label, customer and time; and the drift detections, in the order they fired."""

    scores: pd.DataFrame | None  # id, score, model_version of every valid transaction (None: written to a file)
    scored: np.ndarray
    labels: np.ndarray
    customers: np.ndarray  # int32 codes numbered in the order of the customer ids (see _Codes)
    times: np.ndarray
    counters: dict[str, Any] = field(default_factory=dict)
    detections: list[dict[str, Any]] = field(default_factory=list)

    def since(self, start: float | None) -> ReplayResult:
        """The labelled transactions at or after ``start`` (all when None); the scores,
        counters and detections are kept whole."""
        if start is None:
            return self
        keep = self.times >= start
        return dataclasses.replace(self, scored=self.scored[keep], labels=self.labels[keep],
                                   customers=self.customers[keep], times=self.times[keep])

    def metrics(self, since: float | None = None, k: int = 100) -> dict[str, float | None]:
        """ROC AUC, AP and card precision@k over labelled transactions at or after ``since``."""
        window = self.since(since)  # copies only when a window is asked for
        y, s = window.labels, window.scored
        if len(y) == 0 or y.min() == y.max():
            return {"transactions": int(len(y)), "average_precision": None, "roc_auc": None, f"card_precision_at_{k}": None}
        cp = card_precision_per_day(y, s, window.customers, day_index(window.times), k)
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


class ReplayHost(EngineHost):
    """The host of a replay: the engine, no Kafka, no checkpoints.

    A ``checkpoint`` drift action cannot write a checkpoint here (a replay has none); it is
    counted instead, so the report shows when the daemon would have written one.
    """

    def __init__(self, engine: Engine, monitor: DaemonMonitor | None = None):
        self.engine = engine
        self.monitor = monitor
        self.checkpoints_requested = 0

    def request_checkpoint(self, reason: str, tags: list[str] | None = None) -> None:
        self.checkpoints_requested += 1


def run_replay(
    settings: Settings,
    data: Path,
    labels: Path | None = None,
    label_delay: str | None = "7d",
    artifact: Path | None = None,
    on_batch: Callable[[int, int | None, Any], None] | None = None,
    monitor: Any = None,
    pipeline: Engine | None = None,
    start: float | None = None,
    warm_from: Path | None = None,
    scores_to: Path | None = None,
) -> tuple[ReplayResult, Engine]:
    """Replay ``data`` (and ``labels``) through a new pipeline; return what it scored.

    The files are read ``replay.chunk_rows`` rows at a time (see
    :func:`~fraudstream.consumers.files.merge_chunks`), so memory does not grow with them.
    ``start`` (Unix seconds): events before it only fill the feature windows, as the
    history before a backtest's first day; nothing before it is scored or learned.
    ``warm_from`` fills the windows from a history file first, as ``run --warm-from`` does.
    ``monitor`` (a ``DaemonMonitor`` made with ``serve=False``) adds drift detection and
    the configured drift action, as in the daemon; without it nothing is monitored.
    ``pipeline`` continues an existing pipeline (e.g. restored from a checkpoint, with its
    model and feature windows warm) instead of creating one from ``artifact``.
    ``scores_to``: write every score to this CSV file as the replay goes, instead of
    keeping them in ``ReplayResult.scores``.
    """
    fields = settings.features.fields
    chunk_rows = settings.replay.chunk_rows
    transactions = EventChunks(data, fields, chunk_rows)
    label_chunks = EventChunks(labels, fields, chunk_rows) if labels else None
    delay = None if labels else parse_duration(label_delay) if label_delay else None
    if pipeline is None:
        pipeline = Engine.create(settings, artifact)
    if warm_from is not None:
        pipeline.warm_features(warm_from)
    own_thread = settings.training.enabled and pipeline.background is None
    switch_interval = sys.getswitchinterval()
    if own_thread:
        pipeline.learn_in_background(exact=True)  # the scores of inline learning, the steps beside the features
        # A step gives the GIL up around each TensorFlow call and must take it back from the
        # feature loop; at the default 5 ms a step waits that long for it several times over.
        sys.setswitchinterval(LEARNING_SWITCH_INTERVAL_S)
    try:
        return _replay(settings, pipeline, transactions, label_chunks, delay, start, on_batch, monitor, scores_to)
    finally:
        if own_thread:
            sys.setswitchinterval(switch_interval)
            pipeline.close()


def _replay(settings: Settings, pipeline: Engine, transactions: EventChunks, label_chunks: EventChunks | None,
            delay: float | None, start: float | None, on_batch: Callable[[int, int | None, Any], None] | None,
            monitor: Any, scores_to: Path | None) -> tuple[ReplayResult, Engine]:
    fields = settings.features.fields
    host = ReplayHost(pipeline, monitor)
    if monitor is not None:
        monitor.attach(host)
    detections: list[dict[str, Any]] = []
    kinds = {"tx": TX, "label": LABEL}
    scored = _Scores(fields.transaction_id, transactions, scores_to)
    joined = _Columns()
    customer_codes = _Codes()
    invalid: Counter = Counter()
    warmed = 0
    done = 0
    ttl = settings.training.pending_ttl_days * DAY
    for chunk in merge_chunks(transactions, fields, label_chunks, delay, settings.features.epoch_unit):
        history, chunk = chunk.split(-np.inf if start is None else start)
        for part in history.batches(settings.kafka.batch_size):
            out = pipeline.process([Incoming(kinds[k], e) for k, e in zip(part.kinds, part.events)], 0.0, score=False)
            invalid.update(out.invalid)
            warmed += len(part)
        if len(history) and pipeline.unscored:  # a label older than the pending TTL would not join either
            horizon = (float(history.times[-1]) - ttl) * 1e6
            pipeline.unscored = {k: tx for k, tx in pipeline.unscored.items() if tx.time_us >= horizon}
        if len(history) and on_batch is not None:
            on_batch(done + warmed, None, pipeline)
        for part in chunk.batches(settings.kafka.batch_size):
            out = pipeline.process([Incoming(kinds[k], e) for k, e in zip(part.kinds, part.events)], received_at=0.0)
            scored.add(out.scores)
            invalid.update(out.invalid)
            if out.joined is not None and len(out.joined.ids):
                j = out.joined
                joined.extend(scored=j.scores, labels=j.labels, customers=customer_codes.many(tx.customer for tx in j.contexts),
                              times=j.times)
            if monitor is not None:
                monitor.on_batch(host, out, None)
                reports = monitor.flush(host)
                host.act_on_drift(reports)
                for report in reports:
                    detections.extend(_detection_record(d, report.action) for d in report.detections)
            done += len(part)
            if on_batch is not None:
                on_batch(done + warmed, None, pipeline)
    pipeline.drain()
    trainer = pipeline.trainer
    result = ReplayResult(
        scores=scored.close(),
        scored=joined.array("scored", np.float64),
        labels=joined.array("labels", np.int8),
        customers=customer_codes.in_id_order(joined.array("customers", np.int32)),
        times=joined.array("times", np.float64),
        counters={
            "events": done + warmed,
            **({"events_before_from": warmed} if start is not None else {}),
            "transactions_scored": scored.n,
            "labels_joined": len(joined),
            "invalid": dict(invalid),
            "train_steps": trainer.steps,
            "rows_learned": trainer.rows_learned,
            # the end of the stream leaves a mini-batch part-filled: reported, not learned, so
            # that a replay continued from this pipeline learns exactly what one replay would
            "rows_not_learned_partial_minibatch": trainer.buffered,
            "rejected_steps": trainer.rejected_steps,
            "pending_at_end": len(pipeline.pending),
            "late_events": pipeline.features.late_events,
            **({"drift_action": settings.monitoring.drift_action, "drift_detections": len(detections),
                "drift_checkpoints_requested": host.checkpoints_requested} if monitor is not None else {}),
        },
        detections=detections,
    )
    return result, pipeline


class _Columns:
    """Values gathered batch by batch as numpy arrays (not a Python object per value), so a
    replay's results stay small beside its stream."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {}
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def extend(self, **values: Any) -> None:
        for name, value in values.items():
            parts = self.parts.setdefault(name, [])
            parts.append(np.asarray(value))
            if len(parts) >= 1024:  # a few large arrays, not thousands of small ones left in the heap
                self.parts[name] = [np.concatenate(parts)]
        self.n += len(value)

    def array(self, name: str, dtype: Any) -> np.ndarray:
        """The values gathered under ``name``, which are then forgotten (one copy, not two)."""
        parts = self.parts.pop(name, None)
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


class _Codes:
    """Customer ids as small integers (4 bytes a row, not a string), numbered at the end in
    the order of the ids, so sorting codes sorts ids: card precision breaks ties alike."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}

    def many(self, ids: Iterable[str]) -> np.ndarray:
        codes = self.codes
        return np.fromiter((codes.setdefault(i, len(codes)) for i in ids), np.int32)

    def in_id_order(self, codes: np.ndarray) -> np.ndarray:
        ids = np.array(list(self.codes), dtype=object)
        rank = np.empty(len(ids), np.int32)
        rank[np.argsort(ids, kind="stable")] = np.arange(len(ids), dtype=np.int32)
        return rank[codes] if len(codes) else codes


class _Scores:
    """Every transaction's score, in memory or appended to a CSV file a block at a time; the
    id under the input's own column name, and as an integer when the input stored it so."""

    BLOCK = 65_536

    def __init__(self, column: str, source: EventChunks, path: Path | None = None):
        self.column, self.source, self.path = column, source, path
        self.rows: list[dict[str, Any]] = []
        self.frames: list[pd.DataFrame] = []
        self.n = 0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)

    def add(self, scores: list[tuple[Any, dict[str, Any]]]) -> None:
        self.rows.extend(score for _, score in scores)
        self.n += len(scores)
        if len(self.rows) >= self.BLOCK:
            self._seal()

    def _seal(self) -> None:
        rows, self.rows = self.rows, []
        if not rows:
            return
        ids = pd.Series([r["transaction_id"] for r in rows], dtype=object)
        stored = self.source.stored_dtypes.get(self.column)
        if stored is not None and pd.api.types.is_integer_dtype(stored):
            ids = ids.astype(np.int64)
        frame = pd.DataFrame({self.column: ids, "score": [r["score"] for r in rows],
                              "model_version": np.array([r["model_version"] for r in rows], np.int64)})
        if self.path is None:
            self.frames.append(frame)
        else:
            frame.to_csv(self.path, mode="a", header=not self.path.exists(), index=False)

    def close(self) -> pd.DataFrame | None:
        self._seal()
        if self.path is not None:
            return None
        if not self.frames:
            return pd.DataFrame({self.column: [], "score": [], "model_version": []})
        return pd.concat(self.frames, ignore_index=True)


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
        "event_time_utc": _utc(when) if when is not None else None,
        "labelled_rows": labelled,
        "scored_rows": scored,
        "action": action,
        "values": values,
    }


def write_report(result: ReplayResult, out: Path, title: str = "fraudstream replay",
                 since: float | None = None) -> dict[str, Any]:
    """``scores.csv`` (every transaction scored, unless the replay wrote it), and ``report.json``, ``report.md`` and
    ``rolling_ap.png`` in ``out`` over the labelled transactions at or after ``since``."""
    out.mkdir(parents=True, exist_ok=True)
    if result.scores is not None:
        result.scores.to_csv(out / "scores.csv", index=False)
    result = result.since(since)
    report = {
        "report_from": None if since is None else _utc(since),
        "overall": result.metrics(),
        "last_28_days": result.last_days(28),
        "counters": result.counters,
        "daily": result.daily(),
        "drift_detections": result.detections,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    lines = [f"# {title}", "", *([f"Transactions from {report['report_from']}.", ""] if since is not None else []), "| window | transactions | frauds | ROC AUC | AP | card precision@100 |", "|---|---|---|---|---|---|"]
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


def _utc(epoch_seconds: float) -> str:
    return str(np.datetime64(int(epoch_seconds * 1000), "ms")) + "Z"


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
