"""``FeaturePipeline``: the one place where events become model inputs.

Offline training calls :meth:`FeaturePipeline.transform_many` on a whole table; the daemon
calls :meth:`~FeaturePipeline.parse`, :meth:`~FeaturePipeline.update_many` and
:meth:`~FeaturePipeline.learn_labels` as events arrive. Both paths count the same window
entries with exact integer arithmetic and then derive every float column with the same
function (``_assemble``), so a model trained offline sees the rows the daemon will compute.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.config.features import FeatureSpec
from fraudstream.errors import EventInvalid
from fraudstream.features.events import (
    Columns,
    EventParser,
    Transaction,
    columns_from_frame,
    iso_utc,
    raise_first_invalid,
)
from fraudstream.features.exceptions import FeatureStateInvalid
from fraudstream.features.normalize import Normalizer
from fraudstream.features.plan import US_PER_DAY, compile_plan
from fraudstream.features.windows import (
    NO_CLOCK,
    EventWindowState,
    LabelWindowState,
    offline_event_stats,
    offline_label_stats,
)

SCHEMA_VERSION = 1
_US_PER_HOUR = 3_600_000_000
_TWO_PI = 2.0 * math.pi
_SWEEP_EVERY_US = US_PER_DAY


class FeaturePipeline:
    """Declarative features over transactions, offline and streaming, with identical rows.

    >>> p = FeaturePipeline(FeatureSpec(preset="handbook"))
    >>> p.n_features, p.feature_names[:3]
    (15, ['amount', 'weekend', 'night'])
    >>> tx = p.parse({"transaction_id": "t1", "timestamp": "2026-04-04T03:00:00Z",
    ...               "customer_id": "c1", "terminal_id": "m1", "amount": 20.0})
    >>> p.update_many([tx])[0, :5].tolist()   # Saturday 03:00 UTC; first event of c1
    [20.0, 1.0, 1.0, 1.0, 20.0]
    """

    def __init__(self, spec: FeatureSpec | None = None):
        self.spec = spec if spec is not None else FeatureSpec()
        self._plan = compile_plan(self.spec)
        self.feature_names: list[str] = list(self._plan.names)
        self.n_features = len(self.feature_names)
        self._parser = EventParser(self._plan)
        self._scale = 10**self.spec.sum_decimals
        self._amount_col = self.spec.fields.amount
        self._tz = None if self.spec.timezone == "UTC" else self.spec.timezone
        self.normalizer = Normalizer(self.n_features, self.spec.normalizer)
        self._ix = self._index_outputs()
        self.reset()

    @classmethod
    def from_state_dict(cls, state: dict) -> FeaturePipeline:
        """Rebuild a pipeline from a saved state alone: its spec travels with it."""
        try:
            spec = FeatureSpec.model_validate(state["spec"])
        except (KeyError, ValueError) as exc:
            raise FeatureStateInvalid(f"saved feature spec is unusable: {exc}") from exc
        return cls(spec).load_state_dict(state)

    def reset(self) -> None:
        """Forget all streaming window state and counters (the normaliser is kept)."""
        self._event_states = [EventWindowState(g) for g in self._plan.event_groups]
        self._label_states = [LabelWindowState(g) for g in self._plan.label_groups]
        self.watermark_us = NO_CLOCK
        self._next_sweep_us = NO_CLOCK
        self.first_event_us: int | None = None  # the first event the windows took
        self.late_events = 0
        self.events_seen = 0
        self.labels_seen = 0

    # -- parsing ---------------------------------------------------------------------------

    def parse(self, record: Any) -> Transaction:
        """One decoded JSON record -> :class:`Transaction`; raises ``EventInvalid``."""
        return self._parser.parse(record)

    def parse_time(self, value: Any) -> int:
        """A timestamp value -> epoch microseconds, by the rules of :meth:`parse`; ``EventInvalid``."""
        return self._parser.parse_time(value)

    def parse_many(self, records: Iterable[Any]) -> tuple[list[Transaction], list[tuple[int, EventInvalid]]]:
        """Parse a polled batch: the valid transactions, and ``(index, error)`` for the rest."""
        parse = self._parser.parse
        good: list[Transaction] = []
        bad: list[tuple[int, EventInvalid]] = []
        for i, rec in enumerate(records):
            try:
                good.append(parse(rec))
            except EventInvalid as exc:
                bad.append((i, exc))
        return good, bad

    # -- offline ---------------------------------------------------------------------------

    def validate_many(self, frame: pd.DataFrame) -> np.ndarray:
        """Per row, ``""`` when valid, else ``"<reason>:<field>"`` (the event parser's reason)."""
        return columns_from_frame(self._plan, frame).reasons

    def transform_many(self, frame: pd.DataFrame) -> np.ndarray:
        """Features of every row of a historical table, rows aligned with ``frame``'s rows.

        Rows are processed in event-time order (a stable sort, so equal times keep their
        table order) and each row sees the rows before it, as if streamed; labels are taken
        as known ``delay`` after their transaction, and a missing (NaN) label never arrives.
        Raises ``EventInvalid`` naming the first invalid row; drop such rows first with
        :meth:`validate_many`. Does not touch the streaming state.
        """
        cols = columns_from_frame(self._plan, frame)
        raise_first_invalid(cols)
        return self._transform_columns(cols)

    def _transform_columns(self, cols: Columns) -> np.ndarray:
        n = cols.n
        if n == 0:
            return np.empty((0, self.n_features))
        in_order = bool((cols.time_us[1:] >= cols.time_us[:-1]).all())
        order = np.arange(n) if in_order else np.argsort(cols.time_us, kind="stable")
        t = cols.time_us[order]
        numeric = {c: v[order] for c, v in cols.numeric.items()}
        codes = {col: cols.codes[col][order] for col in self._plan.entity_cols}
        raw_ev = [
            offline_event_stats(g, codes[g.entity], t,
                                self._quantise(numeric[g.field]) if g.field else None)
            for g in self._plan.event_groups
        ]
        label = cols.label[order]
        raw_lab = [offline_label_stats(g, codes[g.entity], t, label) for g in self._plan.label_groups]
        X_sorted = self._assemble(t, numeric, raw_ev, raw_lab)
        if in_order:
            return X_sorted
        X = np.empty_like(X_sorted)
        X[order] = X_sorted
        return X

    def feature_table(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The features of ``frame`` as a table sorted by event time, with the transaction
        id, the UTC timestamp and the label (when the input has one) in front."""
        cols = columns_from_frame(self._plan, frame, with_ids=True)
        raise_first_invalid(cols)
        X = self._transform_columns(cols)
        order = np.argsort(cols.time_us, kind="stable")
        f = self.spec.fields
        out = {f.transaction_id: cols.transaction_id[order],
               f.timestamp: pd.to_datetime(cols.time_us[order], unit="us", utc=True)}
        if f.label in frame.columns:
            out[f.label] = pd.array(cols.label[order], dtype="Int8")  # NaN: label unknown
        table = pd.DataFrame(out)
        feats = pd.DataFrame(X[order], columns=self.feature_names)
        return pd.concat([table, feats], axis=1)

    # -- streaming -------------------------------------------------------------------------

    def update_many(self, events: Sequence[Transaction]) -> np.ndarray:
        """Add each transaction to its windows in order and return its feature row.

        Event ``i``'s row is computed after adding it and before event ``i + 1``. A late
        event (older than its entity's newest) enters the windows at the entity's newest
        time and is counted in ``late_events``. With ``normalizer.mode: running`` the
        rows are also folded into the normaliser's statistics.
        """
        return self._stream(events, None)

    def replay_many(self, items: Iterable[Transaction | tuple[Transaction, int]]) -> np.ndarray:
        """Transactions and arrived labels ``(transaction, label)`` interleaved in arrival
        order, in one call; returns the transactions' rows.

        The same as alternating :meth:`update_many` and :meth:`learn_labels` call by call,
        without the per-call cost: for replaying a merged stream of both topics.
        """
        txs: list[Transaction] = []
        before: dict[int, list[tuple[Transaction, int]]] = {}
        for item in items:
            if type(item) is Transaction:
                txs.append(item)
            else:
                tx, y = item
                before.setdefault(len(txs), []).append((tx, self.label_value(y)))
        trailing = before.pop(len(txs), [])
        X = self._stream(txs, before)
        if trailing:
            self.learn_labels(trailing)
        return X

    def learn_labels(self, labelled: Iterable[tuple[Transaction, int]]) -> int:
        """File arrived labels ``(transaction, label)`` for the delayed label windows.

        A label counts for a query at time ``t`` iff its transaction time is in
        ``(t - delay - w, t - delay]`` and it was learned before that query, however early
        or late it arrived. Returns how many labels were kept; labels too old to enter any
        window again are counted in ``labels_expired``.
        """
        pairs = [(tx, self.label_value(y)) for tx, y in labelled]
        self.labels_seen += len(pairs)
        kept = 0
        for st in self._label_states:
            for key, tt, y in self._label_entries(st, pairs):
                if st.learn(key, tt, y):
                    kept += 1
                else:
                    st.expired += 1
        return kept

    @property
    def labels_expired(self) -> int:
        """Labels dropped because their windows had passed (per label window group)."""
        return sum(st.expired for st in self._label_states)

    def label_value(self, y: Any) -> int:
        """A known label as 0 or 1 (``0``, ``1``, ``0.0``, ``1.0``; not text, not a boolean);
        ``EventInvalid`` naming the label field otherwise."""
        try:
            ok = not isinstance(y, (str, bool)) and bool(y == 0 or y == 1)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise EventInvalid("bad_label", f"expected 0 or 1, got {y!r}"[:80], self.spec.fields.label)
        return int(y)

    def entity_key(self, col: str):
        """The function that reads entity column ``col`` (customer, terminal or an extra) of a transaction."""
        f = self.spec.fields
        if col == f.customer:
            return lambda e: e.customer
        if col == f.terminal:
            return lambda e: e.terminal
        return lambda e: e.extra[col]

    def _label_entries(self, st: LabelWindowState, pairs: list[tuple[Transaction, int]]) -> list[tuple[str, int, int]]:
        """``(key, transaction time, label)`` for one label group, dropping (and counting)
        labels already older than the group's span at the watermark."""
        get = self.entity_key(st.group.entity)
        cut = self.watermark_us - st.group.span_us
        out = []
        for tx, y in pairs:
            if tx.time_us <= cut:
                st.expired += 1
            else:
                out.append((get(tx), tx.time_us, y))
        return out

    def _stream(self, events: Sequence[Transaction],
                labels_before: dict[int, list[tuple[Transaction, int]]] | None) -> np.ndarray:
        n = len(events)
        if n == 0:
            return np.empty((0, self.n_features))
        plan = self._plan
        f = self.spec.fields
        times = [e.time_us for e in events]
        numeric: dict[str, np.ndarray] = {}
        for c in plan.numeric_cols:
            if c == self._amount_col:
                numeric[c] = np.array([e.amount for e in events], dtype=np.float64)
            else:
                numeric[c] = np.array([e.extra[c] for e in events], dtype=np.float64)
        keys: dict[str, list[str]] = {}
        for c in plan.entity_cols:
            if c == f.customer:
                keys[c] = [e.customer for e in events]
            elif c == f.terminal:
                keys[c] = [e.terminal for e in events]
            else:
                keys[c] = [e.extra[c] for e in events]
        late = np.zeros(n, bool)
        raw_ev = [
            st.update_many(keys[st.group.entity], times,
                           self._quantise(numeric[st.group.field]).tolist() if st.group.field else None,
                           late).T
            for st in self._event_states
        ]
        raw_lab = []
        if labels_before:
            self.labels_seen += sum(len(v) for v in labels_before.values())
        for st in self._label_states:
            learn = None
            if labels_before:
                learn = {i: self._label_entries(st, pairs) for i, pairs in labels_before.items()}
            raw_lab.append(st.query_many(keys[st.group.entity], times, late, learn).T)
        X = self._assemble(np.array(times, dtype=np.int64), numeric, raw_ev, raw_lab)
        self.late_events += int(late.sum())
        self.events_seen += n
        if self.first_event_us is None:
            self.first_event_us = min(times)
        newest = max(times)
        if newest > self.watermark_us:
            self.watermark_us = newest
        if self.watermark_us >= self._next_sweep_us:
            self.evict_idle()
        if self.spec.normalizer.mode == "running":
            self.normalizer.learn_many(X)
        return X

    def evict_idle(self) -> int:
        """Drop entities not seen for longer than their longest window (plus delay).

        Runs by itself once per day of event time; exact for in-order streams, since a
        dropped entity has nothing left inside any window a later event can open.
        """
        dropped = sum(st.evict_idle(self.watermark_us) for st in self._event_states + self._label_states)
        self._next_sweep_us = self.watermark_us + _SWEEP_EVERY_US
        return dropped

    @property
    def warm_from_us(self) -> int | None:
        """Event time from which every window of an entity seen since the first event can be
        full: the first event the windows took plus the spec's warm-up (the longest window
        plus its label delay). Rows before it describe windows still filling, not the data;
        drift detectors skip them. None before the first event."""
        if self.first_event_us is None:
            return None
        return self.first_event_us + round(self.spec.warmup_days() * US_PER_DAY)

    @property
    def n_entities(self) -> dict[str, int]:
        """Entities held per window group, e.g. ``{"events:customer_id:amount": 4990, ...}``."""
        return {st.group.name: len(st.entities) for st in self._event_states + self._label_states}

    def fork(self, txs: Iterable[Transaction]) -> FeaturePipeline:
        """A throwaway pipeline holding copies of the window state of the entities ``txs``
        name, the watermark and the normaliser: streaming ``txs`` through it gives the rows
        this pipeline would give, and leaves this one untouched.

        The rows of a batch depend only on the windows of the entities it names, the
        watermark and the normaliser, so the cost grows with ``txs``, not with the state:
        a whole copy (``from_state_dict(state_dict())``) costs about 2.2 s at 135k
        entities, ``deepcopy`` about 6 s, far too slow for one HTTP request.
        """
        txs = list(txs)
        scratch = FeaturePipeline(self.spec)
        scratch.normalizer.load_state_dict(copy.deepcopy(self.normalizer.state_dict()))
        scratch.watermark_us = self.watermark_us
        scratch._next_sweep_us = self._next_sweep_us
        own_states = scratch._event_states + scratch._label_states
        for live, own in zip(self._event_states + self._label_states, own_states, strict=True):
            entity = self.entity_key(live.group.entity)
            for key in {entity(tx) for tx in txs}:
                found = live.entities.get(key)
                if found is not None:
                    own.entities[key] = copy.deepcopy(found)
        return scratch

    # -- normalisation ---------------------------------------------------------------------

    def fit_normalizer(self, X: np.ndarray) -> FeaturePipeline:
        """Fit mean and std per feature on training rows (in ``running`` mode: the start)."""
        self.normalizer.fit_many(X)
        return self

    def normalize(self, X: np.ndarray) -> np.ndarray:
        """Standardised float32 rows for the model."""
        return self.normalizer.transform_many(X)

    # -- state -----------------------------------------------------------------------------

    def _signature(self) -> dict:
        return {
            "feature_names": self.feature_names,
            "groups": [g.name for g in self._plan.event_groups + self._plan.label_groups],
            "timezone": self.spec.timezone,
            "sum_decimals": self.spec.sum_decimals,
        }

    def state_dict(self, include_windows: bool = True) -> dict:
        """Everything needed to continue exactly where this pipeline is.

        Values are JSON scalars, lists and dicts, plus numpy arrays (int64, or ``str`` for
        entity keys) under ``windows``: :func:`fraudstream.features.save_state` writes it
        as one ``.npz`` without pickle. ``include_windows=False`` keeps only the spec,
        counters and normaliser (what a trained model artifact needs).
        """
        state: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "feature_names": list(self.feature_names),
            "spec": self.spec.model_dump(mode="json"),
            "counters": {
                "late_events": self.late_events,
                "events_seen": self.events_seen,
                "labels_seen": self.labels_seen,
                "labels_expired": {st.group.name: st.expired for st in self._label_states},
            },
            "normalizer": self.normalizer.state_dict(),
            "windows": None,
        }
        if include_windows:
            state["watermark_us"] = int(self.watermark_us)
            state["next_sweep_us"] = int(self._next_sweep_us)
            state["first_event_us"] = self.first_event_us
            state["windows"] = {st.group.name: st.export()
                                for st in self._event_states + self._label_states}
        return state

    def load_state_dict(self, state: dict) -> FeaturePipeline:
        """Restore a :meth:`state_dict`; raises ``FeatureStateInvalid`` when it does not fit."""
        version = state.get("schema_version")
        if version != SCHEMA_VERSION:
            raise FeatureStateInvalid(f"feature state schema {version!r}, this version reads {SCHEMA_VERSION}")
        try:
            spec = FeatureSpec.model_validate(state["spec"])
        except (KeyError, ValueError) as exc:
            raise FeatureStateInvalid(f"saved feature spec is unusable: {exc}") from exc
        theirs = FeaturePipeline(spec)._signature() if spec != self.spec else self._signature()
        if theirs != self._signature():
            diff = [k for k in theirs if theirs[k] != self._signature()[k]]
            raise FeatureStateInvalid(f"feature state was made by another spec (differs in {', '.join(diff)})")
        self.reset()
        counters = state.get("counters", {})
        self.late_events = int(counters.get("late_events", 0))
        self.events_seen = int(counters.get("events_seen", 0))
        self.labels_seen = int(counters.get("labels_seen", 0))
        expired = counters.get("labels_expired", {})
        for st in self._label_states:
            st.expired = int(expired.get(st.group.name, 0))
        self.normalizer.load_state_dict(state["normalizer"])
        windows = state.get("windows")
        if windows is not None:
            self.watermark_us = int(state["watermark_us"])
            self._next_sweep_us = int(state["next_sweep_us"])
            # a state saved before the first event was kept: its windows count as warm
            warm_now = self.watermark_us - round(self.spec.warmup_days() * US_PER_DAY)
            first = state.get("first_event_us", None if self.watermark_us == NO_CLOCK else warm_now)
            self.first_event_us = None if first is None else int(first)
            for st in self._event_states + self._label_states:
                try:
                    data = windows[st.group.name]
                    st.restore({k: np.asarray(data[k]) for k in ("keys", "clock", "lengths", "times", "values")})
                except (KeyError, ValueError, TypeError) as exc:
                    raise FeatureStateInvalid(f"window state {st.group.name!r} is unusable: {exc}") from exc
        return self

    # -- shared maths ----------------------------------------------------------------------

    def _quantise(self, x: np.ndarray) -> np.ndarray:
        """Values as integers of ``10**-sum_decimals``, so window sums are exact."""
        return np.rint(x * self._scale).astype(np.int64)

    def _local_us(self, time_us: np.ndarray) -> np.ndarray:
        if self._tz is None:
            return time_us
        idx = pd.DatetimeIndex(time_us.view("datetime64[us]")).tz_localize("UTC")
        local = idx.tz_convert(self._tz).tz_localize(None)
        return np.asarray(local, dtype="datetime64[us]").view(np.int64)

    def _assemble(self, time_us: np.ndarray, numeric: dict[str, np.ndarray],
                  raw_ev: list[np.ndarray], raw_lab: list[np.ndarray]) -> np.ndarray:
        """The float feature matrix from times, numeric columns and integer window stats.

        Shared by both paths: this is why their rows are equal, not merely close.
        """
        plan = self._plan
        n = len(time_us)
        XT = np.empty((self.n_features + self._n_scratch, n))  # one feature per row: contiguous writes
        local = None
        col = 0
        for name in plan.stateless:
            if name in ("amount", "log_amount"):
                a = numeric[self._amount_col]
                XT[col] = a if name == "amount" else np.log1p(a)
            elif name.startswith("field:"):
                XT[col] = numeric[name.removeprefix("field:")]
            else:
                if local is None:
                    local = self._local_us(time_us)
                    day_us = local % US_PER_DAY
                    weekday = (local // US_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday
                if name == "weekend":
                    XT[col] = weekday >= 5
                elif name == "night":
                    XT[col] = day_us // _US_PER_HOUR <= 6
                elif name == "hour_sin":
                    XT[col] = np.sin(_TWO_PI * day_us / US_PER_DAY)
                elif name == "hour_cos":
                    XT[col] = np.cos(_TWO_PI * day_us / US_PER_DAY)
                elif name == "weekday_sin":
                    XT[col] = np.sin(_TWO_PI * weekday / 7)
                elif name == "weekday_cos":
                    XT[col] = np.cos(_TWO_PI * weekday / 7)
                else:  # pragma: no cover - the spec validator rejects unknown names
                    raise AssertionError(name)
            col += 1
        if plan.outputs:
            raw = raw_ev + raw_lab  # integer stats, one statistic per row
            RT = np.vstack(raw) if len(raw) > 1 else raw[0]
            ix = self._ix
            XT[ix["count_out"]] = RT[ix["count_raw"]]
            if len(ix["sum_out"]):
                XT[ix["sum_out"]] = RT[ix["sum_raw"]] / self._scale
            if len(ix["mean_out"]):
                XT[ix["mean_out"]] = (RT[ix["mean_raw"]] / self._scale) / RT[ix["mean_cnt"]]
            if len(ix["rate_out"]):
                frauds, count = RT[ix["rate_raw"]], RT[ix["rate_cnt"]]
                rate = np.zeros(frauds.shape)
                np.divide(frauds, count, out=rate, where=count > 0)
                XT[ix["rate_out"]] = rate
            for out_col, num, den_col, fill in ix["ratios"]:
                den = XT[den_col]
                ratio = np.full(n, fill)
                np.divide(numeric[num], den, out=ratio, where=den != 0)
                XT[out_col] = ratio
        return np.ascontiguousarray(XT[: self.n_features].T)

    def _index_outputs(self) -> dict:
        """Precompute which raw integer column feeds which feature column, by operation,
        so assembling a batch is a handful of array operations whatever the spec."""
        plan = self._plan
        ev_off = plan.event_raw_offsets()
        lab_off, at = [], sum(len(g.wins_us) * (2 if g.field else 1) for g in plan.event_groups)
        for g in plan.label_groups:
            lab_off.append(at)
            at += 2 * len(g.wins_us)
        ix: dict[str, list] = {k: [] for k in ("count_out", "count_raw", "sum_out", "sum_raw", "mean_out",
                                               "mean_raw", "mean_cnt", "rate_out", "rate_raw", "rate_cnt")}

        def event_cols(gi: int, j: int) -> tuple[int, int]:
            width = 2 if plan.event_groups[gi].field else 1
            base = ev_off[gi] + width * j
            return base, base + 1

        def place(out_col: int, kind: str, gi: int, j: int, stat: str) -> None:
            if kind == "event":
                c, s = event_cols(gi, j)
                if stat == "count":
                    ix["count_out"].append(out_col); ix["count_raw"].append(c)
                elif stat == "sum":
                    ix["sum_out"].append(out_col); ix["sum_raw"].append(s)
                else:
                    ix["mean_out"].append(out_col); ix["mean_raw"].append(s); ix["mean_cnt"].append(c)
            else:
                c = lab_off[gi] + 2 * j
                if stat == "count":
                    ix["count_out"].append(out_col); ix["count_raw"].append(c)
                elif stat == "frauds":
                    ix["count_out"].append(out_col); ix["count_raw"].append(c + 1)
                else:
                    ix["rate_out"].append(out_col); ix["rate_raw"].append(c + 1); ix["rate_cnt"].append(c)

        col = len(plan.stateless)
        ratios = []
        for out in plan.outputs:
            if out[0] == "ratio":
                _, num, gi, j, stat, fill = out
                ratios.append((col, num, ("event", gi, j, stat), fill))
            else:
                place(col, *out)
            col += 1
        # A ratio's denominator is computed into a scratch column past the features.
        self._n_scratch = 0
        resolved = []
        for out_col, num, den, fill in ratios:
            scratch = self.n_features + self._n_scratch
            self._n_scratch += 1
            place(scratch, *den)
            resolved.append((out_col, num, scratch, fill))
        ix = {k: np.array(v, dtype=np.intp) for k, v in ix.items()}
        ix["ratios"] = resolved
        return ix

    def __repr__(self) -> str:
        return f"FeaturePipeline(preset={self.spec.preset!r}, n_features={self.n_features})"


def describe_state(state: dict) -> str:
    """One line about a saved state, for logs: version, features, entities held."""
    windows = state.get("windows") or {}
    held = {name: len(data["keys"]) for name, data in windows.items()}
    return json.dumps({"schema_version": state.get("schema_version"),
                       "n_features": len(state.get("feature_names", [])), "entities": held})


__all__ = ["FeaturePipeline", "SCHEMA_VERSION", "Transaction", "describe_state", "iso_utc"]
