"""Prequential ("test then train") evaluation of the live model.

Each labelled transaction is evaluated with the score it got when it was scored, before the
model learned from its label, so the figures are honest out-of-sample estimates of the model
as it runs. Two views:

* a sliding window of the last ``window`` labelled transactions (what the gauges show);
* per event-time day (UTC) for the last ``days`` days, because fraud metrics are read per
  day (card precision@100 is defined per day) and labels for a day keep arriving late.

Event times are Unix seconds (float) or numpy ``datetime64``.

>>> import numpy as np
>>> p = Prequential(window=1000, threshold=0.5)
>>> t0 = 1_775_000_000.0
>>> p.update_many([0.9, 0.2, 0.7, 0.1], [1, 0, 1, 0], ["c1", "c2", "c3", "c4"], [t0] * 4)
>>> snap = p.snapshot()
>>> snap["rows"], snap["roc_auc"], snap["fraud_rate"], snap["alert_rate"]
(4, 1.0, 0.5, 0.5)
>>> snap["card_precision_at_100"]
0.02
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np

from fraudstream.models.evaluation import (
    SECONDS_PER_DAY,
    average_precision,
    card_precision_per_day,
    day_index,
    roc_auc,
)
from fraudstream.monitoring.exceptions import MonitoringStateInvalid
from fraudstream.monitoring.loss import log_loss

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CARD_PRECISION_K = 100


def to_unix_seconds(event_times) -> np.ndarray:
    """Unix seconds as float64 from floats/ints or numpy ``datetime64`` values."""
    arr = np.asarray(event_times)
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[ns]").astype(np.int64) / 1e9
    return arr.astype(np.float64)


def _defined(value: float) -> float | None:
    """NaN (undefined: one class only) becomes None, so snapshots serialise as JSON."""
    return None if value is None or not np.isfinite(value) else float(value)


def _intern(names, index: dict[str, int] | None = None) -> np.ndarray:
    """Integer codes for customer ids: ranking by int is far cheaper than by string."""
    index = {} if index is None else index
    return np.fromiter((index.setdefault(n, len(index)) for n in names), np.int64, len(names))


def _card_precision(days, customers, scores, labels) -> dict[int, float]:
    """Daily card precision@100 (cards detected on earlier days left out), by day number."""
    if len(scores) == 0:
        return {}
    result = card_precision_per_day(labels, scores, customers, days, k=CARD_PRECISION_K)
    return {int(d): float(p) for d, p in zip(result.days, result.per_day)}


def _day_name(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(day))).isoformat()


class _Day:
    """Rows labelled so far for one event-time day: scores, labels, customer codes."""

    def __init__(self) -> None:
        self.scores: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.codes: list[np.ndarray] = []
        self.customers: dict[str, int] = {}

    def add(self, scores: np.ndarray, labels: np.ndarray, customers: np.ndarray) -> None:
        index = self.customers
        codes = _intern(customers.tolist(), index)
        self.scores.append(scores)
        self.labels.append(labels)
        self.codes.append(codes)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores, labels, customer codes per row); chunks are merged once here."""
        if len(self.scores) > 1:
            self.scores = [np.concatenate(self.scores)]
            self.labels = [np.concatenate(self.labels)]
            self.codes = [np.concatenate(self.codes)]
        if not self.scores:
            return np.zeros(0), np.zeros(0, np.int8), np.zeros(0, np.int64)
        return self.scores[0], self.labels[0], self.codes[0]

    def state(self) -> dict[str, Any]:
        scores, labels, codes = self.arrays()
        return {
            "scores": scores,
            "labels": labels,
            "codes": codes,
            "customers": list(self.customers),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Day:
        day = cls()
        day.customers = {name: i for i, name in enumerate(state["customers"])}
        scores = np.asarray(state["scores"], np.float64)
        labels = np.asarray(state["labels"], np.int8)
        codes = np.asarray(state["codes"], np.int64)
        if not (scores.size == labels.size == codes.size):
            raise MonitoringStateInvalid("prequential day arrays differ in length")
        if codes.size and (codes.min() < 0 or codes.max() >= len(day.customers)):
            raise MonitoringStateInvalid("prequential day customer codes out of range")
        if scores.size:
            day.scores, day.labels, day.codes = [scores], [labels], [codes]
        return day


class Prequential:
    """Prequential metrics over the last ``window`` labelled rows and per event-time day.

    ``threshold`` is the score at or above which a transaction counts as an alert (the
    review threshold). ``days`` event-time days are kept for :meth:`daily`, counted back from
    the newest day seen; rows for older days still enter the window but not the daily view.
    """

    def __init__(self, window: int = 10_000, threshold: float = 0.5, days: int = 7):
        if window < 1:
            raise ValueError("window must be at least 1")
        if days < 1:
            raise ValueError("days must be at least 1")
        self.window = window
        self.threshold = threshold
        self.days = days
        self._reset()

    def _reset(self) -> None:
        n = self.window
        self._scores = np.zeros(n, np.float64)
        self._labels = np.zeros(n, np.int8)
        self._customers = np.empty(n, object)
        self._times = np.zeros(n, np.float64)
        self._next = 0  # ring position of the next write
        self._count = 0  # rows in the window
        self.rows_seen = 0
        self.rows_too_old = 0  # rows whose day had already left the daily view
        self.rows_dropped = 0  # rows with a non-finite score or event time
        self._days: dict[int, _Day] = {}

    # --- updates -------------------------------------------------------------------------

    def update_many(self, scores, labels, customer_ids, event_times) -> None:
        """Add labelled rows: the score each got before learning, its label, customer, time."""
        s = np.asarray(scores, np.float64).ravel()
        y = np.asarray(labels).ravel().astype(np.int8)
        c = np.asarray(customer_ids, dtype=object).ravel()
        t = to_unix_seconds(event_times).ravel()
        if not (s.size == y.size == c.size == t.size):
            raise ValueError(
                f"scores, labels, customer_ids, event_times differ in length: "
                f"{s.size}, {y.size}, {c.size}, {t.size}"
            )
        finite = np.isfinite(s) & np.isfinite(t)
        if not finite.all():
            # A NaN score never reaches a customer (the scorer guards it); keep it out of the
            # metrics rather than fail every later snapshot.
            self.rows_dropped += int((~finite).sum())
            log.warning("prequential: dropped %d rows with a non-finite score or time",
                        int((~finite).sum()))
            s, y, c, t = s[finite], y[finite], c[finite], t[finite]
        if s.size == 0:
            return
        self.rows_seen += s.size
        self._add_to_window(s, y, c, t)
        self._add_to_days(s, y, c, t)

    def _add_to_window(self, s, y, c, t) -> None:
        n = self.window
        if s.size >= n:
            s, y, c, t = s[-n:], y[-n:], c[-n:], t[-n:]
        idx = (self._next + np.arange(s.size)) % n
        self._scores[idx] = s
        self._labels[idx] = y
        self._customers[idx] = c
        self._times[idx] = t
        self._next = int((self._next + s.size) % n)
        self._count = min(n, self._count + s.size)

    def _add_to_days(self, s, y, c, t) -> None:
        days = day_index(t)
        newest = max(int(days.max()), max(self._days, default=int(days.max())))
        oldest_kept = newest - self.days + 1
        for day in np.unique(days):
            day = int(day)
            rows = days == day
            if day < oldest_kept:
                self.rows_too_old += int(rows.sum())
                continue
            self._days.setdefault(day, _Day()).add(s[rows], y[rows], c[rows])
        for day in [d for d in self._days if d < oldest_kept]:
            del self._days[day]

    # --- reading ---------------------------------------------------------------------------

    def _window_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Window rows, oldest first."""
        n, count = self.window, self._count
        idx = (self._next - count + np.arange(count)) % n
        return self._scores[idx], self._labels[idx], self._customers[idx], self._times[idx]

    def _summary(self, s: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        n = int(s.size)
        return {
            "rows": n,
            "frauds": int(y.sum()),
            "roc_auc": _defined(roc_auc(y, s)) if n else None,
            "average_precision": _defined(average_precision(y, s)) if n else None,
            "log_loss": log_loss(y, s),
            "fraud_rate": float(y.mean()) if n else None,
            "mean_score": float(s.mean()) if n else None,
            "alert_rate": float((s >= self.threshold).mean()) if n else None,
        }

    def snapshot(self) -> dict[str, Any]:
        """Window metrics; a metric is None while undefined (no rows, or one class only).

        Card precision@100 is computed per event-time day over the window's rows and
        averaged over those days.
        """
        s, y, c, t = self._window_arrays()
        out = self._summary(s, y)
        per_day = _card_precision(day_index(t), _intern(c.tolist()), s, y)
        out["card_precision_at_100"] = float(np.mean(list(per_day.values()))) if per_day else None
        out["days"] = len(per_day)
        out["threshold"] = self.threshold
        return out

    def daily(self) -> list[dict[str, Any]]:
        """Metrics per event-time day kept, oldest first, including card precision@100."""
        ordered = sorted(self._days)
        parts = [self._days[d].arrays() for d in ordered]
        result = [dict(day=_day_name(d), **self._summary(s, y)) for d, (s, y, _) in
                  zip(ordered, parts)]
        if parts:
            # one code per customer across days, so a card detected on one day is known later
            index: dict[str, int] = {}
            to_global = [_intern(list(self._days[d].customers), index) for d in ordered]
            days = np.concatenate([np.full(s.size, d, np.int64) for d, (s, _, _) in
                                   zip(ordered, parts)])
            precision = _card_precision(
                days,
                np.concatenate([g[c] for g, (_, _, c) in zip(to_global, parts)]),
                np.concatenate([s for s, _, _ in parts]),
                np.concatenate([y for _, y, _ in parts]),
            )
            for d, row in zip(ordered, result):
                row["card_precision_at_100"] = precision.get(d)
        return result

    # --- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain data and numpy arrays (no pickle); the window is stored oldest first."""
        s, y, c, t = self._window_arrays()
        return {
            "schema_version": SCHEMA_VERSION,
            "window": self.window,
            "threshold": self.threshold,
            "days": self.days,
            "scores": s.copy(),
            "labels": y.copy(),
            "customers": [str(x) for x in c],
            "event_times": t.copy(),
            "rows_seen": self.rows_seen,
            "rows_too_old": self.rows_too_old,
            "rows_dropped": self.rows_dropped,
            "per_day": {str(d): day.state() for d, day in sorted(self._days.items())},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore; the configured ``window`` and ``days`` win over the saved ones."""
        version = state.get("schema_version")
        if version != SCHEMA_VERSION:
            raise MonitoringStateInvalid(
                f"prequential state schema {version!r}, expected {SCHEMA_VERSION}"
            )
        try:
            s = np.asarray(state["scores"], np.float64)
            y = np.asarray(state["labels"], np.int8)
            c = np.asarray(state["customers"], dtype=object)
            t = np.asarray(state["event_times"], np.float64)
            per_day = {int(d): _Day.from_state(v) for d, v in state["per_day"].items()}
            rows_seen = int(state["rows_seen"])
            rows_too_old = int(state["rows_too_old"])
            rows_dropped = int(state["rows_dropped"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MonitoringStateInvalid(f"prequential state malformed: {exc}") from exc
        if not (s.size == y.size == c.size == t.size):
            raise MonitoringStateInvalid("prequential window arrays differ in length")
        self._reset()
        if s.size:
            self._add_to_window(s, y, c, t)
        if per_day:
            newest = max(per_day)
            self._days = {d: v for d, v in per_day.items() if d > newest - self.days}
        self.rows_seen = rows_seen
        self.rows_too_old = rows_too_old
        self.rows_dropped = rows_dropped


__all__ = ["Prequential", "SECONDS_PER_DAY", "to_unix_seconds"]
