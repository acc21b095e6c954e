"""Parsed transactions, and the checks that turn raw events into them.

One set of rules serves both paths: :class:`EventParser` checks one JSON record for the
daemon (which sends failures to the DLQ under ``EventInvalid.reason``), and
:func:`columns_from_frame` applies the same rules to a whole table at once.

Times are integer microseconds since the Unix epoch, UTC: integers compare exactly, so a
window boundary means the same thing offline and online.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from fraudstream.errors import EventInvalid
from fraudstream.features.plan import Plan

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_TIME_US = 9_214_646_400_000_000  # 2262-01-01: the end of pandas' nanosecond range
_UNIT_MULT = {"s": 1_000_000, "ms": 1_000, "us": 1}

REASONS = (
    "not_an_object", "missing_field", "wrong_type", "not_finite", "negative_amount",
    "amount_too_large", "value_too_large", "bad_timestamp", "bad_label",
)
"""Every ``EventInvalid.reason`` this module raises: short, stable, usable as metric labels."""

_MAX_QUANTISED = 2**62  # |value| * 10**sum_decimals must stay below this to sum exactly


class Transaction(NamedTuple):
    """A parsed transaction: what the feature pipeline needs, nothing else.

    ``time_us`` is the event time in microseconds since the epoch (UTC). ``extra`` holds
    the other columns the spec names (extra entity keys, numeric fields), or None.
    """

    transaction_id: str
    time_us: int
    customer: str
    terminal: str
    amount: float
    label: int | None = None
    extra: dict[str, Any] | None = None

    @property
    def timestamp(self) -> datetime:
        return datetime.fromtimestamp(self.time_us // 1_000_000, timezone.utc).replace(
            microsecond=self.time_us % 1_000_000)


def iso_utc(time_us: int) -> str:
    """RFC 3339 text of an epoch-microsecond time, e.g. ``2026-04-01T08:15:02.5Z``."""
    dt = datetime.fromtimestamp(time_us // 1_000_000, timezone.utc).replace(
        microsecond=time_us % 1_000_000, tzinfo=None)
    return dt.isoformat() + "Z"


@dataclass(frozen=True)
class _Roles:
    tx: str
    ts: str
    customer: str
    terminal: str
    amount: str
    label: str


class EventParser:
    """Checks one record against the field mapping and returns a :class:`Transaction`.

    Written for the daemon's hot path: plain ``dict`` lookups and ``type(x) is`` checks.

    >>> from fraudstream.config.features import FeatureSpec
    >>> from fraudstream.features.plan import compile_plan
    >>> p = EventParser(compile_plan(FeatureSpec()))
    >>> p.parse({"transaction_id": "t1", "timestamp": "1970-01-01T00:00:01Z",
    ...          "customer_id": "c1", "terminal_id": 7, "amount": 12.5}).time_us
    1000000
    """

    def __init__(self, plan: Plan):
        spec = plan.spec
        f = spec.fields
        self._r = _Roles(f.transaction_id, f.timestamp, f.customer, f.terminal, f.amount, f.label)
        self._need_customer = f.customer in plan.entity_cols
        self._need_terminal = f.terminal in plan.entity_cols
        self._need_amount = plan.needs_amount or f.amount in plan.numeric_cols[1:]
        self._extra_keys = tuple(c for c in plan.entity_cols if c not in (f.customer, f.terminal))
        self._extra_nums = tuple(c for c in plan.numeric_cols if c != f.amount)
        self._max_amount = spec.max_amount
        self._unit = _UNIT_MULT[spec.epoch_unit]
        self._max_value = _MAX_QUANTISED / 10**spec.sum_decimals

    # -- pieces -------------------------------------------------------------------------

    @staticmethod
    def _key(v: Any, field: str) -> str:
        t = type(v)
        if t is str:
            if v:
                return v
            raise EventInvalid("missing_field", "empty", field)
        if v is None:
            raise EventInvalid("missing_field", "", field)
        if t is int:
            return str(v)
        if t is float and v.is_integer():
            return str(int(v))
        raise EventInvalid("wrong_type", f"expected a string id, got {t.__name__}", field)

    def _number(self, v: Any, field: str) -> float:
        t = type(v)
        if t is float or t is int:
            x = float(v)
        elif v is None:
            raise EventInvalid("missing_field", "", field)
        elif t is str:
            try:
                x = float(v)
            except ValueError:
                raise EventInvalid("wrong_type", "not a number", field) from None
        else:
            raise EventInvalid("wrong_type", f"expected a number, got {t.__name__}", field)
        if not math.isfinite(x):
            raise EventInvalid("not_finite", str(x), field)
        return x

    def _time(self, v: Any) -> int:
        field = self._r.ts
        t = type(v)
        if t is str:
            try:
                dt = datetime.fromisoformat(v)
            except ValueError:
                raise EventInvalid("bad_timestamp", f"not RFC 3339: {v[:40]!r}", field) from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            td = dt - EPOCH
            us = (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds
        elif t is int:
            us = v * self._unit
        elif t is float:
            if not math.isfinite(v):
                raise EventInvalid("bad_timestamp", str(v), field)
            us = round(v * self._unit)
        elif v is None:
            raise EventInvalid("missing_field", "", field)
        else:
            raise EventInvalid("wrong_type", f"expected RFC 3339 text or epoch number, got {t.__name__}", field)
        if not 0 <= us < MAX_TIME_US:
            raise EventInvalid("bad_timestamp", "outside 1970..2262", field)
        return us

    def parse_time(self, v: Any) -> int:
        """A timestamp field's value (RFC 3339 text or an epoch number in ``epoch_unit``) as
        epoch microseconds, by the transaction rules; label events' times use it too."""
        return self._time(v)

    def _label(self, v: Any) -> int | None:
        t = type(v)
        if (t is int or t is bool or t is float) and (v == 0 or v == 1):
            return int(v)
        if t is str and v in ("0", "1"):
            return int(v)
        raise EventInvalid("bad_label", f"expected 0 or 1, got {v!r}"[:80], self._r.label)

    # -- the record ---------------------------------------------------------------------

    def parse(self, record: Any) -> Transaction:
        """One decoded JSON object -> :class:`Transaction`, or ``EventInvalid``."""
        if type(record) is not dict:
            raise EventInvalid("not_an_object", f"got {type(record).__name__}")
        r = self._r
        get = record.get
        txid = get(r.tx)
        if type(txid) is not str or not txid:
            txid = self._key(txid, r.tx)
        time_us = self._time(get(r.ts))
        if self._need_customer:
            cust = get(r.customer)
            if type(cust) is not str or not cust:
                cust = self._key(cust, r.customer)
        else:
            cust = ""
        if self._need_terminal:
            term = get(r.terminal)
            if type(term) is not str or not term:
                term = self._key(term, r.terminal)
        else:
            term = ""
        if self._need_amount:
            amount = self._number(get(r.amount), r.amount)
            if amount < 0:
                raise EventInvalid("negative_amount", str(amount), r.amount)
            if amount > self._max_amount:
                raise EventInvalid("amount_too_large", f"{amount} > {self._max_amount}", r.amount)
        else:
            amount = 0.0
        label = get(r.label)
        if label is not None:
            label = self._label(label)
        extra = None
        if self._extra_keys or self._extra_nums:
            extra = {}
            for c in self._extra_keys:
                extra[c] = self._key(get(c), c)
            for c in self._extra_nums:
                x = self._number(get(c), c)
                if abs(x) >= self._max_value:
                    raise EventInvalid("value_too_large", str(x), c)
                extra[c] = x
        return Transaction(txid, time_us, cust, term, amount, label, extra)


# -- whole tables --------------------------------------------------------------------------


@dataclass
class Columns:
    """A table's events as arrays, in input row order."""

    time_us: np.ndarray                 # int64
    codes: dict[str, np.ndarray]        # entity column -> integer codes, equal iff ids equal
    numeric: dict[str, np.ndarray]      # numeric column -> float64
    label: np.ndarray                   # float64, NaN where unknown
    transaction_id: np.ndarray | None   # object; None unless asked for
    reasons: np.ndarray                 # object: "" when valid, else "reason:field"
    invalid: np.ndarray                 # bool

    @property
    def n(self) -> int:
        return len(self.time_us)


class _Reasons:
    """The first reason each row is invalid, as small integer codes until asked for text."""

    def __init__(self, n: int):
        self.codes = np.zeros(n, np.int16)
        self.texts = [""]

    def _code(self, reason: str, field: str) -> int:
        text = f"{reason}:{field}"
        if text not in self.texts:
            self.texts.append(text)
        return self.texts.index(text)

    def mark(self, mask: np.ndarray, reason: str, field: str) -> None:
        if mask.any():
            self.codes[mask & (self.codes == 0)] = self._code(reason, field)

    def set(self, i: int, reason: str, field: str) -> None:
        if self.codes[i] == 0:
            self.codes[i] = self._code(reason, field)

    def to_array(self) -> np.ndarray:
        return np.array(self.texts, dtype=object)[self.codes]


def _frame_times(s: pd.Series, unit: str, parser: EventParser) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(microseconds, missing mask, bad mask) of a timestamp column of any common type."""
    n = len(s)
    missing = s.isna().to_numpy()
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s.dtype):
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        us = s.to_numpy(dtype="datetime64[us]").view(np.int64).copy()
        us[missing] = 0
        bad = np.zeros(n, bool)
    elif pd.api.types.is_integer_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        us = s.to_numpy(dtype=np.int64, na_value=0) * _UNIT_MULT[unit]
        bad = np.zeros(n, bool)
    elif pd.api.types.is_float_dtype(s.dtype):
        x = s.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(x) & ~missing
        with np.errstate(invalid="ignore"):
            us = np.rint(np.where(np.isfinite(x), x, 0.0) * _UNIT_MULT[unit])
        bad |= np.abs(us) >= 2**62
        us = np.where(bad, 0, us).astype(np.int64)
    else:
        values = s.to_numpy(dtype=object)
        is_str = np.fromiter((type(v) is str for v in values), bool, n)
        us = np.zeros(n, np.int64)
        bad = ~missing & ~is_str
        if is_str.any():
            parsed = pd.to_datetime(pd.Series(values[is_str], dtype=object), utc=True,
                                    format="ISO8601", errors="coerce")
            got = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[us]").view(np.int64)
            nat = parsed.isna().to_numpy()
            idx = np.flatnonzero(is_str)
            us[idx[~nat]] = got[~nat]
            for i in idx[nat]:  # forms pandas refuses but the event parser accepts
                try:
                    us[i] = parser._time(values[i])
                except EventInvalid:
                    bad[i] = True
        for i in np.flatnonzero(bad & ~is_str):  # epoch numbers mixed into a text column
            try:
                us[i] = parser._time(values[i])
                bad[i] = False
            except EventInvalid:
                pass
    bad |= ~missing & ~((us >= 0) & (us < MAX_TIME_US))
    return us, missing, bad


def _frame_keys(s: pd.Series, field: str, reasons: _Reasons, want: str) -> np.ndarray | None:
    """Check an id column; return its values as ``text``, or as integer ``codes`` that are
    equal exactly where the texts are (all the windows need), or nothing (``check``)."""
    codes = want == "codes"
    n = len(s)
    if pd.api.types.is_bool_dtype(s.dtype):
        reasons.mark(np.ones(n, bool), "wrong_type", field)
        return np.zeros(n, np.int64) if codes else np.full(n, "", object)
    if isinstance(s.dtype, pd.StringDtype):
        missing = s.isna().to_numpy()
        reasons.mark(missing | (s == "").fillna(False).to_numpy(dtype=bool), "missing_field", field)
        if want == "check":
            return None
        return pd.factorize(s)[0] if codes else s.to_numpy(dtype=object, na_value="")
    if pd.api.types.is_integer_dtype(s.dtype):
        reasons.mark(s.isna().to_numpy(), "missing_field", field)  # nullable Int64 columns
        if codes:
            return pd.factorize(s)[0]
        return np.array([str(v) for v in s.tolist()], dtype=object)
    if pd.api.types.is_float_dtype(s.dtype):
        x = s.to_numpy(dtype=np.float64, na_value=np.nan)
        ok = np.isfinite(x) & (x == np.round(x))
        reasons.mark(np.isnan(x), "missing_field", field)
        reasons.mark(~ok, "wrong_type", field)
        if codes:
            return pd.factorize(np.where(ok, x, 0.0))[0]
        return np.array([str(int(v)) if k else "" for v, k in zip(x.tolist(), ok.tolist())], dtype=object)
    # object columns: anything may be in there; apply the event parser's rule per value
    out = s.to_numpy(dtype=object, na_value=None).copy()
    for i, v in enumerate(out.tolist()):
        if type(v) is str and v:
            continue
        try:
            out[i] = EventParser._key(v, field)
        except EventInvalid as exc:
            reasons.set(i, exc.reason, field)
            out[i] = ""
    return pd.factorize(out)[0] if codes else out


def _frame_numbers(s: pd.Series, field: str, reasons: _Reasons) -> np.ndarray:
    if pd.api.types.is_bool_dtype(s.dtype):
        reasons.mark(np.ones(len(s), bool), "wrong_type", field)
        return np.zeros(len(s))
    missing = s.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(s.dtype):
        x = s.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        reasons.mark(np.isnan(x) & ~missing, "wrong_type", field)
    reasons.mark(missing, "missing_field", field)
    reasons.mark(np.isinf(x), "not_finite", field)
    return np.where(np.isfinite(x), x, 0.0)


def columns_from_frame(plan: Plan, frame: pd.DataFrame, with_ids: bool = False) -> Columns:
    """Pull the plan's columns out of ``frame`` and check them with the event rules.

    Row ``i`` of ``reasons`` is ``""`` when the row is a valid event, else
    ``"<reason>:<field>"`` with the same reason the event parser would raise.
    """
    spec = plan.spec
    f = spec.fields
    n = len(frame)
    reasons = _Reasons(n)
    parser = EventParser(plan)

    def need(col: str) -> pd.Series:
        if col not in frame.columns:
            raise EventInvalid("missing_field", f"the table has no column {col!r}", col)
        return frame[col]

    ids = _frame_keys(need(f.transaction_id), f.transaction_id, reasons, "text" if with_ids else "check")
    time_us, t_missing, t_bad = _frame_times(need(f.timestamp), spec.epoch_unit, parser)
    reasons.mark(t_missing, "missing_field", f.timestamp)
    reasons.mark(t_bad, "bad_timestamp", f.timestamp)
    keys = {c: _frame_keys(need(c), c, reasons, "codes") for c in plan.entity_cols}
    numeric = {}
    max_value = _MAX_QUANTISED / 10**spec.sum_decimals
    for c in plan.numeric_cols:
        if c == f.amount and not parser._need_amount:
            numeric[c] = np.zeros(n)
            continue
        x = _frame_numbers(need(c), c, reasons)
        if c == f.amount:
            reasons.mark(x < 0, "negative_amount", c)
            reasons.mark(x > spec.max_amount, "amount_too_large", c)
        else:
            reasons.mark(np.abs(x) >= max_value, "value_too_large", c)
        numeric[c] = x
    if f.label in frame.columns:
        raw = frame[f.label]
        if pd.api.types.is_numeric_dtype(raw.dtype) or pd.api.types.is_bool_dtype(raw.dtype):
            label = raw.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            label = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            reasons.mark(np.isnan(label) & ~raw.isna().to_numpy(), "bad_label", f.label)
        reasons.mark(~np.isnan(label) & (label != 0) & (label != 1), "bad_label", f.label)
        label = np.where((label == 0) | (label == 1), label, np.nan)
    else:
        label = np.full(n, np.nan)
    return Columns(time_us, keys, numeric, label, ids, reasons.to_array(), reasons.codes != 0)


def raise_first_invalid(cols: Columns) -> None:
    """Raise ``EventInvalid`` for the first bad row, naming how many rows are bad."""
    bad = np.flatnonzero(cols.invalid)
    reasons = cols.reasons
    if len(bad):
        reason, _, field = reasons[bad[0]].partition(":")
        raise EventInvalid(reason, f"{len(bad)} invalid row(s); first at row {bad[0]}", field or None)
