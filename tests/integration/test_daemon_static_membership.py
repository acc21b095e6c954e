"""Static group membership against the real broker: a duplicate id is fenced, a stop leaves.

Two daemons given the same ``kafka.group_instance_id`` (each with its own checkpoint
directory): the broker gives the second one the first one's place, and the first stops at
its next offset commit with an error that names the key, without removing the second from
the group. A clean stop of a static member then removes it from the group at once, so its
partitions move to the others now, not after the 45 s session timeout. Costs about 50 s on a
busy 2-core machine, its private broker's start included (two daemon starts, a small stream).
"""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaAdminClient

from daemon_harness import (
    Stream,
    daemons,  # noqa: F401 - fixture
    make_topics,
    produce_stream,
    with_clients,
    write_config,
)

pytestmark = pytest.mark.kafka

INSTANCE = "scorer-1"


def members(bootstrap: str, group: str) -> list[str | None]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fraudstream-tests")
    try:
        return [m["group_instance_id"] for m in admin.describe_groups([group])[group]["members"]]
    finally:
        admin.close()


@with_clients("kafka-python")  # confluent in make test-all; exactly-once restarts it as a static member
def test_a_duplicate_instance_id_is_fenced_and_a_stop_leaves_the_group(kafka_bootstrap, unique_topic, daemons, tmp_path):
    stream = Stream.simulated(customers=60, terminals=120, days=20, seed=5)
    half = len(stream.events) // 2
    first_half, second_half = Stream(stream.events[:half], [], []), Stream(stream.events[half:], [], [])
    topics = make_topics(unique_topic, tx_partitions=2, label_partitions=2)
    group = f"static-{uuid.uuid4().hex[:8]}"
    produce_stream(kafka_bootstrap, topics, first_half)

    def config(name: str):
        return write_config(tmp_path / f"{name}.yaml", kafka_bootstrap, topics, group, tmp_path / name,
                            kafka={"group_instance_id": INSTANCE})

    first = daemons.start(config("first"), "first")
    first.wait_for_log(r"first scores of this run", timeout=180)
    second = daemons.start(config("second"), "second")
    second.wait_for_log(r"assigned \S+\[\d+\]", timeout=180)
    # the first one still fetches; what it reads now ends in a checkpoint whose commit is refused
    produce_stream(kafka_bootstrap, topics, second_half)
    first.wait_until(lambda: not first.alive(), timeout=120, what="the fenced daemon to stop")
    assert first.proc.returncode != 0
    assert "kafka.group_instance_id" in first.tail(5) and repr(INSTANCE) in first.tail(5), first.tail()
    assert "left group" not in first.log(), "the fenced daemon removed the id that is the second one's now"
    assert members(kafka_bootstrap, group) == [INSTANCE]
    assert second.alive(), second.tail()

    assert second.terminate() == 0, second.tail()
    assert members(kafka_bootstrap, group) == [], "the stopped static member is still in the group"
    daemons.assert_none_running()
