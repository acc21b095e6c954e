"""Kafka I/O with confluent-kafka (librdkafka): the same source and sink as :mod:`.kafka`.

``kafka.client: confluent`` selects it. The semantics are those of the kafka-python
backend: the daemon's rebalance hooks run before a partition is given up (a checkpoint) and
before one is fetched (a seek to its checkpointed offset), offsets are committed only when
the daemon asks (after a durable checkpoint), inputs are aligned by record time, and an
input too large for the DLQ goes there trimmed.

What differs is where the work happens. librdkafka fetches and produces on its own C
threads and calls back only inside ``poll``/``consume``/``flush`` on the calling thread, so:
the rebalance hooks run on the loop's thread, inside :meth:`ConfluentSource.poll` (the
daemon's lock is reentrant), and a seek asked for by the assignment hook becomes the start
offset of that ``assign``. None of kafka-python's workarounds is needed: a poll returns as
soon as one record is there (no ``ALIGNED_POLL_MS``), a resumed partition is fetched again
(no ``_unstick_fetcher``), a rebalance finishes inside the poll whatever the hooks take (no
``_finish_rebalance``), and the producer partitions keys itself with Kafka's murmur2 (no
cached ``key_hash``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, NamedTuple

import confluent_kafka
import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from fraudstream.config import KafkaSettings
from fraudstream.consumers.align import MAX_SKEW_MS, RecordTimeAlignment
from fraudstream.consumers.exceptions import KafkaMemberFenced, SinkFailed
from fraudstream.consumers.kafka import leave_static_group, member_fenced
from fraudstream.consumers.sink import JsonSink
from fraudstream.consumers.options import librdkafka_options

log = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]

#: What librdkafka reports when a record is too large: for the producer (``produce`` raises
#: it), for the topic's ``max.message.bytes`` (the broker's MESSAGE_TOO_LARGE), or a batch the
#: broker refuses as a whole. The daemon then sends the trimmed DLQ record in its place.
TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})
#: How long ``send`` waits for room in a full producer queue (kafka-python's max_block_ms).
QUEUE_FULL_WAIT_S = 60.0


class Partition(NamedTuple):
    """A topic partition as the daemon's rebalance hooks see it (``tp.topic, tp.partition``)."""

    topic: str
    partition: int


class Record(NamedTuple):
    """One consumed record, with the attributes the daemon reads of kafka-python's."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list | None
    timestamp: int  # ms since the epoch, -1 when the record has none


class _ErrorLog:
    """librdkafka's error callback. A fatal error is logged as one; the others (a broker
    unreachable, a connection refused) librdkafka retries by itself, at DEBUG like
    kafka-python's own, since the daemon reports an outage once and what it costs shows
    as a postponed checkpoint or a failed commit."""

    def __init__(self, client: str):
        self.client = client

    def __call__(self, err: KafkaError) -> None:
        log.log(logging.ERROR if err.fatal() else logging.DEBUG, "%s: %s", self.client, err.str())


class _DebugLog:
    """librdkafka's own log lines, at DEBUG instead of on stderr: what matters of them also
    reaches the error callback."""

    def log(self, level: int, message: str, *args) -> None:
        log.debug("librdkafka: " + message, *args)


class ConfluentSource:
    """Polls the input topics in batches; one poll is one batch through the pipeline."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Iterable[str],
        on_revoked: Callable[[list], None] = lambda tps: None,
        on_assigned: Callable[[list], None] = lambda tps: None,
        max_skew_ms: int | None = MAX_SKEW_MS,
        group_instance_id: str | None = None,
    ):
        self.kafka = kafka
        self.group_instance_id = group_instance_id
        self.fenced = False  # another consumer took this static member's place
        self._fatal: KafkaError | None = None  # librdkafka's fatal error (a fenced static member)
        options = librdkafka_options(kafka, group_instance_id)
        self.max_records = options.poll["max_records"]
        self.poll_timeout_ms = options.poll["timeout_ms"]
        self.max_skew_ms = max_skew_ms
        self._alignment = RecordTimeAlignment(max_skew_ms or 0)
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned
        self._assigned: set[Partition] = set()
        self._paused: set[Partition] = set()
        self._seeks: dict[Partition, int] | None = None  # set while the assignment hook runs
        self._resolved: dict[Partition, int] = {}  # positions of idle partitions, once known
        self._brokers_up: bool | None = None  # from librdkafka's statistics; None until the first
        self._error_log = _ErrorLog("consumer")
        self.consumer = Consumer(options.consumer | {"error_cb": self._on_error, "stats_cb": self._stats,
                                                     "logger": _DebugLog()})
        self.consumer.subscribe(list(topics), on_assign=self._assign, on_revoke=self._revoke)

    def _on_error(self, err: KafkaError) -> None:
        self._error_log(err)
        if err.fatal():
            self._fatal = err

    def _fenced(self, err: KafkaError) -> KafkaMemberFenced:
        self.fenced = True
        return member_fenced(self.kafka, self.group_instance_id, err.name())

    # -- rebalance (inside poll, on the loop's thread) ------------------------------------

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Run the daemon's hook, then assign, starting each partition where it sought."""
        tps = [Partition(tp.topic, tp.partition) for tp in partitions]
        self._seeks = {}
        try:
            if tps:
                self._on_assigned(tps)
            seeks = self._seeks
        finally:
            self._seeks = None
        for tp in partitions:
            tp.offset = seeks.get(Partition(tp.topic, tp.partition), tp.offset)
        consumer.assign(partitions)
        self._assigned = set(tps)
        self._resolved.clear()
        # librdkafka keeps a partition's pause across an unassign and a new assign: state it
        # anew, holding back what the alignment had paused and fetching the rest
        self._paused &= self._assigned
        if self._assigned - self._paused:
            consumer.resume([TopicPartition(*tp) for tp in self._assigned - self._paused])
        if self._paused:
            consumer.pause([TopicPartition(*tp) for tp in self._paused])

    def _revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Run the daemon's hook (its checkpoint commits while the partitions are still ours);
        librdkafka unassigns them when this returns. Also called for partitions lost to a
        session timeout, whose commit then fails (and is logged by :meth:`commit`)."""
        tps = [Partition(tp.topic, tp.partition) for tp in partitions]
        if tps:
            self._on_revoked(tps)
        self._assigned -= set(tps)

    # -- reading --------------------------------------------------------------------------

    def poll(self, timeout_ms: int | None = None) -> list[Record]:
        """Records of one poll: whatever is fetched already, up to ``batch_size``, after
        waiting at most the poll timeout for the first one (each partition's records in
        offset order)."""
        if self._fatal is not None:  # the only fatal consumer error: fenced by a static member
            raise self._fenced(self._fatal)
        timeout = (self.poll_timeout_ms if timeout_ms is None else timeout_ms) / 1000
        # consume(n, timeout) would wait for all n records; wait for one, take the rest as they are
        first = self.consumer.poll(timeout)
        if first is None:
            messages = []
        else:
            messages = [first]
            if self.max_records > 1:
                messages += self.consumer.consume(self.max_records - 1, 0)
        records = []
        newest: dict[Partition, int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal() or error.code() == KafkaError.FENCED_INSTANCE_ID:
                    raise self._fenced(error)
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error on %s[%s]: %s", message.topic(), message.partition(), error.str())
                continue
            kind, stamp = message.timestamp()
            record = Record(message.topic(), message.partition(), message.offset(), message.key(), message.value(),
                            message.headers(), -1 if kind == TIMESTAMP_NOT_AVAILABLE else stamp)
            records.append(record)
            newest[Partition(record.topic, record.partition)] = record.timestamp
        if self.max_skew_ms is not None:
            self._align(newest)
        return records

    def _align(self, newest: dict[Partition, int]) -> None:
        """Pause partitions that ran ahead of the others in record time; resume them later
        (see :mod:`fraudstream.consumers.align`)."""
        now = time.monotonic()
        for tp, stamp in newest.items():
            self._alignment.delivered(tp, stamp, now)
        try:
            ahead = self._alignment.ahead(self._assigned, self._records_left, now)
            if ahead - self._paused:
                log.debug("pausing %s: ahead in record time", sorted(ahead - self._paused))
                self.consumer.pause([TopicPartition(*tp) for tp in ahead - self._paused])
            if self._paused - ahead:
                log.debug("resuming %s", sorted(self._paused - ahead))
                self.consumer.resume([TopicPartition(*tp) for tp in self._paused - ahead])
            self._paused = ahead
        except KafkaException as exc:  # assignment changed meanwhile: decide next poll
            log.debug("input alignment skipped: %s", exc)

    def _records_left(self, tp: Partition) -> bool:
        """Records left to read? From librdkafka's cached high watermark: no I/O."""
        _, high = self.consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
        position = self.consumer.position([TopicPartition(*tp)])[0].offset
        return high < 0 or position < 0 or position < high

    def resolved_position(self, topic: str, partition: int) -> int | None:
        """The next offset to fetch of an assigned partition; None until it is known.

        librdkafka knows a position only once a record was consumed; for a partition that
        delivered none yet, it is the group's committed offset, or else where
        ``auto_offset_reset`` starts (asked of the broker once per assignment).
        """
        tp = Partition(topic, partition)
        position = self.consumer.position([TopicPartition(topic, partition)])[0].offset
        if position >= 0:
            return position
        if tp not in self._resolved and tp in self._assigned:
            try:
                committed = self.consumer.committed([TopicPartition(topic, partition)], timeout=5)[0].offset
                if committed < 0:
                    low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
                    committed = low if self.kafka.auto_offset_reset == "earliest" else high
                self._resolved[tp] = committed
            except (KafkaException, TypeError) as exc:  # TypeError: no answer in time (None)
                log.debug("position of %s[%d] not known yet: %s", topic, partition, exc)
                return None
        return self._resolved.get(tp)

    def seek(self, topic: str, partition: int, offset: int) -> None:
        if self._seeks is not None:  # inside the assignment hook: where assign will start it
            self._seeks[Partition(topic, partition)] = offset
        else:
            self.consumer.seek(TopicPartition(topic, partition, offset))

    def seek_to_beginning(self, topic: str, partition: int) -> None:
        self.seek(topic, partition, OFFSET_BEGINNING)

    def commit(self, offsets: Offsets, timeout_ms: int | None = None) -> bool:
        """Commit ``offsets`` (next offset to read per partition), synchronously; False if
        Kafka refused the request or any partition of it, or did not answer within
        ``timeout_ms`` (None: wait for the answer). librdkafka's synchronous commit takes no
        timeout, so a bounded one waits for it on a thread of its own."""
        to_commit = [TopicPartition(topic, part, off) for (topic, part), off in offsets.items()
                     if Partition(topic, part) in self._assigned]
        if not to_commit:
            return True
        outcome: list = []

        def commit() -> None:
            try:
                outcome.append(self.consumer.commit(offsets=to_commit, asynchronous=False))
            except KafkaException as exc:
                outcome.append(exc)

        if timeout_ms is None:
            commit()
        else:
            worker = threading.Thread(target=commit, name="fraudstream-commit", daemon=True)
            worker.start()
            worker.join(timeout_ms / 1000)
            if not outcome:
                log.info("offset commit not answered in %d ms (the checkpoint keeps them; a later one commits)",
                         timeout_ms)
                return False
        if isinstance(outcome[0], KafkaException):
            error = outcome[0].args[0]
            if error.fatal() or error.code() == KafkaError.FENCED_INSTANCE_ID:
                raise self._fenced(error)
            # a transient failure (the broker away) is the daemon's one outage warning
            log.log(logging.INFO if error.retriable() else logging.WARNING,
                    "offset commit failed (the checkpoint keeps them; a later one commits): %s", error.str())
            return False
        refused = [f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in outcome[0] or () if tp.error is not None]
        if refused:
            log.warning("offset commit refused (the checkpoint keeps them): %s", "; ".join(refused))
        return not refused

    def lag(self, offsets: Offsets) -> dict[tuple[str, int], int]:
        """End offset minus the next offset to read, per assigned partition."""
        lags = {}
        for topic, partition in self._assigned:
            tp = TopicPartition(topic, partition)
            try:
                _, end = self.consumer.get_watermark_offsets(tp, cached=True)
                if end < 0:  # nothing fetched yet: ask the broker
                    _, end = self.consumer.get_watermark_offsets(tp, timeout=1)
            except (KafkaException, TypeError):  # TypeError: no answer in time (None)
                continue
            lags[(topic, partition)] = max(0, end - offsets.get((topic, partition), end))
        return lags

    def _stats(self, report: str) -> None:
        brokers = orjson.loads(report).get("brokers", {}).values()
        self._brokers_up = any(b.get("state") == "UP" and b.get("nodeid", -1) >= 0 for b in brokers)

    def connected(self) -> bool:
        """Whether the client held a live connection to a broker at its last statistics
        report (every ``STATISTICS_INTERVAL_MS``)."""
        return bool(self._brokers_up)

    def close(self) -> None:
        """Close the consumer; a static member also leaves the group, so that its partitions
        move to the other members now rather than after the session timeout."""
        self.consumer.close()
        if self.group_instance_id is not None and not self.fenced:  # fenced: the id is another's now
            leave_static_group(self.kafka, self.group_instance_id)


class ConfluentSink(JsonSink):
    """Produces scores and DLQ records; ``flush`` makes them durable before a commit.

    Delivery reports come back through librdkafka's callbacks, served by ``send`` (without
    waiting) and by ``flush``. A record whose delivery failed (its broker gone longer than
    ``message.timeout.ms``) is sent again by the next ``flush``, which raises ``SinkFailed``
    until it is delivered: the checkpoint covering it is postponed, its offsets are not
    committed. One refused for good (too large with no smaller form, not authorised) is
    counted, logged, and fails the next ``flush`` once.
    """

    def __init__(self, kafka: KafkaSettings, options: dict[str, Any] | None = None):
        self.kafka = kafka
        self.producer = Producer(librdkafka_options(kafka).producer | {"error_cb": _ErrorLog("producer"),
                                                                      "logger": _DebugLog()} | (options or {}))
        self.failed = 0  # records the broker refused for good (each one logged)
        self._smaller: deque[tuple[str, bytes | None, bytes, list | None]] = deque()  # to send in their place
        self._again: deque[tuple[str, bytes | None, bytes | None, list | None]] = deque()  # to send again
        self._refused: deque[str] = deque()  # why records were refused for good, since the last flush

    def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers=None, if_too_large: bytes | None = None
    ) -> None:
        """Queue one record, or ``if_too_large`` in its place (as ``KafkaSink.send``)."""
        report = self._delivered if if_too_large is None else partial(self._delivered_or_smaller, if_too_large)
        try:
            self._produce(topic, value, key, headers, report)
        except KafkaException as exc:
            if exc.args[0].code() not in TOO_LARGE:
                raise SinkFailed(f"{len(value)}-byte record for {topic} not queued: {exc}") from exc
            if if_too_large is None:
                raise SinkFailed(f"{len(value)}-byte record for {topic} is too large: {exc}") from exc
            log.warning("a %d-byte record for %s is too large for the producer; sending a smaller one", len(value), topic)
            self._produce(topic, if_too_large, key, headers, self._delivered)
        self.producer.poll(0)  # serve the delivery reports that came in meanwhile

    def _produce(self, topic: str, value, key, headers, on_delivery) -> None:
        """``produce``, waiting while the producer's queue is full (up to QUEUE_FULL_WAIT_S)."""
        deadline = None
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
                return
            except BufferError as exc:
                deadline = deadline or time.monotonic() + QUEUE_FULL_WAIT_S
                if time.monotonic() > deadline:
                    raise SinkFailed(f"the producer queue stayed full for {QUEUE_FULL_WAIT_S:.0f}s") from exc
                self.producer.poll(0.05)

    def _delivered(self, err: KafkaError | None, msg) -> None:
        """Delivery report; runs on whichever thread serves the producer's callbacks."""
        self._delivered_or_smaller(None, err, msg)

    def _delivered_or_smaller(self, smaller: bytes | None, err: KafkaError | None, msg) -> None:
        """Delivery report of a record with a smaller form to send if it is refused as too large."""
        if err is None:
            return
        topic, size = msg.topic(), len(msg.value() or b"")
        if err.code() in TOO_LARGE and smaller is not None:
            log.warning("%s refused a %d-byte record as too large; its smaller form follows", topic, size)
            self._smaller.append((topic, msg.key(), smaller, msg.headers()))
        elif err.retriable() or err.code() == KafkaError._MSG_TIMED_OUT:
            log.warning("a %d-byte record for %s was not delivered (%s); the next flush sends it again",
                        size, topic, err.str())
            self._again.append((topic, msg.key(), msg.value(), msg.headers()))
        else:
            self.failed += 1
            log.error("a %d-byte record for %s was not delivered: %s", size, topic, err.str())
            self._refused.append(f"{topic}: {err.str()}")

    def send_and_wait(
        self, topic: str, records: list[tuple[bytes | None, bytes]], headers=None, timeout_s: float = 30.0
    ) -> None:
        """Send ``(key, value)`` records and return once the broker acknowledged every one,
        serving delivery reports meanwhile (as ``KafkaSink.send_and_wait``)."""
        deadline = time.monotonic() + timeout_s
        lock = threading.Lock()
        waiting = [len(records)]
        errors: list[str] = []

        def report(err: KafkaError | None, _msg) -> None:
            with lock:
                waiting[0] -= 1
                if err is not None:
                    errors.append(err.str())

        try:
            for key, value in records:
                self._produce(topic, value, key, headers, report)
        except KafkaException as exc:
            raise SinkFailed(f"{len(records)} records for {topic} not queued: {exc}") from exc
        while waiting[0] and time.monotonic() < deadline:
            self.producer.poll(min(0.05, max(0.0, deadline - time.monotonic())))
        if waiting[0] or errors:
            raise SinkFailed(f"{len(records)} records for {topic} not acknowledged: "
                             f"{waiting[0]} unanswered, {errors[:3]}")

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until every queued record is acknowledged; ``SinkFailed`` if one is not, or
        if one was refused for good since the last flush."""
        deadline = time.monotonic() + timeout_s
        self._wait(deadline)
        while self._smaller or self._again:  # replacements of refused records, and retries
            if time.monotonic() > deadline:
                raise SinkFailed(f"{len(self._smaller) + len(self._again)} records left to send again at the flush deadline")
            queue = self._smaller or self._again
            topic, key, value, headers = queue.popleft()
            self._produce(topic, value, key, headers, self._delivered)
            self._wait(deadline)
        if self._refused:
            refused = [self._refused.popleft() for _ in range(len(self._refused))]
            raise SinkFailed(f"{len(refused)} records refused for good since the last flush, e.g. {refused[0]}")

    def _wait(self, deadline: float) -> None:
        left = self.producer.flush(max(0.0, deadline - time.monotonic()))
        if left:
            raise SinkFailed(f"{left} records not acknowledged by the flush deadline")

    def close(self) -> None:
        left = self.producer.flush(10)
        if left:
            log.warning("producer flush at close left %d records undelivered", left)
