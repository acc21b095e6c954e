"""Per-entity time windows, twice: per event (streaming) and per table (offline).

Both produce the same *integers* for each event: how many events (or labels) are in each
window and the sum of the quantised values (or of the fraud labels) there. Integers add and
subtract exactly, so a running window in a daemon that runs for months never drifts, and
the two paths agree bit for bit; the floats (means, rates) are derived from the integers by
one shared function afterwards.

Streaming keeps, per entity, one time-sorted array of entries and, per window length, the
index of the first entry still inside and the running sum: adding an event and evicting
expired entries is amortised O(1) per window. Offline sorts the table by (entity, time)
once and finds every window start with one ``searchsorted`` per window length.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right

import numpy as np

from fraudstream.features.plan import EventGroup, LabelGroup

NO_CLOCK = -(2**62)
"""The clock of an entity that has had labels but no transaction yet."""

_COMPACT_MIN = 64
_VALUE_DTYPES = {"q": np.int64, "b": np.int8}  # array typecode -> numpy dtype
DIRECT_KEY_LIMIT = 2**62
"""Offline keys ``entity * stride + time`` are used below this; else time ranks."""


class _Entity:
    """One entity's entries: ``times`` ascending, ``vals`` alongside.

    ``heads[j]`` = number of entries at or before the lower edge of window ``j``;
    ``sums[j]`` = sum of ``vals`` from ``heads[j]`` to ``ready`` (event windows: to the end).
    ``ready`` (label windows) = entries whose transaction time has reached ``clock - delay``.
    """

    __slots__ = ("clock", "times", "vals", "heads", "sums", "ready")

    def __init__(self, n_windows: int, clock: int, val_code: str | None):
        self.clock = clock
        self.times = array("q")
        self.vals = array(val_code) if val_code else None
        self.heads = [0] * n_windows
        self.sums = [0] * n_windows
        self.ready = 0

    def compact(self) -> None:
        h = self.heads[-1]  # the longest window has the smallest head
        if h > _COMPACT_MIN and 2 * h > len(self.times):
            del self.times[:h]
            if self.vals is not None:
                del self.vals[:h]
            self.heads = [x - h for x in self.heads]
            self.ready -= h


class _WindowState:
    """What the event and label windows share: dropping idle entities and their state.

    ``delay`` is how far behind an entity's clock its windows end (0 for its own events);
    ``val_code`` the array type of its values (None: events without a summed field).
    """

    group: EventGroup | LabelGroup
    wins: list[int]
    delay = 0
    val_code: str | None
    entities: dict[str, _Entity]

    def _idle(self, st: _Entity, cut: int) -> bool:
        return st.clock <= cut

    def evict_idle(self, watermark_us: int) -> int:
        """Drop entities with nothing left inside any window at ``watermark_us``."""
        cut = watermark_us - self.group.span_us
        idle = [k for k, st in self.entities.items() if self._idle(st, cut)]
        for k in idle:
            del self.entities[k]
        return len(idle)

    # -- state ----------------------------------------------------------------------------

    def export(self) -> dict[str, np.ndarray]:
        keys, clock, lengths = [], [], []
        times, vals = array("q"), array(self.val_code or "q")
        for k, st in self.entities.items():
            h = st.heads[-1]
            keys.append(k)
            clock.append(st.clock)
            lengths.append(len(st.times) - h)
            times.extend(st.times[h:])
            if st.vals is not None:
                vals.extend(st.vals[h:])
        return {
            "keys": np.array(keys, dtype=str),
            "clock": np.array(clock, dtype=np.int64),
            "lengths": np.array(lengths, dtype=np.int64),
            "times": np.frombuffer(times, dtype=np.int64).copy(),
            "values": np.frombuffer(vals, dtype=_VALUE_DTYPES[vals.typecode]).astype(np.int64),
        }

    def restore(self, data: dict[str, np.ndarray]) -> None:
        self.entities = {}
        nw = len(self.wins)
        at = 0
        times, vals = data["times"].tolist(), data["values"].tolist()
        for k, c, ln in zip(data["keys"].tolist(), data["clock"].tolist(), data["lengths"].tolist()):
            st = _Entity(nw, c, self.val_code)
            st.times.extend(times[at:at + ln])
            if st.vals is not None:
                st.vals.extend(vals[at:at + ln])
            at += ln
            upper = c - self.delay
            st.ready = bisect_right(st.times, upper)  # event windows: every entry (none is after the clock)
            for j, w in enumerate(self.wins):
                h = bisect_right(st.times, upper - w)
                st.heads[j] = h
                st.sums[j] = sum(st.vals[h:st.ready]) if st.vals is not None else 0
            self.entities[k] = st


class EventWindowState(_WindowState):
    """Streaming windows over an entity's events, ``(t - w, t]`` with the event itself inside."""

    kind = "events"

    def __init__(self, group: EventGroup):
        self.group = group
        self.wins = group.wins_us
        self.has_sum = group.field is not None
        self.val_code = "q" if self.has_sum else None
        self.entities: dict[str, _Entity] = {}

    @property
    def width(self) -> int:
        return len(self.wins) * (2 if self.has_sum else 1)

    def update_many(self, keys: list[str], times: list[int], vals: list[int] | None,
                    late: np.ndarray) -> np.ndarray:
        """Add each event in turn and read its windows; ``late[i]`` set if it was clamped."""
        ents = self.entities
        wins = self.wins
        nw = len(wins)
        rng = range(nw)
        has_sum = self.has_sum
        code = self.val_code
        flat: list[int] = []
        ap = flat.append
        for i in range(len(keys)):
            t = times[i]
            st = ents.get(keys[i])
            if st is None:
                st = ents[keys[i]] = _Entity(nw, t, code)
            elif t < st.clock:  # late event: it joins the windows at the entity's clock
                t = st.clock
                late[i] = True
            else:
                st.clock = t
            ts = st.times
            ts.append(t)
            n = len(ts)
            heads = st.heads
            if has_sum:
                v = vals[i]
                vs = st.vals
                vs.append(v)
                sums = st.sums
                for j in rng:
                    lo = t - wins[j]
                    h = heads[j]
                    s = sums[j] + v
                    while ts[h] <= lo:
                        s -= vs[h]
                        h += 1
                    heads[j] = h
                    sums[j] = s
                    ap(n - h)
                    ap(s)
            else:
                for j in rng:
                    lo = t - wins[j]
                    h = heads[j]
                    while ts[h] <= lo:
                        h += 1
                    heads[j] = h
                    ap(n - h)
            if heads[-1] > _COMPACT_MIN:
                st.compact()
        return np.array(flat, dtype=np.int64).reshape(len(keys), self.width)

class LabelWindowState(_WindowState):
    """Streaming delayed label windows: labels whose transaction time is in
    ``(t - delay - w, t - delay]`` and which have arrived by the time of the query."""

    kind = "labels"

    def __init__(self, group: LabelGroup):
        self.group = group
        self.wins = group.wins_us
        self.delay = group.delay_us
        self.val_code = "b"
        self.entities: dict[str, _Entity] = {}
        self.expired = 0

    @property
    def width(self) -> int:
        return 2 * len(self.wins)

    def _idle(self, st: _Entity, cut: int) -> bool:
        # labels can arrive for an entity whose clock stands still: their own times count too
        return st.clock <= cut and (not st.times or st.times[-1] <= cut)

    def query_many(self, keys: list[str], times: list[int], late: np.ndarray,
                   learn_before: dict[int, list[tuple[str, int, int]]] | None = None) -> np.ndarray:
        """Labelled count and fraud count per window for each transaction, in turn.

        ``learn_before[i]`` lists labels ``(key, transaction time, label)`` that arrived
        just before transaction ``i``: they are filed first.
        """
        ents = self.entities
        wins = self.wins
        nw = len(wins)
        rng = range(nw)
        d = self.delay
        flat: list[int] = []
        ap = flat.append
        for i in range(len(keys)):
            if learn_before is not None:
                arrived = learn_before.get(i)
                if arrived is not None:
                    for key, tx_time, y in arrived:
                        if not self.learn(key, tx_time, y):
                            self.expired += 1
            t = times[i]
            st = ents.get(keys[i])
            if st is None:
                st = ents[keys[i]] = _Entity(nw, t, "b")
            elif t < st.clock:
                t = st.clock
                late[i] = True
            else:
                st.clock = t
            upper = t - d
            ts = st.times
            vs = st.vals
            sums = st.sums
            heads = st.heads
            r = st.ready
            n = len(ts)
            while r < n and ts[r] <= upper:  # labels whose transaction time has come of age
                if vs[r]:
                    for j in rng:
                        sums[j] += 1
                r += 1
            st.ready = r
            for j in rng:
                lo = upper - wins[j]
                h = heads[j]
                s = sums[j]
                while h < r and ts[h] <= lo:
                    s -= vs[h]
                    h += 1
                heads[j] = h
                sums[j] = s
                ap(r - h)
                ap(s)
            if heads[-1] > _COMPACT_MIN:
                st.compact()
        return np.array(flat, dtype=np.int64).reshape(len(keys), self.width)

    def learn(self, key: str, tx_time: int, label: int) -> bool:
        """File one arrived label; False when it can never fall in a window again."""
        st = self.entities.get(key)
        if st is None:
            st = self.entities[key] = _Entity(len(self.wins), NO_CLOCK, "b")
        upper = st.clock - self.delay
        if tx_time <= upper - self.wins[-1]:
            return False
        ts, vs = st.times, st.vals
        if not ts or tx_time >= ts[-1]:
            ts.append(tx_time)
            vs.append(label)
        else:
            p = bisect_right(ts, tx_time)
            ts.insert(p, tx_time)
            vs.insert(p, label)
        if tx_time <= upper:  # already of age: goes straight into the windows it belongs to
            st.ready += 1
            for j, w in enumerate(self.wins):
                if tx_time > upper - w:
                    st.sums[j] += label
                else:
                    st.heads[j] += 1
        return True

# -- offline -----------------------------------------------------------------------------------


def _stable_argsort(codes: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative integer codes: radix sort when they fit 16 bits."""
    n = len(codes)
    top = int(codes.max()) if n else 0
    if top < 2**16:
        return np.argsort(codes.astype(np.uint16), kind="stable")
    if top < 2**62 // max(n, 1):
        return np.argsort(codes.astype(np.int64) * n + np.arange(n))  # unique keys: any sort is stable
    return np.argsort(codes, kind="stable")


class _Grouped:
    """Rows (already in time order) reordered by entity, with a sortable (entity, time) key.

    The key is ``entity * stride + time offset`` when that fits in 63 bits, else the
    time's rank among the distinct times; either way one ``searchsorted`` per window
    length finds every row's window edge, with sorted queries (the fast case).
    """

    def __init__(self, codes: np.ndarray, time_us: np.ndarray):
        n = len(time_us)
        self.time_us = time_us
        self.perm = _stable_argsort(codes)  # stable: time order kept inside an entity
        c = codes[self.perm].astype(np.int64)
        n_codes = int(c[-1]) + 1 if n else 0
        span = int(time_us[-1] - time_us[0]) if n else 0
        self.direct = n_codes * (span + 2) < DIRECT_KEY_LIMIT
        if self.direct:
            self.stride = span + 2
            self.t_off = time_us[self.perm] - time_us[0]
            self.base = c * self.stride
            self.comp = self.base + self.t_off
        else:
            new = np.empty(n, bool)
            new[:1] = True
            np.not_equal(time_us[1:], time_us[:-1], out=new[1:])
            self.uniq = time_us[new]
            rank = np.cumsum(new)  # 1-based rank of each row's time among the distinct times
            self.base = c * (len(self.uniq) + 1)
            self.comp = self.base + rank[self.perm]

    def end_at(self, shift_us: int) -> np.ndarray:
        """Per row (entity order), the position just past the entity's last row with
        time <= the row's own time - ``shift_us``."""
        if self.direct:
            off = np.maximum(self.t_off - shift_us, -1)
            return np.searchsorted(self.comp, self.base + off, side="right")
        q = np.searchsorted(self.uniq, self.time_us - shift_us, side="right")[self.perm]
        return np.searchsorted(self.comp, self.base + q, side="right")


def offline_event_stats(group: EventGroup, codes: np.ndarray, time_us: np.ndarray,
                        qvals: np.ndarray | None) -> np.ndarray:
    """Count (and quantised sum) per window for rows in time order.

    One statistic per output row (``(k, n)``): the streaming layout transposed.
    """
    n = len(time_us)
    g = _Grouped(codes, time_us)
    pos = np.arange(n)
    out_sorted = np.empty((len(group.wins_us) * (2 if qvals is not None else 1), n), np.int64)
    if qvals is not None:
        csum = np.zeros(n + 1, np.int64)
        np.cumsum(qvals[g.perm], out=csum[1:])
    col = 0
    for w in group.wins_us:
        start = g.end_at(w)
        np.subtract(pos + 1, start, out=out_sorted[col])
        col += 1
        if qvals is not None:
            np.subtract(csum[1:], csum[start], out=out_sorted[col])
            col += 1
    out = np.empty_like(out_sorted)
    out[:, g.perm] = out_sorted
    return out


def offline_label_stats(group: LabelGroup, codes: np.ndarray, time_us: np.ndarray,
                        label: np.ndarray) -> np.ndarray:
    """Labelled count and fraud count per delayed window, for rows in time order, one
    statistic per output row (``(k, n)``).

    A row whose label is NaN is a transaction whose label never arrived: it is not counted.
    """
    n = len(time_us)
    g = _Grouped(codes, time_us)
    lab = label[g.perm]
    known = np.zeros(n + 1, np.int64)
    np.cumsum(~np.isnan(lab), out=known[1:])
    fraud = np.zeros(n + 1, np.int64)
    np.cumsum(lab == 1, out=fraud[1:])
    hi = g.end_at(group.delay_us)
    known_hi, fraud_hi = known[hi], fraud[hi]
    out_sorted = np.empty((2 * len(group.wins_us), n), np.int64)
    for j, w in enumerate(group.wins_us):
        lo = g.end_at(group.delay_us + w)
        np.subtract(known_hi, known[lo], out=out_sorted[2 * j])
        np.subtract(fraud_hi, fraud[lo], out=out_sorted[2 * j + 1])
    out = np.empty_like(out_sorted)
    out[:, g.perm] = out_sorted
    return out
