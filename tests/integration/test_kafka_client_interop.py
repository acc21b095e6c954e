"""The two Kafka clients interoperate: a user can switch ``kafka.client`` with no loss and no
reprocessing.

Against the real broker: records one client's sink produced are read by the other client's
source byte for byte (key, value, headers), and land on the partition Kafka's own key hash
gives, whichever client produced them; offsets one client's source committed are where the
other's starts in the same group. Then the daemon itself: half a stream under kafka-python,
a clean stop, the rest under confluent from the same checkpoints and group (and the other
way round in ``make test-all``). Costs about 45 s in ``make test`` (four small source/sink
pairs, two short daemon runs), 35 s more in ``make test-all``.
"""

from __future__ import annotations

import time
import uuid

import pytest

from daemon_harness import (
    ALL_CLIENTS,
    Stream,
    assert_learned_exactly_once,
    covers,
    daemons,  # noqa: F401 - fixture
    end_offsets,
    make_topics,
    newest_checkpoint,
    produce_records,
    read_topic,
    scored_ids,
    write_config,
)
from fraudstream.config import KafkaSettings
from fraudstream.consumers.confluent import ConfluentSink, ConfluentSource
from fraudstream.consumers.kafka import KafkaSink, KafkaSource

pytestmark = pytest.mark.kafka

SOURCES = {"kafka-python": KafkaSource, "confluent": ConfluentSource}
SINKS = {"kafka-python": KafkaSink, "confluent": ConfluentSink}
PAIRS = [("kafka-python", "confluent"), ("confluent", "kafka-python")]
HEADER = ("fraudstream-answered", b"http")


def _settings(bootstrap: str, group: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=bootstrap, group_id=group, client_id=f"interop-{group}", batch_size=50)


def _read(source, count: int, timeout_s: float = 60.0) -> list:
    """Poll until ``count`` records came (not more than the polls bring)."""
    records: list = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count:
        assert time.monotonic() < deadline, f"read {len(records)} of {count} records in {timeout_s}s"
        records += source.poll(200)
    return records


@pytest.mark.parametrize(("producer", "consumer"), PAIRS)
def test_records_produced_by_one_client_are_read_by_the_other(kafka_bootstrap, unique_topic, producer, consumer):
    topic = unique_topic("interop", partitions=3)
    kafka = _settings(kafka_bootstrap, f"read-{uuid.uuid4().hex[:8]}")
    sent = [(f"customer-{i % 40}".encode(), f'{{"n":{i}}}'.encode(), [HEADER] if i % 3 == 0 else None)
            for i in range(300)]
    sink = SINKS[producer](kafka)
    try:
        for key, value, headers in sent:
            sink.send(topic, value, key, headers=headers)
        sink.flush(30)
    finally:
        sink.close()
    source = SOURCES[consumer](kafka, [topic], max_skew_ms=None)
    try:
        records = _read(source, len(sent))
    finally:
        source.close()
    got = sorted((r.key, r.value, list(r.headers or ())) for r in records)
    assert got == sorted((key, value, headers or []) for key, value, headers in sent)
    assert all(r.timestamp > 0 for r in records)

    # one key, one partition, and the same partition whichever client produced it
    partition_of = {}
    for r in read_topic(kafka_bootstrap, topic):
        assert partition_of.setdefault(r.key, r.partition) == r.partition
    other = unique_topic("interop-other", partitions=3)
    produce_records(kafka_bootstrap, [(other, key, value) for key, value, _ in sent])  # kafka-python
    assert {r.key: r.partition for r in read_topic(kafka_bootstrap, other)} == partition_of


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_offsets_committed_by_one_client_are_resumed_by_the_other(kafka_bootstrap, unique_topic, first, second):
    topic = unique_topic("interop", partitions=2)
    produce_records(kafka_bootstrap, [(topic, f"k{i % 7}".encode(), f"v{i}".encode()) for i in range(400)])
    kafka = _settings(kafka_bootstrap, f"resume-{uuid.uuid4().hex[:8]}")

    source = SOURCES[first](kafka, [topic], max_skew_ms=None)
    try:
        done = _read(source, 150)
        offsets: dict[tuple[str, int], int] = {}
        for r in done:
            offsets[(r.topic, r.partition)] = max(offsets.get((r.topic, r.partition), 0), r.offset + 1)
        assert source.commit(offsets)
        ends = end_offsets(kafka_bootstrap, [topic])
        assert source.lag(offsets) == {tp: end - offsets.get(tp, end) for tp, end in ends.items()}
        deadline = time.monotonic() + 15  # librdkafka reports broker states every 5 s
        while not source.connected():
            assert time.monotonic() < deadline, "the source never reported a live broker connection"
            source.poll(200)
    finally:
        source.close()

    source = SOURCES[second](kafka, [topic], max_skew_ms=None)
    try:
        rest = _read(source, 400 - len(done))
        time.sleep(1.0)
        rest += source.poll(500)  # nothing more may come: that would be a record read twice
    finally:
        source.close()
    seen = [(r.partition, r.offset) for r in done + rest]
    assert len(seen) == len(set(seen)) == 400, "a record was read twice or lost across the switch"


@pytest.mark.parametrize(("first", "second"), [
    PAIRS[0], pytest.param(*PAIRS[1], marks=() if ALL_CLIENTS else pytest.mark.skip(reason="only in make test-all")),
])
def test_a_daemon_switched_to_the_other_client_continues_where_it_stopped(
    kafka_bootstrap, unique_topic, daemons, tmp_path, first, second
):
    stream = Stream.simulated(customers=60, terminals=120, days=20, seed=41)
    topics = make_topics(unique_topic, 2, 2)
    topic_of = {"transaction": topics.transactions, "label": topics.labels}
    half = len(stream.events) // 2
    records = [(topic_of[kind], key, value) for kind, key, value, _ in stream.events]
    produce_records(kafka_bootstrap, records[:half])
    checkpoints = tmp_path / "checkpoints"
    config = write_config(tmp_path / "run.yaml", kafka_bootstrap, topics, f"switch-{uuid.uuid4().hex[:8]}", checkpoints)

    def run_until_covered(client: str) -> None:
        ends = end_offsets(kafka_bootstrap, topics.inputs)
        daemon = daemons.start(config, client, client=client)
        daemon.wait_until(lambda: (c := newest_checkpoint(checkpoints)) is not None and covers(c, ends),
                          timeout=240, what="a checkpoint at the end offsets of both inputs")
        assert daemon.terminate() == 0, daemon.tail()

    run_until_covered(first)
    produce_records(kafka_bootstrap, records[half:])
    run_until_covered(second)

    assert_learned_exactly_once(newest_checkpoint(checkpoints), stream.label_ids)
    scored = scored_ids(kafka_bootstrap, topics.scores)
    assert sorted(scored) == sorted(stream.tx_ids), "a transaction was scored twice or never across the switch"
    daemons.assert_none_running()
