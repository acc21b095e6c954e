"""Which input partitions ran ahead of the others in record time (both Kafka backends).

Kafka orders records within a partition only. Catching up on a backlog, a consumer can
drain the transactions topic weeks (of event time) ahead of the labels topic; the scored
rows then expire from the pending store before their labels are read, and those labels are
never learned. Keeping every partition within ``max_skew_ms`` of the slowest one that still
has records to read replays a backlog in about the order it was written (Kafka Streams
aligns its inputs by record time the same way). A partition with records to read that has
not delivered any yet holds the others back; one that delivers nothing for ``idle_s`` stops
holding them. The backend pauses what :meth:`RecordTimeAlignment.ahead` names and resumes
the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

#: A partition whose newest delivered record is this much newer (Kafka record time) than the
#: slowest partition that still has records to read waits until that one catches up. Small:
#: a backlog written by a fast producer packs days of event time into one second (at 1 s,
#: a test backlog's labels fell weeks behind its transactions and their rows expired).
MAX_SKEW_MS = 100
#: A partition that delivered nothing for this long stops holding the others back.
ALIGN_IDLE_S = 30.0


class RecordTimeAlignment:
    """Per partition: the record time of the newest delivered record, and when it came.

    >>> align = RecordTimeAlignment(max_skew_ms=100)
    >>> align.delivered("tx-0", 5_000, now=0.0)
    >>> align.delivered("labels-0", 1_000, now=0.0)
    >>> sorted(align.ahead(["tx-0", "labels-0"], lambda tp: True, now=1.0))
    ['tx-0']
    >>> sorted(align.ahead(["tx-0", "labels-0"], lambda tp: tp != "labels-0", now=1.0))
    []
    """

    def __init__(self, max_skew_ms: int = MAX_SKEW_MS, idle_s: float = ALIGN_IDLE_S):
        self.max_skew_ms = max_skew_ms
        self.idle_s = idle_s
        self._heads: dict[Hashable, tuple[int, float]] = {}
        self._assigned_at: dict[Hashable, float] = {}  # partitions yet to deliver a record

    def delivered(self, tp: Hashable, timestamp_ms: int, now: float) -> None:
        """The newest record a poll delivered of ``tp`` (no record time: not counted)."""
        if timestamp_ms >= 0:
            self._heads[tp] = (timestamp_ms, now)

    def ahead(self, assigned: Iterable[Hashable], records_left: Callable[[Hashable], bool], now: float) -> set:
        """The assigned partitions to hold paused; ``records_left(tp)`` says whether a
        partition still has records to read (unknown counts as yes)."""
        assigned = set(assigned)
        for tp in [tp for tp in self._heads if tp not in assigned]:
            del self._heads[tp]
        for tp in [tp for tp in self._assigned_at if tp not in assigned]:
            del self._assigned_at[tp]
        floor = None
        for tp in assigned:
            if tp in self._heads:
                stamp, seen = self._heads[tp]
            else:  # nothing delivered yet: it may be the furthest behind
                stamp, seen = float("-inf"), self._assigned_at.setdefault(tp, now)
            if now - seen >= self.idle_s or (floor is not None and stamp >= floor):
                continue
            if records_left(tp):
                floor = stamp
        if floor is None:
            return set()
        limit = floor + self.max_skew_ms
        return {tp for tp, (stamp, _) in self._heads.items() if stamp > limit}
