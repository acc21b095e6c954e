"""Kafka I/O with kafka-python: a batch source over the input topics and a sink for outputs.

Only bytes move here; decoding, features and scores live elsewhere. Offsets are never
committed automatically: the daemon commits the offsets stored in a checkpoint once that
checkpoint is durable.
"""

from __future__ import annotations

import functools
import logging
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from kafka import AsyncConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import MemberToRemove
from kafka.errors import (
    FencedInstanceIdError,
    KafkaError,
    MessageSizeTooLargeError,
    NoError,
    UnknownMemberIdError,
)
from kafka.future import Future
from kafka.partitioner.default import murmur2
from kafka.structs import OffsetAndMetadata

from fraudstream.config import KafkaSettings
from fraudstream.consumers.align import MAX_SKEW_MS, RecordTimeAlignment
from fraudstream.consumers.exceptions import KafkaConnectFailed, KafkaMemberFenced, SinkFailed
from fraudstream.consumers.options import kafka_python_options
from fraudstream.consumers.sink import JsonSink

log = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]

#: Poll timeout while the alignment holds partitions paused. With nothing else to fetch,
#: kafka-python 3.0.12 sleeps through the whole timeout (up to retry_backoff_ms, 100 ms) before
#: it looks at resumed partitions again; catching up on a backlog, that sleep took more than
#: half of the loop's time.
ALIGNED_POLL_MS = 5
#: How long a poll may take to finish a pending group rebalance, rebalance hooks included.
REBALANCE_WAIT_MS = 60_000


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection and security options shared by consumers, producers and admin clients."""
    return kafka_python_options(kafka).common


#: How long the start-up check waits for each step (TCP, TLS, a Kafka answer, bootstrap).
CONNECT_TIMEOUT_S = 10.0


def check_connection(kafka: KafkaSettings, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within seconds, naming the cause, when the broker cannot serve this client.

    kafka-python retries a failed TLS handshake, a dropped connection or a refused password
    until its bootstrap times out and then reports only "Unable to bootstrap", so each
    bootstrap server is probed by hand first, in order, until one passes: TCP connect, the
    TLS handshake with the client's own SSL context, one ApiVersions request (a TLS listener
    drops a PLAINTEXT client without answering), then the SASL handshake and authentication,
    or without SASL one Metadata request (a SASL listener drops a client that does not
    authenticate). Only when none passes does the check fail, naming each server's cause. A
    bounded kafka-python bootstrap then checks metadata. Messages carry the server, the
    protocol and the cause, never a password.
    """
    log.info("checking the connection to Kafka at %s (%s)", kafka.bootstrap_servers, kafka.security_protocol)
    servers = [server.strip() for server in kafka.bootstrap_servers.split(",") if server.strip()]
    causes = []
    for server in servers:
        try:
            _probe(kafka, server, timeout_s)
            break
        except KafkaConnectFailed as exc:
            causes.append(str(exc))
    else:
        if len(causes) == 1:
            raise KafkaConnectFailed(causes[0])
        raise KafkaConnectFailed(f"none of the {len(causes)} Kafka bootstrap servers works: " + "; ".join(causes))
    where = f"{kafka.bootstrap_servers} ({kafka.security_protocol})"
    try:
        consumer = KafkaConsumer(
            **client_options(kafka) | {"client_id": f"{kafka.client_id}-check"},
            bootstrap_timeout_ms=int(timeout_s * 1000),
        )
    except KafkaError as exc:
        raise KafkaConnectFailed(f"Kafka at {where} did not complete bootstrap in {timeout_s:.0f} s: {exc}") from None
    consumer.close()


#: Kafka error codes the probe names.
_UNSUPPORTED_SASL_MECHANISM, _ILLEGAL_SASL_STATE = 33, 34
_NOT_KAFKA = "{where} did not answer as a Kafka listener of that protocol; check kafka.security_protocol"


def _probe(kafka: KafkaSettings, server: str, timeout_s: float) -> None:
    """One bootstrap server, by hand, as far as this client's protocol goes."""
    from kafka.net.transport import KafkaSSLTransport

    host, _, port_text = server.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    where = f"{server} ({kafka.security_protocol})"
    try:
        sock = socket.create_connection((host, int(port_text)), timeout=timeout_s)
    except (OSError, ValueError) as exc:
        raise KafkaConnectFailed(f"cannot connect to Kafka at {where}: {exc}") from None
    try:
        if kafka.security_protocol in ("SSL", "SASL_SSL"):
            config = {key: value for key, value in client_options(kafka).items() if key.startswith("ssl_")}
            context = KafkaSSLTransport._build_ssl_context(KafkaSSLTransport.DEFAULT_CONFIG | config)
            try:
                sock = context.wrap_socket(sock, server_hostname=host)
            except ssl.SSLCertVerificationError as exc:
                raise KafkaConnectFailed(
                    f"TLS to Kafka at {where}: certificate verify failed ({exc.verify_message}); "
                    "check kafka.ssl_cafile"
                ) from None
            except (ssl.SSLError, OSError) as exc:
                raise KafkaConnectFailed(
                    f"TLS handshake with Kafka at {where} failed ({exc}); is that port a TLS listener? "
                    "check kafka.security_protocol"
                ) from None
        _ask(sock, 18, 0, b"", where, "without answering",
             "check kafka.security_protocol (a TLS listener drops a PLAINTEXT client)")
        if kafka.security_protocol.startswith("SASL"):
            _authenticate(sock, kafka, host, where)
        else:
            # Metadata v4 for no topic: a SASL listener closes a client that skips authentication.
            _ask(sock, 3, 4, struct.pack(">i?", 0, False), where, "when asked for metadata",
                 "check kafka.security_protocol (a SASL listener drops a client that does not authenticate)")
    except struct.error:  # an answer shorter than its own fields say
        raise KafkaConnectFailed(_NOT_KAFKA.format(where=where)) from None
    finally:
        sock.close()


def _authenticate(sock: socket.socket, kafka: KafkaSettings, host: str, where: str) -> None:
    """SaslHandshake v1, then SaslAuthenticate v0 rounds driven by kafka-python's own mechanism."""
    from kafka.net.sasl import get_sasl_mechanism

    mechanism_name = kafka.sasl_mechanism or ""
    answer = _Answer(_ask(sock, 17, 1, _string(mechanism_name), where, "at the SASL handshake",
                          "check kafka.security_protocol"))
    error = answer.take(">h")
    offered = [answer.string() for _ in range(answer.take(">i"))]
    if error == _ILLEGAL_SASL_STATE:  # what a PLAINTEXT or SSL listener answers
        raise KafkaConnectFailed(
            f"Kafka at {where} is not a SASL listener; check kafka.security_protocol"
        )
    if error == _UNSUPPORTED_SASL_MECHANISM:
        raise KafkaConnectFailed(
            f"Kafka at {where} does not offer SASL {mechanism_name} (it offers {', '.join(offered)}); "
            "check kafka.sasl_mechanism"
        )
    if error:
        raise KafkaConnectFailed(f"Kafka at {where} refused the SASL handshake (error code {error})")
    mechanism = get_sasl_mechanism(mechanism_name)(host=host, **client_options(kafka))
    failed = f"SASL authentication failed at {where} for user {kafka.sasl_username!r} ({mechanism_name})"
    try:
        while not mechanism.is_done():
            token = mechanism.auth_bytes()
            answer = _Answer(_ask(sock, 36, 0, struct.pack(">i", len(token)) + token, where,
                                  "during SASL authentication", "check kafka.sasl_password"))
            error, message = answer.take(">h"), answer.string()
            if error:
                raise KafkaConnectFailed(f"{failed}: {message or f'error code {error}'}")
            mechanism.receive(answer.bytes())
        if not mechanism.is_authenticated():
            raise KafkaConnectFailed(f"{failed}: the broker's last answer did not complete the login")
    except ValueError as exc:  # the mechanism refused the broker's answer (e.g. a wrong server signature)
        raise KafkaConnectFailed(f"{failed}: {exc}") from None


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def _ask(sock: socket.socket, api_key: int, version: int, body: bytes, where: str, step: str, hint: str) -> bytes:
    """Send one request (header v1) and return its answer after the correlation id.

    A connection dropped without an answer names ``step`` and the ``hint`` for the user.
    """
    # One request at a time, so the api key serves as its correlation id.
    message = struct.pack(">hhi", api_key, version, api_key) + _string("fraudstream-check") + body
    try:
        sock.sendall(struct.pack(">i", len(message)) + message)
        size, correlation = struct.unpack(">ii", _recv(sock, 8))
        if correlation != api_key or not 4 <= size < 1 << 20:
            raise KafkaConnectFailed(_NOT_KAFKA.format(where=where))
        return _recv(sock, size - 4)
    except (OSError, EOFError) as exc:
        raise KafkaConnectFailed(
            f"Kafka at {where} dropped the connection {step} ({exc or 'closed'}); {hint}"
        ) from None


class _Answer:
    """Reads the big-endian fields of a non-flexible Kafka response."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def _raw(self, size: int) -> bytes:
        raw = self.data[self.pos:self.pos + max(size, 0)]
        self.pos += max(size, 0)
        return raw

    def string(self) -> str | None:
        size = self.take(">h")
        return None if size < 0 else self._raw(size).decode(errors="replace")

    def bytes(self) -> bytes:
        return self._raw(self.take(">i"))


def _recv(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("closed by the broker")
        data += chunk
    return data


class _Rebalance(AsyncConsumerRebalanceListener):
    """Runs the daemon's blocking hooks in a worker thread so heartbeats keep flowing.

    kafka-python calls rebalance listeners on its own I/O loop (not asyncio); a listener
    may await a ``kafka.future.Future``, which the worker resolves through the loop's
    ``call_soon_threadsafe`` once the hook returns.
    """

    def __init__(self, on_revoked: Callable[[list], None], on_assigned: Callable[[list], None]):
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned
        self.net = None  # the consumer's I/O loop, set once the consumer exists

    async def _in_worker(self, hook: Callable[[list], None], partitions: list) -> None:
        done = Future()
        net = self.net

        def work() -> None:
            try:
                hook(partitions)
            except BaseException as exc:  # handed to the I/O loop, which logs it
                net.call_soon_threadsafe(lambda exc=exc: done.failure(exc))  # bound now: `exc` is unset after the block
            else:
                net.call_soon_threadsafe(lambda: done.success(None))

        threading.Thread(target=work, name="fraudstream-rebalance", daemon=True).start()
        await done

    async def on_partitions_revoked(self, revoked):
        if revoked:
            await self._in_worker(self._on_revoked, list(revoked))

    async def on_partitions_assigned(self, assigned):
        if assigned:
            await self._in_worker(self._on_assigned, list(assigned))


class KafkaSource:
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
        self.max_skew_ms = max_skew_ms
        self._alignment = RecordTimeAlignment(max_skew_ms or 0)
        options = kafka_python_options(kafka, group_instance_id)
        self.poll_timeout_ms = options.poll["timeout_ms"]  # max_records is the consumer's max_poll_records
        self.consumer = KafkaConsumer(**options.consumer)
        listener = _Rebalance(on_revoked, on_assigned)
        listener.net = self.consumer._net  # noqa: SLF001 - the loop that runs the listener
        topics = list(topics)
        # Know every topic's partitions before joining the group. Otherwise the first join
        # can assign nothing ("No partition metadata"), and kafka-python relies on a later
        # metadata update to rejoin; a stale in-flight metadata response can swallow that
        # update, leaving the daemon without partitions until metadata_max_age_ms (5 min).
        for topic in topics:
            if not self.consumer.partitions_for_topic(topic):
                log.warning("topic %s has no partitions (does it exist?)", topic)
        self.consumer.subscribe(topics, listener=listener)

    def poll(self, timeout_ms: int | None = None) -> list:
        """Records of one poll, in partition order (each partition's records in offset order)."""
        timeout = self.poll_timeout_ms if timeout_ms is None else timeout_ms
        self._finish_rebalance()
        if self.max_skew_ms is not None:
            self._unstick_fetcher()
            if self.consumer.paused():
                timeout = min(timeout, ALIGNED_POLL_MS)
        try:
            batches = self.consumer.poll(timeout_ms=timeout)
        except FencedInstanceIdError as exc:
            raise self._fenced(exc) from None
        if self.max_skew_ms is not None:
            self._align(batches)
        return [record for records in batches.values() for record in records]

    def _finish_rebalance(self) -> None:
        """Run a pending rebalance to its end, hooks included, before the (short) poll.

        kafka-python 3.0.12 bounds a rebalance by the poll's timeout. When the revocation
        hook (a checkpoint) outlasts it, the JoinGroup/SyncGroup that follows completes
        between two polls and its assignment is never applied: every partition stays
        pending revocation and consumption stops for good. So a pending rebalance gets a
        poll of its own with a long timeout, and one left in that state is started again.
        """
        coordinator = getattr(self.consumer, "_coordinator", None)
        states = getattr(getattr(self.consumer, "_subscription", None), "assignment", {})
        if coordinator is None:
            return
        if not coordinator.need_rejoin() and any(getattr(s, "_pending_revocation", False) for s in list(states.values())):
            log.warning("the last rebalance was left unfinished (partitions pending revocation); rejoining")
            coordinator.request_rejoin()
        if coordinator.need_rejoin():
            coordinator.poll(timeout_ms=REBALANCE_WAIT_MS)

    def _unstick_fetcher(self) -> None:
        """Let records parked by a pause come back after ``resume`` (kafka-python 3.0.12).

        The fetcher restores a resumed partition's parked records only when its in-line
        slot is ``None``, but a drained slot keeps an empty ``PartitionRecords``; the parked
        partition is then excluded from every later fetch and its consumption stops for good.
        An empty slot holds nothing, so clearing it loses nothing.
        """
        fetcher = getattr(self.consumer, "_fetcher", None)
        slot = getattr(fetcher, "_next_partition_records", None)
        if slot is not None and not slot:
            fetcher._next_partition_records = None  # noqa: SLF001

    def _align(self, batches: dict) -> None:
        """Pause partitions that ran ahead of the others in record time; resume them later
        (see :mod:`fraudstream.consumers.align`)."""
        now = time.monotonic()
        for tp, records in batches.items():
            if records:
                self._alignment.delivered(tp, records[-1].timestamp, now)
        try:
            ahead = self._alignment.ahead(self.consumer.assignment(), self._records_left, now)
            paused = self.consumer.paused()
            if ahead - paused:
                log.debug("pausing %s: ahead in record time", sorted(ahead - paused))
                self.consumer.pause(*(ahead - paused))
            if paused - ahead:
                log.debug("resuming %s", sorted(paused - ahead))
                self.consumer.resume(*(paused - ahead))
        except (KafkaError, KeyError, TypeError) as exc:  # assignment changed meanwhile: decide next poll
            log.debug("input alignment skipped: %s", exc)

    def _records_left(self, tp: TopicPartition) -> bool:
        """Records left to read? (the position also steps over transaction markers)"""
        highwater = self.consumer.highwater(tp)
        position = self._position(tp) if highwater is not None else None
        return highwater is None or position is None or position < highwater

    def resolved_position(self, topic: str, partition: int) -> int | None:
        """The next offset to fetch of an assigned partition; None until it is known."""
        return self._position(TopicPartition(topic, partition))

    def _position(self, tp: TopicPartition) -> int | None:
        """The next offset to fetch, read from the subscription state without any I/O.

        ``KafkaConsumer.position()`` first refreshes committed offsets and validates positions
        through the I/O loop; called while a rebalance listener is awaited there, it can leave
        every partition pending revocation and stop consumption (kafka-python 3.0.12).
        """
        state = self.consumer._subscription.assignment.get(tp)  # noqa: SLF001
        return None if state is None or state.position is None else state.position.offset

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self.consumer.seek(TopicPartition(topic, partition), offset)

    def seek_to_beginning(self, topic: str, partition: int) -> None:
        self.consumer.seek_to_beginning(TopicPartition(topic, partition))

    def commit(self, offsets: Offsets, timeout_ms: int | None = None) -> bool:
        """Commit ``offsets`` (next offset to read per partition); False if Kafka refused or
        did not answer within ``timeout_ms`` (None: the client's request timeout, 30 s)."""
        assigned = self.consumer.assignment()
        to_commit = {
            TopicPartition(topic, part): OffsetAndMetadata(off, "", -1)
            for (topic, part), off in offsets.items()
            if TopicPartition(topic, part) in assigned
        }
        if not to_commit:
            return True
        try:
            self.consumer.commit(to_commit, timeout_ms=timeout_ms)
            return True
        except FencedInstanceIdError as exc:
            raise self._fenced(exc) from None
        except KafkaError as exc:
            # a transient failure (the broker away, a timeout) is the daemon's one outage warning,
            # not one more line per checkpoint
            log.log(logging.INFO if exc.retriable else logging.WARNING,
                    "offset commit failed (the checkpoint keeps them; a later one commits): %s", exc)
            return False

    def lag(self, offsets: Offsets) -> dict[tuple[str, int], int]:
        """End offset minus the next offset to read, per assigned partition."""
        assigned = list(self.consumer.assignment())
        if not assigned:
            return {}
        try:
            ends = self.consumer.end_offsets(assigned, timeout_ms=1_000)
        except KafkaError:
            return {}
        return {
            (tp.topic, tp.partition): max(0, end - offsets.get((tp.topic, tp.partition), end))
            for tp, end in ends.items()
        }

    def connected(self) -> bool:
        """Whether the client holds a live connection to at least one known broker."""
        client = self.consumer._client  # noqa: SLF001 - kafka-python exposes no public check
        try:
            return any(client.connected(broker.node_id) for broker in client.cluster.brokers())
        except KafkaError:
            return False

    def _fenced(self, exc: KafkaError) -> KafkaMemberFenced:
        self.fenced = True
        return member_fenced(self.kafka, self.group_instance_id, type(exc).__name__)

    def close(self) -> None:
        """Close the consumer; a static member also leaves the group, so that its partitions
        move to the other members now rather than after the session timeout."""
        self.consumer.close(autocommit=False, timeout_ms=10_000)
        if self.group_instance_id is not None and not self.fenced:  # fenced: the id is another's now
            leave_static_group(self.kafka, self.group_instance_id)


def member_fenced(kafka: KafkaSettings, group_instance_id: str | None, cause: str) -> KafkaMemberFenced:
    """The error a source raises once another consumer took its static member id."""
    return KafkaMemberFenced(
        f"another consumer joined group {kafka.group_id!r} with this daemon's static instance id "
        f"{group_instance_id!r} and took its partitions ({cause}); give each daemon its own "
        "kafka.group_instance_id (or leave it at auto)"
    )


def leave_static_group(kafka: KafkaSettings, group_instance_id: str) -> None:
    """Remove a static member from its group (LeaveGroup v3+ by instance id).

    kafka-python and librdkafka, like the Java client (KIP-345), send no LeaveGroup when a
    static member closes: a restart is then meant to take its partitions back without a
    rebalance. That suits a crash, but after a clean stop the partitions would idle until the
    session timeout (45 s). A failure only costs that wait, so it is logged and the stop goes on.
    """
    admin = None
    # kafka-python's admin client logs its whole configuration, password included, at DEBUG
    admin_log = logging.getLogger("kafka.admin.client")
    level = admin_log.level
    admin_log.setLevel(max(level, logging.INFO))
    try:
        admin = KafkaAdminClient(
            **client_options(kafka) | {"client_id": f"{kafka.client_id}-leave"},
            request_timeout_ms=10_000,
            bootstrap_timeout_ms=10_000,
        )
        admin_log.setLevel(level)
        member = MemberToRemove(group_instance_id=group_instance_id, reason="fraudstream stopped")
        answers = admin.remove_group_members(kafka.group_id, [member]).values()
        # not a member (it never joined, or another took the id): nothing to hand over
        refused = [error.__name__ for error in answers if error not in (NoError, UnknownMemberIdError)]
    except KafkaError as exc:
        refused = str(exc) or type(exc).__name__
    finally:
        admin_log.setLevel(level)
        if admin is not None:
            admin.close()
    if refused:
        log.warning("could not leave group %s as %s (its partitions move after the session timeout): %s",
                    kafka.group_id, group_instance_id, refused)
    else:
        log.info("left group %s as static member %s", kafka.group_id, group_instance_id)

@functools.lru_cache(maxsize=1 << 16)
def key_hash(key: bytes) -> int:
    """The default partitioner's hash of a key (Kafka's murmur2, positive), cached: in
    kafka-python it is pure Python and costs more than the rest of choosing a partition."""
    return murmur2(key) & 0x7FFFFFFF


class KafkaSink(JsonSink):
    """Produces scores and DLQ records; ``flush`` makes them durable before a commit."""

    def __init__(self, kafka: KafkaSettings, options: dict[str, Any] | None = None):
        self.kafka = kafka
        try:
            self.producer = KafkaProducer(**(kafka_python_options(kafka).producer | (options or {})))
        except KafkaError as exc:
            raise SinkFailed(f"cannot start a producer for {kafka.bootstrap_servers}: {exc}") from exc
        self.failed = 0  # records the broker refused for good (each one logged)
        self._smaller: deque[tuple[str, bytes | None, bytes]] = deque()  # to send in their place

    def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers=None, if_too_large: bytes | None = None
    ) -> None:
        """Queue one record. If it is too large for the producer or for the topic, send
        ``if_too_large`` instead (the topic's limit is only known once the broker refuses,
        so that one goes out with the next :meth:`flush`); without it, a record too large
        for the producer raises ``SinkFailed``.
        """
        try:
            future = self.producer.send(topic, value=value, key=key, headers=headers, partition=self._partition(topic, key))
        except MessageSizeTooLargeError as exc:
            if if_too_large is None:
                raise SinkFailed(f"{len(value)}-byte record for {topic} is too large: {exc}") from exc
            log.warning("a %d-byte record for %s is too large for the producer; sending a smaller one", len(value), topic)
            value, if_too_large = if_too_large, None
            future = self.producer.send(topic, value=value, key=key, headers=headers)
        future.add_errback(self._failed, topic, key, len(value), if_too_large)

    def send_and_wait(
        self, topic: str, records: list[tuple[bytes | None, bytes]], headers=None, timeout_s: float = 30.0
    ) -> None:
        """Send ``(key, value)`` records and return once the broker acknowledged every one
        (``acks=all``); ``SinkFailed`` if any was refused or not acknowledged in time.

        For inputs taken from a caller that is answered only once they are durable (the
        HTTP API of a Kafka daemon): unlike :meth:`send`, nothing is left for a later flush.
        """
        deadline = time.monotonic() + timeout_s
        try:
            futures = [
                self.producer.send(topic, value=value, key=key, headers=headers, partition=self._partition(topic, key))
                for key, value in records
            ]
            for future in futures:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
        except (KafkaError, AssertionError) as exc:  # kafka-python asserts on a closed producer
            raise SinkFailed(f"{len(records)} records for {topic} not acknowledged: {exc}") from exc

    def _partition(self, topic: str, key: bytes | None) -> int | None:
        """The partition Kafka's default partitioner gives ``key`` (None: let the producer
        choose, for a key-less record or a topic whose metadata is not known yet)."""
        if key is None:
            return None
        partitions = self.producer._metadata.partitions_for_topic(topic)  # noqa: SLF001 - a set lookup
        if not partitions:
            return None
        return key_hash(key) % len(partitions)  # partitions are numbered 0..n-1

    def _failed(self, topic: str, key: bytes | None, size: int, smaller: bytes | None, exc: BaseException) -> None:
        # Runs on the producer's I/O thread once the error is final (retries are unbounded).
        if smaller is not None and isinstance(exc, MessageSizeTooLargeError):
            log.warning("%s refused a %d-byte record as too large; its smaller form follows", topic, size)
            self._smaller.append((topic, key, smaller))
            return
        self.failed += 1
        log.error("a %d-byte record for %s was not delivered: %s", size, topic, exc)

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until every queued record is acknowledged (or failed for good)."""
        try:
            self.producer.flush(timeout=timeout_s)
            while self._smaller:  # replacements of records the broker refused as too large
                topic, key, value = self._smaller.popleft()
                self.send(topic, value, key)
                self.producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise SinkFailed(f"producer flush did not finish in {timeout_s}s: {exc}") from exc

    def close(self) -> None:
        try:
            self.producer.flush(timeout=10)
        except KafkaError as exc:
            log.warning("producer flush at close failed: %s", exc)
        self.producer.close(timeout=10)
