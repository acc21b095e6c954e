"""The one place where ``kafka.*`` settings become Kafka client options, for each client.

Both backends read the same keys and must connect, fetch and produce alike; keeping both
mappings side by side (and the unit test that every key reaches each client) stops one
client from silently ignoring a key the other honours. Nothing here imports a client.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import SecretStr

from fraudstream.config import KafkaSettings

#: Keys that never reach a client as they are: ``topics`` is what the source subscribes to,
#: ``client`` picks the backend, ``rejoin_after_s`` is the daemon's own watch on its
#: assignment, and ``group_instance_id`` the daemon resolves (``auto``) and hands to the
#: source, which passes it here.
NOT_CLIENT_KEYS = frozenset({"topics", "client", "rejoin_after_s", "group_instance_id"})


class ClientOptions(NamedTuple):
    """A client's options: shared connection/security ones, the consumer's and producer's
    (each including the shared ones), and how the source polls."""

    common: dict[str, Any]
    consumer: dict[str, Any]
    producer: dict[str, Any]
    poll: dict[str, int]


def fetch_bytes(kafka: KafkaSettings) -> int:
    """Bytes fetched per partition; a single larger record still comes through whole."""
    return max(1 << 20, kafka.max_event_bytes * 4)


KAFKA_PYTHON, LIBRDKAFKA = 0, 1
#: Producer options, per client, for sending a stream in bulk (the simulator's): waiting a
#: little to fill large batches costs kafka-python a fifth less CPU per event. The daemon's
#: sink wants each poll's scores out at once instead. (librdkafka batches 1 MB by default.)
BULK_PRODUCER = ({"linger_ms": 20, "batch_size": 256 * 1024}, {"linger.ms": 20})
#: Security settings: their kafka-python and librdkafka option names (SASL ones only when
#: ``sasl_mechanism`` is set).
SECURITY_NAMES = {
    "sasl_mechanism": ("sasl_mechanism", "sasl.mechanism"),
    "sasl_username": ("sasl_plain_username", "sasl.username"),
    "sasl_password": ("sasl_plain_password", "sasl.password"),
    "ssl_cafile": ("ssl_cafile", "ssl.ca.location"),
    "ssl_certfile": ("ssl_certfile", "ssl.certificate.location"),
    "ssl_keyfile": ("ssl_keyfile", "ssl.key.location"),
    "ssl_password": ("ssl_password", "ssl.key.password"),
}


def _security(kafka: KafkaSettings, client: int) -> dict[str, str]:
    options = {}
    for key, names in SECURITY_NAMES.items():
        value = getattr(kafka, key)
        if value is None or (key.startswith("sasl_") and not kafka.sasl_mechanism):
            continue
        options[names[client]] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return options


def _poll(kafka: KafkaSettings) -> dict[str, int]:
    return {"max_records": kafka.batch_size, "timeout_ms": kafka.poll_timeout_ms}


def kafka_python_options(kafka: KafkaSettings, group_instance_id: str | None = None) -> ClientOptions:
    """Options for kafka-python's ``KafkaConsumer``, ``KafkaProducer`` and admin client; the
    consumer joins as static member ``group_instance_id`` unless it is None."""
    common: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "reconnect_backoff_max_ms": 2_000,
        # a consumer whose first join saw no partitions waits for the next metadata refresh
        "metadata_max_age_ms": 30_000,
    }
    common |= _security(kafka, KAFKA_PYTHON)
    consumer = common | {
        "group_id": kafka.group_id,
        "group_instance_id": group_instance_id,
        "enable_auto_commit": False,
        "auto_offset_reset": kafka.auto_offset_reset,
        "max_poll_records": kafka.batch_size,
        "fetch_max_wait_ms": kafka.fetch_max_wait_ms,
        "fetch_min_bytes": 1,
        "max_partition_fetch_bytes": fetch_bytes(kafka),
    }
    producer = common | {
        "acks": "all",
        "linger_ms": 1,
        "retries": 2**31 - 1,
        # kafka-python 3.0.12's idempotent producer turns any non-retriable batch error
        # (e.g. a record over the topic's max.message.bytes) into a fatal state that fails
        # every later send; scores are at-least-once anyway, so retries may duplicate them.
        "enable_idempotence": False,
        "max_block_ms": 60_000,
        # a DLQ record carries an oversize input in base64 (4/3 of its size, plus fields)
        "max_request_size": 2 * fetch_bytes(kafka),
    }
    return ClientOptions(common, consumer, producer, _poll(kafka))


#: How often librdkafka reports broker states (``ConfluentSource.connected`` reads them; the
#: daemon calls an outage after 2 s without a broker).
STATISTICS_INTERVAL_MS = 1_000


def librdkafka_options(kafka: KafkaSettings, group_instance_id: str | None = None) -> ClientOptions:
    """Options for confluent-kafka's ``Consumer`` and ``Producer`` (librdkafka names); the
    consumer joins as static member ``group_instance_id`` unless it is None."""
    common: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": kafka.client_id,
        "security.protocol": kafka.security_protocol,
        "reconnect.backoff.max.ms": 2_000,
        "topic.metadata.refresh.interval.ms": 30_000,
        # TCP_NODELAY, as kafka-python sets it: with Nagle on (librdkafka's default) a small
        # produce or fetch request can wait for the ACK of the previous one
        "socket.nagle.disable": True,
    }
    common |= _security(kafka, LIBRDKAFKA)
    consumer = common | {
        "group.id": kafka.group_id,
        **({"group.instance.id": group_instance_id} if group_instance_id else {}),
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": kafka.auto_offset_reset,
        "fetch.wait.max.ms": kafka.fetch_max_wait_ms,
        "fetch.min.bytes": 1,
        "max.partition.fetch.bytes": fetch_bytes(kafka),
        "statistics.interval.ms": STATISTICS_INTERVAL_MS,
    }
    producer = common | {
        "acks": "all",
        "linger.ms": 1,
        # the same trade as kafka-python's: a refused oversize record must not make the
        # producer fail every later send; scores are at-least-once anyway
        "enable.idempotence": False,
        "message.max.bytes": 2 * fetch_bytes(kafka),
        # Kafka's (and kafka-python's) key hash, so a customer lands on the same partition
        # whichever client produced it; librdkafka's own default is CRC32
        "partitioner": "murmur2_random",
    }
    return ClientOptions(common, consumer, producer, _poll(kafka))
