"""Turning a simulation into events: JSONL or CSV files, and the merged event-time stream.

Lines are built from whole columns in Arrow (timestamps through a per-day and a
per-second-of-day table), never one Python call per event, and written straight from the
Arrow buffer. Every field of the contract is a plain id, an RFC 3339 time or a number, so the
JSON needs no escaping.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fraudstream.config.simulate import SECONDS_PER_DAY
from fraudstream.simulate.engine import Simulation
from fraudstream.simulate.exceptions import OutputFormatUnknown

TRANSACTION = "transaction"
LABEL = "label"

_CHUNK = 200_000  # rows formatted and written at a time: bounds memory on long runs
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


class FileFormat(str, enum.Enum):
    jsonl = "jsonl"
    csv = "csv"


_SUFFIXES = {".jsonl": FileFormat.jsonl, ".ndjson": FileFormat.jsonl, ".json": FileFormat.jsonl,
             ".csv": FileFormat.csv}


def infer_format(path: Path | str, fmt: FileFormat | str | None = None) -> FileFormat:
    """The format asked for, else the one the path's suffix names (``.jsonl``, ``.csv`` ...)."""
    if fmt is not None:
        return FileFormat(fmt)
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise OutputFormatUnknown(
            f"cannot tell the format of {str(path)!r} from its suffix; "
            "name it .jsonl or .csv, or give the format (jsonl or csv)"
        )
    return _SUFFIXES[suffix]


def labels_path_for(path: Path | str) -> Path:
    """Where the label events go when no path is given: ``tx.jsonl`` -> ``tx.labels.jsonl``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.labels{path.suffix or '.jsonl'}")


_S = pa.large_string()


def _join(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation of string columns and literal pieces, in Arrow."""
    args = [pa.scalar(p, _S) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, pa.scalar("", _S))


def _text(values: pd.Series | np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), _S)


@functools.cache
def _clock_table() -> pa.Array:
    return pa.array(
        [f"{h:02d}:{m:02d}:{s:02d}Z" for h in range(24) for m in range(60) for s in range(60)], _S
    )


def epoch_seconds(timestamps: pd.Series) -> np.ndarray:
    """Whole seconds since 1970 of a timestamp column (naive means UTC; sub-seconds dropped)."""
    ts = pd.Series(timestamps)
    if ts.dt.tz is None:
        ts = ts.dt.tz_localize("UTC")
    return ts.dt.tz_convert("UTC").dt.as_unit("s").astype("int64").to_numpy()


def _rfc3339_array(timestamps: pd.Series) -> pa.Array:
    secs = epoch_seconds(timestamps)
    if len(secs) == 0:
        return pa.array([], _S)
    day = secs // SECONDS_PER_DAY
    first = int(day.min())
    dates = pa.array(
        [
            dt.date.fromordinal(_EPOCH_ORDINAL + d).isoformat() + "T"
            for d in range(first, int(day.max()) + 1)
        ],
        _S,
    )
    return _join(dates.take(day - first), _clock_table().take(secs % SECONDS_PER_DAY))


def rfc3339(timestamps: pd.Series) -> list[str]:
    """``2026-04-01T08:15:02Z`` for each timestamp, at second precision."""
    return _rfc3339_array(timestamps).to_pylist()


def _amount_array(amounts: pd.Series) -> pa.Array:
    """Amounts with exactly two decimals (``45.80``, ``250.00``), as the ``%.2f`` format."""
    cents = np.rint(np.asarray(amounts, dtype=np.float64) * 100.0).astype(np.int64)
    sign = pa.array(np.where(cents < 0, "-", ""), _S)
    cents = np.abs(cents)
    return _join(sign, _text(cents // 100), ".", pc.utf8_lpad(_text(cents % 100), 2, "0"))


def _transaction_array(
    part: pd.DataFrame, inline_labels: bool, fmt: FileFormat, end: str
) -> pa.Array:
    ids, ts = _text(part["transaction_id"]), _rfc3339_array(part["timestamp"])
    cust, term = _text(part["customer_id"]), _text(part["terminal_id"])
    amount = _amount_array(part["amount"])
    if fmt is FileFormat.csv:
        tail = [",", _text(part["label"])] if inline_labels else []
        return _join(ids, ",", ts, ",", cust, ",", term, ",", amount, *tail, end)
    tail = [',"label":', _text(part["label"])] if inline_labels else []
    return _join(
        '{"transaction_id":"', ids, '","timestamp":"', ts, '","customer_id":"', cust,
        '","terminal_id":"', term, '","amount":', amount, *tail, "}" + end,
    )


def _label_array(part: pd.DataFrame, scenario: bool, fmt: FileFormat, end: str) -> pa.Array:
    ids, label, ts = _text(part["transaction_id"]), _text(part["label"]), _rfc3339_array(
        part["timestamp"]
    )
    if fmt is FileFormat.csv:
        tail = [",", _text(part["scenario"])] if scenario else []
        return _join(ids, ",", label, ",", ts, *tail, end)
    tail = [',"scenario":', _text(part["scenario"])] if scenario else []
    return _join(
        '{"transaction_id":"', ids, '","label":', label, ',"timestamp":"', ts, '"', *tail,
        "}" + end,
    )


def transaction_lines(transactions: pd.DataFrame, inline_labels: bool = False) -> list[str]:
    """One JSON object (no newline) per transaction row, as sent to Kafka."""
    return _transaction_array(transactions, inline_labels, FileFormat.jsonl, "").to_pylist()


def label_lines(labels: pd.DataFrame, scenario: bool = True) -> list[str]:
    """One JSON label event (no newline) per label row, as sent to Kafka."""
    return _label_array(labels, scenario, FileFormat.jsonl, "").to_pylist()


def _string_bytes(lines: pa.Array) -> memoryview:
    """The concatenated bytes of an Arrow large-string array, without copying."""
    _, offsets, data = lines.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    return memoryview(data)[int(bounds[0]) : int(bounds[-1])] if len(lines) else memoryview(b"")


def _write_atomic(path: Path, header: str | None, frame: pd.DataFrame, lines_of) -> int:
    """Write to a temporary name beside ``path`` then rename: a reader never sees half a file.

    ``lines_of(part)`` turns a slice of ``frame`` into an Arrow array of newline-ended lines.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            if header:
                fh.write(header.encode() + b"\n")
            for start in range(0, len(frame), _CHUNK):
                fh.write(_string_bytes(lines_of(frame.iloc[start : start + _CHUNK])))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(frame)


def write_transactions(
    sim: Simulation,
    path: Path | str,
    fmt: FileFormat | str | None = None,
    inline_labels: bool | None = None,
) -> int:
    """Write the transactions (time order) to ``path``; returns the number of rows.

    ``inline_labels`` (default: the settings') adds the ``label`` field/column.
    """
    fmt = infer_format(path, fmt)
    inline = sim.settings.inline_labels if inline_labels is None else inline_labels
    header = None
    if fmt is FileFormat.csv:
        header = "transaction_id,timestamp,customer_id,terminal_id,amount" + (
            ",label" if inline else ""
        )
    return _write_atomic(
        Path(path), header, sim.transactions,
        lambda part: _transaction_array(part, inline, fmt, "\n"),
    )


def write_labels(
    sim: Simulation,
    path: Path | str,
    fmt: FileFormat | str | None = None,
    scenario: bool | None = None,
) -> int:
    """Write the label events (in order of their own timestamp) to ``path``; returns rows.

    ``scenario`` (default: ``settings.label_scenario``) adds the fraud scenario field.
    """
    fmt = infer_format(path, fmt)
    with_scenario = sim.settings.label_scenario if scenario is None else scenario
    header = None
    if fmt is FileFormat.csv:
        header = "transaction_id,label,timestamp" + (",scenario" if with_scenario else "")
    return _write_atomic(
        Path(path), header, sim.labels, lambda part: _label_array(part, with_scenario, fmt, "\n")
    )


def merged_order(sim: Simulation, label_events: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The event-time order of transactions and label events: ``(is_label, row)`` arrays.

    At an equal timestamp label events come first, so a label that becomes known exactly at
    time t is already known to a transaction at t (rules like "labels at least d days old").
    Ties among one kind keep their frame order.
    """
    use_labels = sim.settings.label_events if label_events is None else label_events
    tx_time = epoch_seconds(sim.transactions["timestamp"])
    n_tx = len(tx_time)
    if not use_labels:
        return np.zeros(n_tx, dtype=bool), np.arange(n_tx)
    label_time = epoch_seconds(sim.labels["timestamp"])
    n_lab = len(label_time)
    time = np.concatenate([tx_time, label_time])
    kind = np.concatenate([np.ones(n_tx, np.int8), np.zeros(n_lab, np.int8)])  # label first
    row = np.concatenate([np.arange(n_tx), np.arange(n_lab)])
    order = np.lexsort((row, kind, time))
    return kind[order] == 0, row[order]


def merged_events(
    sim: Simulation,
    inline_labels: bool | None = None,
    label_events: bool | None = None,
    scenario: bool | None = None,
) -> Iterator[tuple[str, dict]]:
    """Yield ``("transaction", event)`` and ``("label", event)`` in event-time order.

    Events are the dicts that go on the wire (timestamps as RFC 3339 strings).
    """
    inline = sim.settings.inline_labels if inline_labels is None else inline_labels
    with_scenario = sim.settings.label_scenario if scenario is None else scenario
    tx, labels = sim.transactions, sim.labels
    tx_cols = (
        tx["transaction_id"].tolist(), rfc3339(tx["timestamp"]), tx["customer_id"].tolist(),
        tx["terminal_id"].tolist(), tx["amount"].tolist(), tx["label"].tolist(),
    )
    lab_cols = (
        labels["transaction_id"].tolist(), labels["label"].tolist(),
        rfc3339(labels["timestamp"]), labels["scenario"].tolist(),
    )
    is_label, rows = merged_order(sim, label_events)
    for lab, r in zip(is_label.tolist(), rows.tolist()):
        if lab:
            event = {"transaction_id": lab_cols[0][r], "label": lab_cols[1][r],
                     "timestamp": lab_cols[2][r]}
            if with_scenario:
                event["scenario"] = lab_cols[3][r]
            yield LABEL, event
        else:
            event = {"transaction_id": tx_cols[0][r], "timestamp": tx_cols[1][r],
                     "customer_id": tx_cols[2][r], "terminal_id": tx_cols[3][r],
                     "amount": tx_cols[4][r]}
            if inline:
                event["label"] = tx_cols[5][r]
            yield TRANSACTION, event
