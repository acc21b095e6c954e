"""Event time may not run ahead of reality, nor fall far behind its own partition.

Event time drives everything that forgets: feature windows, the pending store's TTL, the
early labels. A timestamp the parser accepts (any instant in 1970..2262) can still be a lie:
one event dated 2199 once moved the clock so far that every waiting row expired and learning
stopped without an error. :class:`PartitionClocks` checks each parsed event's time against

- the wall clock: at most ``max_ahead_s`` ahead of it (history is always behind it, so a
  replay of 2018 data passes);
- its own input partition's watermark, the newest event time accepted on it: at most
  ``max_ahead_of_watermark_s`` ahead, plus the wall time since the watermark last moved
  (a partition idle for two days may resume two days later), and at most ``max_late_days``
  behind (an older event would be clamped into windows that have moved on, and would expire
  from the pending store as it arrived);
- ``earliest``, an absolute floor, off by default.

A failing event raises ``EventInvalid`` with the reason ``future_timestamp`` or
``stale_timestamp`` and goes to the DLQ. A partition's first event has no watermark: only
the wall clock and the floor apply. If that first event was itself wrong (too old), every
later one would look far ahead of it, so ``jump_after`` events in a row ahead of the
watermark bound are taken as the partition's clock having jumped: the last of them is
accepted and becomes the watermark (the ones before it are in the DLQ).

Watermarks are kept per ``(topic, partition)``; replay and the HTTP API have no topic and
use the event kind instead. The state is saved in checkpoints.

>>> from fraudstream.config import EventTimeSettings
>>> clocks = PartitionClocks(EventTimeSettings())
>>> day = 86_400 * 10**6
>>> clocks.check(("tx", 0), 100 * day, wall=1e9)
>>> try:
...     clocks.check(("tx", 0), 300 * day, wall=1e9)
... except EventInvalid as exc:
...     print(exc.reason)
future_timestamp
"""

from __future__ import annotations

import copy
import logging
from datetime import timezone
from typing import Any

from fraudstream.config import EventTimeSettings
from fraudstream.errors import EventInvalid
from fraudstream.features import iso_utc

log = logging.getLogger(__name__)

FUTURE = "future_timestamp"
STALE = "stale_timestamp"
REASONS = (FUTURE, STALE)
"""The reasons this module raises (DLQ reasons and metric labels)."""

SCHEMA_VERSION = 1
_DAY_US = 86_400 * 10**6

Key = tuple[str, int]


def _us(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1e6)


def _span(us: int) -> str:
    return f"{us / _DAY_US:.1f} days" if abs(us) >= _DAY_US else f"{us / 3.6e9:.1f} hours"


class PartitionClocks:
    """Per-partition watermarks and the time checks of :mod:`fraudstream.daemon.eventtime`."""

    def __init__(self, settings: EventTimeSettings, field: str = "timestamp"):
        self.field = field
        self.max_ahead_us = _us(settings.max_ahead_s)
        self.max_ahead_of_watermark_us = _us(settings.max_ahead_of_watermark_s)
        self.max_late_us = None if settings.max_late_days is None else round(settings.max_late_days * _DAY_US)
        if settings.earliest is None:
            self.earliest_us = None
        else:
            when = settings.earliest
            self.earliest_us = round((when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp() * 1e6)
        self.jump_after = settings.jump_after
        self.watermark: dict[Key, int] = {}
        self.moved_at: dict[Key, float] = {}  # wall clock (epoch seconds) when the watermark last moved
        self.ahead_run: dict[Key, int] = {}  # events in a row past the watermark bound
        self.jumps = 0

    def check(self, key: Key, time_us: int, wall: float) -> None:
        """Accept event time ``time_us`` on partition ``key`` (moving its watermark), or raise
        ``EventInvalid``. ``wall`` is the wall clock in epoch seconds (one reading per batch)."""
        if self.max_ahead_us is not None and time_us > wall * 1e6 + self.max_ahead_us:
            raise EventInvalid(FUTURE, f"{iso_utc(time_us)} is {_span(time_us - round(wall * 1e6))} ahead of the "
                               f"wall clock (at most {_span(self.max_ahead_us)})", self.field)
        if self.earliest_us is not None and time_us < self.earliest_us:
            raise EventInvalid(STALE, f"{iso_utc(time_us)} is before event_time.earliest {iso_utc(self.earliest_us)}",
                               self.field)
        mark = self.watermark.get(key)
        if mark is None:
            self._move(key, time_us, wall)
        elif time_us > mark:
            bound = self.max_ahead_of_watermark_us
            if bound is not None:
                bound += max(0, round((wall - self.moved_at.get(key, wall)) * 1e6))
                if time_us > mark + bound:
                    run = self.ahead_run.get(key, 0) + 1
                    if self.jump_after is None or run < self.jump_after:
                        self.ahead_run[key] = run
                        raise EventInvalid(FUTURE, f"{iso_utc(time_us)} is {_span(time_us - mark)} ahead of its "
                                           f"partition's watermark {iso_utc(mark)} (at most {_span(bound)})", self.field)
                    self.jumps += 1
                    log.warning("%s[%s]: %d events in a row far ahead of the watermark %s: taking %s as its "
                                "clock (the ones before it are in the DLQ)", key[0], key[1], run, iso_utc(mark),
                                iso_utc(time_us))
            self._move(key, time_us, wall)
        elif self.max_late_us is not None and time_us < mark - self.max_late_us:
            raise EventInvalid(STALE, f"{iso_utc(time_us)} is {_span(mark - time_us)} behind its partition's "
                               f"watermark {iso_utc(mark)} (at most {_span(self.max_late_us)})", self.field)
        else:
            self.ahead_run.pop(key, None)

    def _move(self, key: Key, time_us: int, wall: float) -> None:
        self.watermark[key] = time_us
        self.moved_at[key] = wall
        self.ahead_run.pop(key, None)

    def fork(self) -> PartitionClocks:
        """An independent copy: to check a request whole before any of it is taken."""
        return copy.deepcopy(self)

    # -- state ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        keys = list(self.watermark)
        return {
            "schema_version": SCHEMA_VERSION,
            "topics": [k[0] for k in keys],
            "partitions": [k[1] for k in keys],
            "watermarks": [self.watermark[k] for k in keys],
            "moved_at": [self.moved_at.get(k, 0.0) for k in keys],
            "ahead_run": [self.ahead_run.get(k, 0) for k in keys],
            "jumps": self.jumps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> PartitionClocks:
        keys = [(str(t), int(p)) for t, p in zip(state["topics"], state["partitions"])]
        self.watermark = {k: int(w) for k, w in zip(keys, state["watermarks"])}
        self.moved_at = {k: float(t) for k, t in zip(keys, state["moved_at"])}
        self.ahead_run = {k: int(n) for k, n in zip(keys, state["ahead_run"]) if n}
        self.jumps = int(state.get("jumps", 0))
        return self
