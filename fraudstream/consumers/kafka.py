"""Kafka I/O with kafka-python: a batch source over the input topics and a sink for outputs.

Only bytes move here; decoding, features and scores live elsewhere. Offsets are never
committed automatically: the daemon commits the offsets stored in a checkpoint once that
checkpoint is durable.
"""

from __future__ import annotations

import json
import threading
import logging
from collections.abc import Callable, Iterable
from typing import Any

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.future import Future
from kafka.structs import OffsetAndMetadata

from fraudstream.config import KafkaSettings
from fraudstream.consumers.exceptions import SinkFailed

log = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection and security options shared by consumers, producers and admin clients."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "reconnect_backoff_max_ms": 2_000,
    }
    if kafka.sasl_mechanism:
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if getattr(kafka, key):
            options[key] = str(getattr(kafka, key))
    if kafka.ssl_password:
        options["ssl_password"] = kafka.ssl_password.get_secret_value()
    return options


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
                net.call_soon_threadsafe(lambda: done.failure(exc))
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
    ):
        self.kafka = kafka
        self.consumer = KafkaConsumer(
            group_id=kafka.group_id,
            enable_auto_commit=False,
            auto_offset_reset=kafka.auto_offset_reset,
            max_poll_records=kafka.batch_size,
            fetch_max_wait_ms=kafka.fetch_max_wait_ms,
            fetch_min_bytes=1,
            max_partition_fetch_bytes=max(1 << 20, kafka.max_event_bytes * 4),
            **client_options(kafka),
        )
        listener = _Rebalance(on_revoked, on_assigned)
        listener.net = self.consumer._net  # noqa: SLF001 - the loop that runs the listener
        self.consumer.subscribe(list(topics), listener=listener)

    def poll(self, timeout_ms: int | None = None) -> list:
        """Records of one poll, in partition order (each partition's records in offset order)."""
        timeout = self.kafka.poll_timeout_ms if timeout_ms is None else timeout_ms
        batches = self.consumer.poll(timeout_ms=timeout)
        return [record for records in batches.values() for record in records]

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self.consumer.seek(TopicPartition(topic, partition), offset)

    def commit(self, offsets: Offsets) -> bool:
        """Commit ``offsets`` (next offset to read per partition); False if Kafka refused."""
        assigned = self.consumer.assignment()
        to_commit = {
            TopicPartition(topic, part): OffsetAndMetadata(off, "", -1)
            for (topic, part), off in offsets.items()
            if TopicPartition(topic, part) in assigned
        }
        if not to_commit:
            return True
        try:
            self.consumer.commit(to_commit)
            return True
        except KafkaError as exc:
            log.warning("offset commit failed (the checkpoint keeps them): %s", exc)
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

    def close(self) -> None:
        self.consumer.close(autocommit=False)


class KafkaSink:
    """Produces scores and DLQ records; ``flush`` makes them durable before a commit."""

    def __init__(self, kafka: KafkaSettings):
        self.kafka = kafka
        self.producer = KafkaProducer(
            acks="all",
            linger_ms=1,
            retries=2**31 - 1,
            max_block_ms=60_000,
            max_request_size=max(1 << 20, kafka.max_event_bytes * 2 + 4096),
            **client_options(kafka),
        )

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers=None) -> None:
        self.producer.send(topic, value=value, key=key, headers=headers)

    def send_json(self, topic: str, event: dict, key: bytes | None = None) -> None:
        self.send(topic, json.dumps(event, separators=(",", ":")).encode(), key)

    def flush(self, timeout_s: float = 60.0) -> None:
        try:
            self.producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise SinkFailed(f"producer flush did not finish in {timeout_s}s: {exc}") from exc

    def close(self) -> None:
        try:
            self.producer.flush(timeout=10)
        except KafkaError as exc:
            log.warning("producer flush at close failed: %s", exc)
        self.producer.close(timeout=10)
