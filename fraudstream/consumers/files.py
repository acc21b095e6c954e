"""A file source for replay: transactions and label events merged in event-time order.

Replay runs the daemon's own :class:`~fraudstream.daemon.engine.Engine` over files, so
this module only has to turn tables into the same stream of records Kafka would deliver:
transaction dicts and label-event dicts, in event-time order, label events first at an
equal time (a label known at ``t`` is known to a transaction at ``t``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

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
    """One dict per row, as a JSON event would decode: times as RFC 3339 text, a missing
    cell absent. Built column by column (``DataFrame.to_dict`` boxes every cell)."""
    columns, missing = [], []
    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_datetime64_any_dtype(values):
            stamps = values.dt.tz_convert("UTC") if values.dt.tz is not None else values
            text = np.datetime_as_string(stamps.to_numpy("datetime64[us]"), unit="us")
            values = pd.Series(np.char.add(text.astype(str), "Z"), index=values.index).where(values.notna())
        array = values.to_numpy(object) if values.dtype.kind not in "biuf" else values.to_numpy()
        columns.append(array.tolist())
        if values.dtype.kind not in "biu" and values.isna().any():
            missing.append(col)
    names = list(frame.columns)
    records = [dict(zip(names, row)) for row in zip(*columns)]
    for col in missing:  # a missing CSV cell is absent, as in a JSON event
        for record in records:
            v = record[col]
            if v is None or (isinstance(v, float) and v != v) or v is pd.NA or v is pd.NaT:
                del record[col]
    return records


@dataclass
class MergedChunk:
    """A stretch of the replay stream: ``kinds[i]`` is ``"tx"`` or ``"label"``, ``events[i]``
    its dict and ``times[i]`` its event time in seconds (where it sits in the merge)."""

    kinds: list[str]
    events: list[dict]
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.events)

    def batches(self, size: int) -> Iterator[MergedChunk]:
        for start in range(0, len(self.events), size):
            end = start + size
            yield MergedChunk(self.kinds[start:end], self.events[start:end], self.times[start:end])

    def split(self, at: float) -> tuple[MergedChunk, MergedChunk]:
        """The events before event time ``at``, and the rest."""
        cut = int(np.searchsorted(self.times, at, side="left"))
        return (MergedChunk(self.kinds[:cut], self.events[:cut], self.times[:cut]),
                MergedChunk(self.kinds[cut:], self.events[cut:], self.times[cut:]))


class _Labels:
    """Label events read but not yet due, in event-time order."""

    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []
        self.times: list[np.ndarray] = []

    def add(self, frame: pd.DataFrame, times: np.ndarray) -> None:
        if len(frame):
            self.frames.append(frame.reset_index(drop=True))
            self.times.append(times)

    def take_until(self, until: float) -> tuple[pd.DataFrame | None, np.ndarray]:
        """Remove and return the labels due at or before ``until``."""
        if not self.frames:
            return None, np.zeros(0)
        frame = pd.concat(self.frames, ignore_index=True) if len(self.frames) > 1 else self.frames[0]
        times = np.concatenate(self.times)
        order = np.argsort(times, kind="stable")
        cut = int(np.searchsorted(times[order], until, side="right"))
        due, rest = order[:cut], order[cut:]
        self.frames = [frame.iloc[rest].reset_index(drop=True)] if len(rest) else []
        self.times = [times[rest]] if len(rest) else []
        return frame.iloc[due], times[due]


def merge_chunks(
    transactions: Iterable[pd.DataFrame],
    fields: FieldMap,
    labels: Iterable[pd.DataFrame] | None = None,
    label_delay_s: float | None = None,
    epoch_unit: str = "s",
) -> Iterator[MergedChunk]:
    """Merge transactions with label events (a labels table, or derived from the inline label
    column at transaction time + ``label_delay_s``), one transactions frame at a time.

    Inline labels are removed from the transactions so nothing is learned before its label
    would be known. Memory is bounded by the frame size plus the labels not yet due (a
    label delay's worth), not by the files: each file is read once, in order. Rows are put
    in event-time order within a frame; a row older than an earlier frame's newest arrives
    late, as it would from Kafka, and the pipeline treats it so. Label events whose time
    does not parse come at the end.
    """
    waiting = _Labels()
    label_frames = iter(labels) if labels is not None else None
    label_horizon = -np.inf  # label events read up to this time
    undated: list[pd.DataFrame] = []
    last_time = -np.inf
    rows = 0  # the largest transactions frame
    for frame in transactions:
        rows = max(rows, len(frame))
        if fields.timestamp not in frame.columns:
            raise SourceInvalid(f"transactions have no {fields.timestamp!r} column")
        frame = frame.reset_index(drop=True)
        tx_times = _epoch_seconds(frame[fields.timestamp], epoch_unit)
        # Rows whose time does not parse keep their place in file order; the pipeline DLQs them.
        order_times = pd.Series(tx_times).ffill().fillna(last_time).to_numpy()
        if len(order_times):
            last_time = max(last_time, float(np.nanmax(order_times)))
        if label_frames is None and label_delay_s is not None:
            if fields.label not in frame.columns:
                raise SourceInvalid(f"--label-delay needs a {fields.label!r} column in the transactions")
            has = frame[fields.label].notna().to_numpy()
            label_times = order_times[has] + label_delay_s
            waiting.add(pd.DataFrame({
                fields.transaction_id: frame[fields.transaction_id].to_numpy()[has],
                fields.label: frame[fields.label].to_numpy()[has],
                fields.timestamp: pd.to_datetime(np.round(label_times * 1e6), unit="us", utc=True),
            }), label_times)
        while label_frames is not None and label_horizon <= last_time:
            more = next(label_frames, None)
            if more is None:
                label_horizon = np.inf
                break
            times = _label_times(more, fields, epoch_unit)
            waiting.add(more[~np.isnan(times)], times[~np.isnan(times)])
            undated.append(more[np.isnan(times)])
            if (times == times).any():
                label_horizon = max(label_horizon, float(np.nanmax(times)))
        if fields.label in frame.columns and (label_frames is not None or label_delay_s is not None):
            frame = frame.drop(columns=[fields.label])
        due, due_times = waiting.take_until(last_time)
        yield _merge(frame, order_times, due, due_times)
    if label_frames is not None:  # labels after the last transaction
        for more in label_frames:
            times = _label_times(more, fields, epoch_unit)
            waiting.add(more[~np.isnan(times)], times[~np.isnan(times)])
            undated.append(more[np.isnan(times)])
    due, due_times = waiting.take_until(np.inf)
    step = max(rows, 1)  # no larger than a transactions frame: a label delay's worth would be
    for at in range(0, 0 if due is None else len(due), step):
        yield _merge(None, np.zeros(0), due.iloc[at:at + step], due_times[at:at + step])
    rest = [f for f in undated if len(f)]
    if rest:
        frame = pd.concat(rest, ignore_index=True)
        yield _merge(None, np.zeros(0), frame, np.full(len(frame), np.inf))


def _label_times(frame: pd.DataFrame, fields: FieldMap, epoch_unit: str) -> np.ndarray:
    for col in (fields.transaction_id, fields.label, fields.timestamp):
        if col not in frame.columns:
            raise SourceInvalid(f"labels have no {col!r} column")
    return _epoch_seconds(frame[fields.timestamp], epoch_unit)


def _merge(tx: pd.DataFrame | None, tx_times: np.ndarray, labels: pd.DataFrame | None,
           label_times: np.ndarray) -> MergedChunk:
    """Transactions and label events in event-time order, label events first at an equal
    time (a label known at ``t`` is known to a transaction at ``t``), else in file order."""
    n_tx, n_lab = len(tx_times), len(label_times)
    time = np.concatenate([tx_times, label_times])
    kind = np.concatenate([np.ones(n_tx, np.int8), np.zeros(n_lab, np.int8)])
    row = np.concatenate([np.arange(n_tx), np.arange(n_lab)])
    order = np.lexsort((row, kind, time))
    records = {1: _records(tx) if n_tx else [], 0: _records(labels) if n_lab else []}
    kinds = ["tx" if k else "label" for k in kind[order].tolist()]
    events = [records[k][r] for k, r in zip(kind[order].tolist(), row[order].tolist())]
    return MergedChunk(kinds, events, time[order])
