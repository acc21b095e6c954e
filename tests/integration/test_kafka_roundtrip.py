"""A real broker keeps every event exactly once and honours manual commits.

The daemon's exactly-once learning rests on two broker facts: records come
back once each, in partition order, and offsets committed by hand are the ones
the group resumes from. This test checks both on the local broker with
kafka-python, the client fraudstream uses, before any fraudstream code is
involved.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.serializer import DefaultSerializer, JsonSerializer

pytestmark = pytest.mark.kafka

N_EVENTS = 10_000
PARTITIONS = 3
CONSUME_DEADLINE_S = 180.0


def make_events(n: int, seed: int = 7) -> list[dict]:
    """Transactions in the project's event contract, keyed by customer like the real feed."""
    rng = random.Random(seed)
    start = datetime(2026, 4, 1, 8, 0, 0, tzinfo=timezone.utc)
    events = []
    for i in range(n):
        when = start + timedelta(seconds=i * 3)
        events.append({
            "transaction_id": f"tx-{i:06d}",
            "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "customer_id": f"c-{rng.randrange(500):04d}",
            "terminal_id": f"t-{rng.randrange(120):04d}",
            "amount": round(rng.lognormvariate(3.5, 1.0), 2),
        })
    return events


def produce(bootstrap: str, topic: str, events: list[dict]) -> dict[str, tuple[int, int]]:
    """Send every event; return transaction_id -> (partition, offset) as the broker acked it."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        key_serializer=DefaultSerializer(),
        value_serializer=JsonSerializer(),
    )
    try:
        futures = [
            (event["transaction_id"], producer.send(topic, key=event["customer_id"], value=event))
            for event in events
        ]
        producer.flush(timeout=60)
        placed = {}
        for tx_id, future in futures:
            meta = future.get(timeout=30)
            placed[tx_id] = (meta.partition, meta.offset)
        return placed
    finally:
        producer.close(timeout=10)


def test_roundtrip_with_manual_commits(kafka_bootstrap: str, unique_topic) -> None:
    topic = unique_topic("roundtrip", partitions=PARTITIONS)
    group_id = f"{topic}-group"
    events = make_events(N_EVENTS)
    placed = produce(kafka_bootstrap, topic, events)

    assert len(placed) == N_EVENTS
    assert len(set(placed.values())) == N_EVENTS, "two events acked at the same position"
    assert {partition for partition, _ in placed.values()} == set(range(PARTITIONS))

    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
        key_deserializer=DefaultSerializer(),
        value_deserializer=JsonSerializer(),
    )
    seen: dict[int, list[tuple[int, str, str]]] = defaultdict(list)
    commits = 0
    try:
        deadline = time.monotonic() + CONSUME_DEADLINE_S
        consumed = 0
        while consumed < N_EVENTS and time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    seen[tp.partition].append(
                        (record.offset, record.value["transaction_id"], record.key)
                    )
                consumed += len(records)
            if batch:
                consumer.commit()  # only after the whole batch has been processed
                commits += 1
        # Drain briefly: anything arriving now would be a duplicate delivery.
        extra = consumer.poll(timeout_ms=1000)
        for tp, records in extra.items():
            for record in records:
                seen[tp.partition].append(
                    (record.offset, record.value["transaction_id"], record.key)
                )
        end_offsets = consumer.end_offsets(partitions)
        committed = {tp: consumer.committed(tp) for tp in partitions}
    finally:
        consumer.close(autocommit=False)

    assert commits >= 1

    # None duplicated within a partition, and each partition arrives in offset order.
    for partition, rows in seen.items():
        offsets = [offset for offset, _, _ in rows]
        tx_ids = [tx_id for _, tx_id, _ in rows]
        assert len(set(offsets)) == len(offsets), f"partition {partition} repeated an offset"
        assert len(set(tx_ids)) == len(tx_ids), f"partition {partition} repeated an event"
        assert offsets == sorted(offsets), f"partition {partition} out of order"

    # None lost, and each came back exactly where the producer's ack said it was written.
    got = {tx_id: (partition, offset)
           for partition, rows in seen.items() for offset, tx_id, _ in rows}
    assert sum(len(rows) for rows in seen.values()) == N_EVENTS
    assert got == placed

    # The key decides the partition: all of a customer's events are in one partition.
    partitions_by_customer: dict[str, set[int]] = defaultdict(set)
    for partition, rows in seen.items():
        for _, _, customer in rows:
            partitions_by_customer[customer].add(partition)
    assert all(len(parts) == 1 for parts in partitions_by_customer.values())

    # Committed offsets are the end offsets, as the consumer sees them...
    assert committed == end_offsets
    assert sum(end_offsets.values()) == N_EVENTS
    # ...and as a fresh admin client reads them from the group coordinator.
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="roundtrip-check")
    try:
        stored = admin.list_group_offsets({group_id: partitions})[group_id]
    finally:
        admin.close()
    assert {tp: meta.offset for tp, meta in stored.items()} == end_offsets
