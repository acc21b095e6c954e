"""The one place that picks the Kafka client (``kafka.client``) for a source or a sink.

Everything above ``consumers/`` asks here and gets an object with the same interface
whichever client it is: kafka-python (the default) or confluent-kafka (librdkafka).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from fraudstream.config import KafkaSettings
from fraudstream.consumers.kafka import check_connection
from fraudstream.consumers.options import BULK_PRODUCER, KAFKA_PYTHON, LIBRDKAFKA
from fraudstream.errors import ConfigInvalid

__all__ = ["check_connection", "create_topics", "kafka_sink", "kafka_source"]

log = logging.getLogger(__name__)


def _confluent() -> Any:
    try:
        from fraudstream.consumers import confluent
    except ImportError as exc:
        raise ConfigInvalid("kafka settings", [(
            "kafka.client", f"'confluent' needs the confluent-kafka package: pip install 'fraudstream[confluent]' ({exc})",
        )]) from exc
    return confluent


def kafka_source(
    kafka: KafkaSettings,
    topics: Iterable[str],
    on_revoked: Callable[[list], None],
    on_assigned: Callable[[list], None],
    group_instance_id: str | None = None,
) -> Any:
    """A source over ``topics`` whose rebalance hooks get partitions with ``.topic``/``.partition``,
    in the group as static member ``group_instance_id`` (None: a dynamic member)."""
    if kafka.client == "confluent":
        confluent = _confluent()
        log.info("Kafka client: confluent (confluent-kafka %s, librdkafka %s)",
                 confluent.confluent_kafka.version()[0], confluent.confluent_kafka.libversion()[0])
        return confluent.ConfluentSource(kafka, topics, on_revoked, on_assigned, group_instance_id=group_instance_id)
    import kafka as kafka_python

    from fraudstream.consumers.kafka import KafkaSource

    log.info("Kafka client: kafka-python (%s)", kafka_python.__version__)
    return KafkaSource(kafka, topics, on_revoked, on_assigned, group_instance_id=group_instance_id)


def kafka_sink(kafka: KafkaSettings, options: dict[str, Any] | None = None, bulk: bool = False) -> Any:
    """A sink for scores and DLQ records, or with ``bulk`` for a whole stream (the
    simulator's); its ``flush`` raises ``SinkFailed``. ``options`` add to or replace the
    producer's, in the names of the client ``kafka.client`` picks."""
    client = LIBRDKAFKA if kafka.client == "confluent" else KAFKA_PYTHON
    options = (BULK_PRODUCER[client] if bulk else {}) | (options or {})
    if client == LIBRDKAFKA:
        return _confluent().ConfluentSink(kafka, options)
    from fraudstream.consumers.kafka import KafkaSink

    return KafkaSink(kafka, options)


def create_topics(bootstrap: str, partitions: dict[str, int], client_id: str) -> None:
    """Create topics (name -> partition count, replication 1) on a local broker (the demo's)."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    try:
        admin.create_topics([NewTopic(name, count, 1) for name, count in partitions.items()])
    finally:
        admin.close()
