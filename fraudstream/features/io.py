"""Event tables in and feature tables out (CSV, JSON Lines, Parquet), and state files.

``read_events`` is the one reader used by the ``features`` command, training and replay,
so a file means the same rows wherever it is read. Identifier columns are read as text:
``007`` stays ``007`` and never becomes the number 7.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.config.features import FieldMap
from fraudstream.features.exceptions import FeatureInputInvalid, FeatureStateInvalid

_CSV = (".csv", ".csv.gz", ".tsv")
_JSONL = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz", ".json")
_PARQUET = (".parquet", ".pq")


def _kind(path: Path) -> str:
    name = path.name.lower()
    for kind, suffixes in (("csv", _CSV), ("jsonl", _JSONL), ("parquet", _PARQUET)):
        if name.endswith(suffixes):
            return kind
    raise FeatureInputInvalid(
        f"{path}: unknown table format; use one of {', '.join(_CSV + _JSONL + _PARQUET)}")


def read_events(path: str | Path, fields: FieldMap | None = None) -> pd.DataFrame:
    """Read a CSV, JSON Lines or Parquet file of events into a DataFrame, rows as stored.

    ``fields`` names the id columns (transaction, customer, terminal) to read as text;
    the default mapping is used when it is None. Timestamps are left as stored (text,
    epoch numbers or datetimes); the feature pipeline parses them.
    """
    path = Path(path)
    fields = fields or FieldMap()
    kind = _kind(path)
    with _reading(path, kind):
        if kind == "csv":
            return pd.read_csv(path, **_csv_options(path, fields))
        if kind == "jsonl":
            return _ids_as_text(pd.read_json(path, lines=True, dtype=False), fields)
        return _ids_as_text(pd.read_parquet(path), fields)


class EventChunks:
    """The rows of an events file as :func:`read_events` reads them, in frames of at most
    ``chunk_rows`` rows, so a file of any size is read in bounded memory.

    ``stored_dtypes`` holds the id columns' types as stored (before they are read as
    text), once the first frame is read: a writer can give ids back in their own type.
    """

    def __init__(self, path: str | Path, fields: FieldMap | None = None, chunk_rows: int = 100_000):
        self.path = Path(path)
        self.fields = fields or FieldMap()
        self.kind = _kind(self.path)
        self.chunk_rows = chunk_rows
        self.stored_dtypes: dict[str, Any] = {}

    def __iter__(self) -> Iterator[pd.DataFrame]:
        path, fields, kind = self.path, self.fields, self.kind
        with _reading(path, kind):
            if kind == "csv":
                frames = pd.read_csv(path, chunksize=self.chunk_rows, **_csv_options(path, fields))
            elif kind == "jsonl":
                frames = pd.read_json(path, lines=True, dtype=False, chunksize=self.chunk_rows)
            else:
                import pyarrow.parquet as pq

                frames = (b.to_pandas() for b in pq.ParquetFile(path).iter_batches(batch_size=self.chunk_rows))
            for frame in frames:
                if not self.stored_dtypes:
                    self.stored_dtypes = {c: frame[c].dtype for c in _text_cols(fields) if c in frame.columns}
                yield frame if kind == "csv" else _ids_as_text(frame, fields)


def _text_cols(fields: FieldMap) -> list[str]:
    return [fields.transaction_id, fields.customer, fields.terminal]


def _csv_options(path: Path, fields: FieldMap) -> dict[str, Any]:
    return {"sep": "\t" if path.name.lower().endswith(".tsv") else ",",
            "dtype": {c: str for c in _text_cols(fields)}, "keep_default_na": False, "na_values": [""]}


def _ids_as_text(frame: pd.DataFrame, fields: FieldMap) -> pd.DataFrame:
    """JSON and Parquet id columns as text: ``7`` becomes ``"7"``, never ``7.0``."""
    for c in _text_cols(fields):
        if c in frame.columns and not pd.api.types.is_string_dtype(frame[c].dtype):
            frame[c] = frame[c].map(_id_text, na_action="ignore")
    return frame


@contextmanager
def _reading(path: Path, kind: str) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError as exc:
        raise FeatureInputInvalid(f"{path}: no such file") from exc
    except (ValueError, OSError) as exc:
        raise FeatureInputInvalid(f"{path}: cannot read as {kind}: {exc}") from exc


def _id_text(v: Any) -> Any:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return v


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as CSV or Parquet by suffix, via a temporary name and a rename."""
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(_CSV + _PARQUET):
        raise FeatureInputInvalid(f"{path}: write .csv, .csv.gz or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        if name.endswith(_PARQUET):
            frame.to_parquet(tmp, index=False)
        else:
            out = frame.copy()
            for c in out.columns:
                if isinstance(out[c].dtype, pd.DatetimeTZDtype):
                    out[c] = out[c].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            out.to_csv(tmp, index=False, compression="gzip" if name.endswith(".gz") else None)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# -- state files --------------------------------------------------------------------------


def save_state(state: dict, path: str | Path) -> Path:
    """Write a ``FeaturePipeline.state_dict()`` as one ``.npz`` file, no pickle inside.

    Arrays go in as arrays; everything else goes in one JSON document (``__json__``).
    Written to a temporary name, fsynced and renamed, so a crash leaves the old file.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}

    def pull(obj: Any, at: str) -> Any:
        if isinstance(obj, np.ndarray):
            key = f"a{len(arrays)}"
            arrays[key] = obj
            return {"__array__": key}
        if isinstance(obj, dict):
            return {k: pull(v, f"{at}.{k}") for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [pull(v, at) for v in obj]
        return obj

    doc = pull(state, "")
    arrays["__json__"] = np.array(json.dumps(doc))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_state(path: str | Path) -> dict:
    """Read a file written by :func:`save_state` back into a state dict."""
    try:
        with np.load(Path(path), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise FeatureStateInvalid(f"{path}: not a feature state file: {exc}") from exc
    if "__json__" not in arrays:
        raise FeatureStateInvalid(f"{path}: not a feature state file (no __json__)")

    def push(obj: Any) -> Any:
        if isinstance(obj, dict):
            if set(obj) == {"__array__"}:
                return arrays[obj["__array__"]]
            return {k: push(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [push(v) for v in obj]
        return obj

    return push(json.loads(str(arrays["__json__"])))
