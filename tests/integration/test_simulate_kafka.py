"""`produce` puts a simulation on a real broker: every event once, keyed, in order, paced."""

from __future__ import annotations

import json
import time
from collections import defaultdict

import pytest
from kafka import KafkaConsumer

from fraudstream.config import KafkaSettings, Topics
from fraudstream.config.simulate import SimulatorSettings
from fraudstream.simulate import merged_events, produce, simulate

pytestmark = pytest.mark.kafka

PARTITIONS = 3
CONSUME_DEADLINE_S = 120.0


def consume_all(bootstrap: str, topics: list[str], expected: int) -> list:
    consumer = KafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=2_000,
    )
    records = []
    deadline = time.monotonic() + CONSUME_DEADLINE_S
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


@pytest.fixture
def topics(unique_topic):
    return Topics(
        transactions=unique_topic("sim-tx", partitions=PARTITIONS),
        labels=unique_topic("sim-labels", partitions=PARTITIONS),
    )


def test_simulation_reaches_both_topics_keyed_and_in_order(kafka_bootstrap, topics):
    sim = simulate(SimulatorSettings(customers=80, terminals=160, label_delay="1d"), days=3, seed=5)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topics=topics)
    report = produce(sim, kafka, progress=False)
    n_tx, n_labels = len(sim.transactions), len(sim.labels)
    assert (report.transactions, report.labels) == (n_tx, n_labels)

    records = consume_all(kafka_bootstrap, [topics.transactions, topics.labels], n_tx + n_labels)
    by_topic = defaultdict(list)
    for record in records:
        by_topic[record.topic].append(record)
    assert len(by_topic[topics.transactions]) == n_tx
    assert len(by_topic[topics.labels]) == n_labels

    expected = {(kind, event["transaction_id"]): event for kind, event in merged_events(sim)}
    customer_of = dict(zip(sim.transactions["transaction_id"], sim.transactions["customer_id"]))
    partition_of_tx = {}
    for record in by_topic[topics.transactions]:
        event = json.loads(record.value)
        assert event == expected[("transaction", event["transaction_id"])]
        assert record.key == event["customer_id"].encode()
        partition_of_tx[event["transaction_id"]] = record.partition
    assert len(partition_of_tx) == n_tx  # each transaction exactly once

    for record in by_topic[topics.labels]:
        event = json.loads(record.value)
        assert event == expected[("label", event["transaction_id"])]
        assert record.key == customer_of[event["transaction_id"]].encode()
        # Same key, same partition count: a label lands where its transaction did.
        assert record.partition == partition_of_tx[event["transaction_id"]]

    # Within a partition, a customer's transactions keep event-time order.
    for partition in range(PARTITIONS):
        stamps = [
            json.loads(r.value)["timestamp"]
            for r in sorted(by_topic[topics.transactions], key=lambda r: r.offset)
            if r.partition == partition
        ]
        assert stamps == sorted(stamps)


def test_rate_paces_the_producer(kafka_bootstrap, topics):
    sim = simulate(SimulatorSettings(customers=40, terminals=80), days=2, seed=6)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topics=topics)
    n_tx = len(sim.transactions)
    rate = n_tx / 1.0  # about one second of wall clock
    report = produce(sim, kafka, rate=rate, progress=False, label_events=False)
    assert report.transactions == n_tx and report.labels == 0
    assert report.seconds >= 0.9 * (n_tx - 1) / rate
    records = consume_all(kafka_bootstrap, [topics.transactions], n_tx)
    assert len(records) == n_tx
