"""Scored transactions waiting for their label: transaction id -> what was scored.

Labels arrive days after the transaction (chargebacks), so the feature row the model scored
is kept until its label joins it, or until it is older than the TTL in event time, or until
the store is full (the oldest go first). Rows live in preallocated numpy arrays indexed by a
slot, so a million waiting rows cost ~100 bytes each plus the row itself, not a Python
object per number.

Event time is kept per input partition: a row expires when the newest event time of its
own partition has passed it by the TTL. One clock shared by every partition would let a
partition that runs ahead (or one bad timestamp) expire the rows of all the others, and a
partition that comes back far behind would have its rows expire as they arrive.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraudstream.features import Transaction

SCHEMA_VERSION = 2  # 2: rows carry their partition, each partition its own clock

#: The partition of rows from checkpoints written before rows recorded theirs: they follow
#: the newest clock of all partitions, as every row did then.
ANY_PARTITION = -2


@dataclass
class Joined:
    """Rows whose label arrived: the inputs of one learning and metric update."""

    ids: list[str]
    X: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    times: np.ndarray
    contexts: list[Any]
    shadow_scores: np.ndarray | None = None  # the challenger's scores (model lifecycle on)


def contexts_to_columns(contexts: list[Transaction]) -> dict[str, Any]:
    """Transactions as one array per field (``label`` -1 for none; ``extra`` a list or None)."""
    cols = list(zip(*contexts)) if contexts else [()] * len(Transaction._fields)
    extra = cols[6]
    return {
        "transaction_id": np.array(cols[0], dtype=str),
        "time_us": np.array(cols[1], dtype=np.int64),
        "customer": np.array(cols[2], dtype=str),
        "terminal": np.array(cols[3], dtype=str),
        "amount": np.array(cols[4], dtype=np.float64),
        "label": np.array([-1 if label is None else label for label in cols[5]], dtype=np.int8),
        "extra": None if all(e is None for e in extra) else list(extra),
    }


def contexts_from_columns(columns: dict[str, Any] | list) -> list[Transaction]:
    """Inverse of :func:`contexts_to_columns`; also reads the older list-per-row form."""
    if not isinstance(columns, dict):
        return [Transaction(*row) for row in columns]
    n = len(columns["transaction_id"])
    extra = columns["extra"] if columns["extra"] is not None else [None] * n
    return [
        Transaction(tx_id, time_us, customer, terminal, amount, None if label < 0 else label, ext)
        for tx_id, time_us, customer, terminal, amount, label, ext in zip(
            columns["transaction_id"].tolist(), columns["time_us"].tolist(), columns["customer"].tolist(),
            columns["terminal"].tolist(), columns["amount"].tolist(), columns["label"].tolist(), extra,
        )
    ]


class PendingStore:
    """Bounded store with event-time TTL; ``pop_many`` joins labels to scored rows."""

    def __init__(self, n_features: int, capacity: int = 2_000_000, ttl_seconds: float = 30 * 86_400):
        self.n_features = n_features
        self.capacity = capacity
        self.ttl_seconds = ttl_seconds
        self._reset()

    def _reset(self, size: int = 4096) -> None:
        size = min(size, self.capacity)
        self.X = np.zeros((size, self.n_features), np.float32)
        self.score = np.zeros(size, np.float32)
        self.shadow = np.zeros(size, np.float32)
        self.time = np.zeros(size, np.float64)
        self.partition = np.zeros(size, np.int64)
        self.context: list[Any] = [None] * size
        self.slot_of: dict[str, int] = {}
        self.free: list[int] = list(range(size - 1, -1, -1))
        # per partition: (time, id, slot) in insertion order, lazily cleaned; and its clock
        self.orders: dict[int, deque[tuple[float, str, int]]] = {}
        self.clocks: dict[int, float] = {}
        self.expired = 0
        self.evicted = 0
        self.duplicates = 0
        self.now = float("-inf")  # the newest event time of any partition

    def __len__(self) -> int:
        return len(self.slot_of)

    def __contains__(self, tx_id: str) -> bool:
        return tx_id in self.slot_of

    def _grow(self) -> None:
        old = len(self.score)
        new = min(self.capacity, old * 2)
        self.X = np.concatenate([self.X, np.zeros((new - old, self.n_features), np.float32)])
        self.score = np.concatenate([self.score, np.zeros(new - old, np.float32)])
        self.shadow = np.concatenate([self.shadow, np.zeros(new - old, np.float32)])
        self.time = np.concatenate([self.time, np.zeros(new - old, np.float64)])
        self.partition = np.concatenate([self.partition, np.zeros(new - old, np.int64)])
        self.context.extend([None] * (new - old))
        self.free.extend(range(new - 1, old - 1, -1))

    def _live_head(self, order: deque) -> tuple[float, str, int] | None:
        """The oldest entry of ``order`` still in the store (joined ones are dropped on the way)."""
        while order:
            head = order[0]
            if self.slot_of.get(head[1]) == head[2]:
                return head
            order.popleft()
        return None

    def _drop_oldest(self) -> None:
        """Make room: drop the oldest row in event time among every partition's oldest."""
        heads = [(head[0], p) for p, order in self.orders.items() if (head := self._live_head(order)) is not None]
        if heads:
            _, p = min(heads)
            _, tx_id, slot = self.orders[p].popleft()
            self._remove(tx_id, slot)

    def _remove(self, tx_id: str, slot: int) -> None:
        del self.slot_of[tx_id]
        self.context[slot] = None
        self.free.append(slot)

    def add_many(self, ids: list[str], X: np.ndarray, scores: np.ndarray, times: np.ndarray, contexts: list[Transaction],
                 shadow_scores: np.ndarray | None = None, partitions: list[int] | np.ndarray | None = None) -> None:
        """Keep scored rows; ``shadow_scores`` are a second model's scores of the same rows,
        ``partitions`` the input partition of each (default: one partition, -1)."""
        shadow = scores if shadow_scores is None else shadow_scores
        parts = [-1] * len(ids) if partitions is None else np.asarray(partitions, np.int64).tolist()
        orders, clocks = self.orders, self.clocks
        for i, tx_id in enumerate(ids):
            if tx_id in self.slot_of:
                self.duplicates += 1
                continue
            if not self.free:
                if len(self.score) < self.capacity:
                    self._grow()
                else:
                    self._drop_oldest()
                    self.evicted += 1
            slot = self.free.pop()
            self.slot_of[tx_id] = slot
            self.X[slot] = X[i]
            self.score[slot] = scores[i]
            self.shadow[slot] = shadow[i]
            self.time[slot] = times[i]
            p = parts[i]
            self.partition[slot] = p
            # a plain tuple of scalars, which the garbage collector stops tracking: a million
            # waiting named tuples would make every full collection walk them all
            self.context[slot] = tuple(contexts[i])
            t = float(times[i])
            order = orders.get(p)
            if order is None:
                order = orders[p] = deque()
            order.append((t, tx_id, slot))
            if t > clocks.get(p, float("-inf")):
                clocks[p] = t
            if t > self.now:
                self.now = t

    def context_of(self, tx_id: str) -> Any | None:
        slot = self.slot_of.get(tx_id)
        return None if slot is None else Transaction._make(self.context[slot])

    def pop_many(self, ids: list[str], labels: list[int]) -> tuple[Joined, int]:
        """Remove and return the rows these labels join; also how many found no row."""
        slots, found_ids, found_labels = [], [], []
        for tx_id, label in zip(ids, labels):
            slot = self.slot_of.pop(tx_id, None)
            if slot is None:
                continue
            slots.append(slot)
            found_ids.append(tx_id)
            found_labels.append(label)
        idx = np.asarray(slots, np.int64)
        joined = Joined(
            ids=found_ids,
            X=self.X[idx].copy(),
            scores=self.score[idx].copy(),
            labels=np.asarray(found_labels, np.float32),
            times=self.time[idx].copy(),
            contexts=[Transaction._make(self.context[s]) for s in slots],
            shadow_scores=self.shadow[idx].copy(),
        )
        for slot in slots:
            self.context[slot] = None
            self.free.append(slot)
        return joined, len(ids) - len(found_ids)

    def expire(self, now: float | None = None) -> int:
        """Drop rows older than the TTL at their own partition's clock (or at event time ``now``
        for every partition). Returns how many were dropped."""
        dropped = 0
        for p, order in self.orders.items():
            clock = now if now is not None else self.now if p == ANY_PARTITION else self.clocks.get(p, self.now)
            horizon = clock - self.ttl_seconds
            while order and order[0][0] < horizon:
                _, tx_id, slot = order.popleft()
                if self.slot_of.get(tx_id) == slot:
                    self._remove(tx_id, slot)
                    dropped += 1
        # joined rows leave stale entries behind; keep the queues from growing without bound
        if sum(map(len, self.orders.values())) > 2 * len(self.slot_of) + 4096:
            for p, order in self.orders.items():
                self.orders[p] = deque(e for e in order if self.slot_of.get(e[1]) == e[2])
        self.expired += dropped
        return dropped

    def snapshot(self) -> dict[str, Any]:
        """The state with contexts as a list of rows: cheap to take, see :meth:`to_columns`."""
        # slot_of iterates in insertion order, the order rows expire in
        ids = list(self.slot_of)
        idx = np.fromiter(self.slot_of.values(), np.int64, len(ids))
        return {
            "schema_version": SCHEMA_VERSION,
            "ids": ids,
            "X": self.X[idx],
            "score": self.score[idx],
            "shadow": self.shadow[idx],
            "time": self.time[idx],
            "partition": self.partition[idx],
            "context": [self.context[s] for s in idx.tolist()],
            "counters": {"expired": self.expired, "evicted": self.evicted, "duplicates": self.duplicates},
            "now": self.now,
            "clocks": {"partitions": list(self.clocks), "times": list(self.clocks.values())},
        }

    @staticmethod
    def to_columns(snapshot: dict[str, Any]) -> dict[str, Any]:
        """A :meth:`snapshot` as stored: ids and contexts as arrays, not a list per row, so
        a checkpoint of a million waiting rows stays fast."""
        return snapshot | {
            "ids": np.array(snapshot["ids"], dtype=str),
            "context": contexts_to_columns(snapshot["context"]),
        }

    def state_dict(self) -> dict[str, Any]:
        return self.to_columns(self.snapshot())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = len(state["ids"])
        self._reset(size=max(4096, 1 << max(0, n - 1).bit_length()))
        self.add_many(
            [str(i) for i in state["ids"]],
            np.asarray(state["X"], np.float32).reshape(n, self.n_features),
            np.asarray(state["score"]),
            np.asarray(state["time"]),
            contexts_from_columns(state["context"]),
            np.asarray(state["shadow"]) if "shadow" in state else None,  # older checkpoints: none
            np.asarray(state["partition"]) if "partition" in state else np.full(n, ANY_PARTITION),  # schema 1
        )
        counters = state["counters"]
        self.expired, self.evicted, self.duplicates = counters["expired"], counters["evicted"], counters["duplicates"]
        self.now = float(state["now"])
        clocks = state.get("clocks")
        # a partition's clock may be newer than every row still waiting from it
        self.clocks = {} if clocks is None else {int(p): float(t) for p, t in zip(clocks["partitions"], clocks["times"])}
        for p in self.orders:
            if p != ANY_PARTITION:
                self.clocks.setdefault(p, self.now)


class EarlyLabels:
    """Labels that arrived before their transaction was scored, waiting for it.

    Kafka gives no order across topics: catching up on a backlog, the consumer can read a
    label before the transaction it belongs to. Such a label waits here (bounded, oldest
    dropped first) and joins the transaction when it is scored. A label still waiting after
    ``ttl_seconds`` of event time, or pushed out by newer ones, is counted as unmatched:
    a duplicate label, or one whose transaction never came.
    """

    def __init__(self, capacity: int = 1_000_000, ttl_seconds: float = 30 * 86_400):
        self.capacity = capacity
        self.ttl_seconds = ttl_seconds
        self.waiting: dict[str, tuple[int, float]] = {}  # insertion-ordered
        self.dropped = 0

    def __len__(self) -> int:
        return len(self.waiting)

    def add(self, tx_id: str, label: int, now: float) -> None:
        self.waiting.pop(tx_id, None)
        self.waiting[tx_id] = (label, now if now > float("-inf") else float("inf"))
        if len(self.waiting) > self.capacity:
            del self.waiting[next(iter(self.waiting))]
            self.dropped += 1

    def pop(self, tx_id: str) -> int | None:
        found = self.waiting.pop(tx_id, None) if self.waiting else None
        return None if found is None else found[0]

    def expire(self, now: float) -> int:
        horizon = now - self.ttl_seconds
        stale = 0
        while self.waiting:  # arrival order is event-time order: stop at the first fresh one
            key = next(iter(self.waiting))
            if not self.waiting[key][1] < horizon:  # NaN/-inf arrival times never count as stale
                break
            del self.waiting[key]
            stale += 1
        self.dropped += stale
        return stale

    def state_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "ids": list(self.waiting),
            "labels": [v[0] for v in self.waiting.values()],
            "times": [v[1] for v in self.waiting.values()],
            "dropped": self.dropped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.waiting = {k: (int(y), float(t)) for k, y, t in zip(state["ids"], state["labels"], state["times"])}
        self.dropped = int(state["dropped"])
