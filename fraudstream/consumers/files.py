"""A file source for replay: transactions and label events merged in event-time order.

Replay runs the daemon's own :class:`~fraudstream.daemon.pipeline.Pipeline` over files, so
this module only has to turn tables into the same stream of records Kafka would deliver:
transaction dicts and label-event dicts, in event-time order, label events first at an
equal time (a label known at ``t`` is known to a transaction at ``t``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fraudstream.config.features import FieldMap
from fraudstream.consumers.exceptions import SourceInvalid

SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_duration(text: str) -> float:
    """``7d``, ``36h``, ``90m``, ``30s`` or a number of seconds -> seconds."""
    text = str(text).strip().lower()
    try:
        if text and text[-1] in SECONDS:
            return float(text[:-1]) * SECONDS[text[-1]]
        return float(text)
    except ValueError as exc:
        raise SourceInvalid(f"not a duration: {text!r} (use e.g. 7d, 36h, 3600)") from exc


def _epoch_seconds(column: pd.Series, epoch_unit: str) -> np.ndarray:
    """Event times in seconds; unparseable ones NaN (the pipeline rejects those rows)."""
    if pd.api.types.is_datetime64_any_dtype(column):
        ts = pd.to_datetime(column, utc=True)
    elif pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(np.float64) * {"s": 1.0, "ms": 1e-3, "us": 1e-6}[epoch_unit]
    else:
        ts = pd.to_datetime(column, utc=True, errors="coerce", format="ISO8601")
    # pandas may hold s, ms, us or ns resolution: subtract the epoch instead of reading ints
    return (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(np.float64)


def _records(frame: pd.DataFrame) -> list[dict]:
    frame = frame.copy()
    for col in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[col]):
            frame[col] = pd.to_datetime(frame[col], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    records = frame.to_dict("records")
    for record in records:  # a missing CSV cell is absent, as in a JSON event
        for key in [k for k, v in record.items() if isinstance(v, float) and v != v]:
            del record[key]
    return records


@dataclass
class MergedEvents:
    """The replay stream: ``kinds[i]`` is ``"tx"`` or ``"label"``, ``events[i]`` its dict."""

    kinds: list[str]
    events: list[dict]
    tx_times: np.ndarray  # seconds, per transaction in file order
    transactions: pd.DataFrame

    def batches(self, size: int) -> Iterator[tuple[list[str], list[dict]]]:
        for start in range(0, len(self.events), size):
            yield self.kinds[start : start + size], self.events[start : start + size]


def merge_events(
    transactions: pd.DataFrame,
    fields: FieldMap,
    labels: pd.DataFrame | None = None,
    label_delay_s: float | None = None,
    epoch_unit: str = "s",
) -> MergedEvents:
    """Merge transactions with label events (a labels table, or derived from the inline label
    column at transaction time + ``label_delay_s``); inline labels are then removed from the
    transactions so nothing is learned before its label would be known."""
    if fields.timestamp not in transactions.columns:
        raise SourceInvalid(f"transactions have no {fields.timestamp!r} column")
    tx_times = _epoch_seconds(transactions[fields.timestamp], epoch_unit)
    # Rows whose time does not parse keep their place in file order; the pipeline DLQs them.
    order_times = pd.Series(tx_times).ffill().fillna(-np.inf).to_numpy()
    tx_frame = transactions
    if labels is None and label_delay_s is not None:
        if fields.label not in transactions.columns:
            raise SourceInvalid(f"--label-delay needs a {fields.label!r} column in the transactions")
        has = transactions[fields.label].notna().to_numpy()
        labels = pd.DataFrame({
            fields.transaction_id: transactions[fields.transaction_id].to_numpy()[has],
            fields.label: transactions[fields.label].to_numpy()[has],
        })
        label_times = order_times[has] + label_delay_s
        labels[fields.timestamp] = pd.to_datetime(np.round(label_times * 1e6), unit="us", utc=True)
        tx_frame = transactions.drop(columns=[fields.label])
    elif labels is not None:
        for col in (fields.transaction_id, fields.label, fields.timestamp):
            if col not in labels.columns:
                raise SourceInvalid(f"labels have no {col!r} column")
        label_times = _epoch_seconds(labels[fields.timestamp], epoch_unit)
        if fields.label in transactions.columns:
            tx_frame = transactions.drop(columns=[fields.label])
    else:
        label_times = np.zeros(0)
    n_tx, n_lab = len(tx_frame), 0 if labels is None else len(labels)
    time = np.concatenate([order_times, np.nan_to_num(label_times, nan=np.inf)])
    kind = np.concatenate([np.ones(n_tx, np.int8), np.zeros(n_lab, np.int8)])  # labels first
    row = np.concatenate([np.arange(n_tx), np.arange(n_lab)])
    order = np.lexsort((row, kind, time))
    tx_records = _records(tx_frame)
    label_records = _records(labels) if n_lab else []
    kinds, events = [], []
    for k, r in zip(kind[order].tolist(), row[order].tolist()):
        if k:
            kinds.append("tx")
            events.append(tx_records[r])
        else:
            kinds.append("label")
            events.append(label_records[r])
    return MergedEvents(kinds, events, tx_times, transactions)

