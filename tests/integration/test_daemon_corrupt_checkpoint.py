"""A corrupt newest checkpoint is skipped with a warning and the daemon resumes from the one before.

The daemon stops mid-stream with several checkpoints on disk; a file of the newest one is
truncated. On restart the daemon must say which checkpoint it skipped, resume from the
previous one, replay the inputs after it and still learn every label exactly once.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import replace

import pytest
from kafka.admin import KafkaAdminClient, NewPartitions

from daemon_harness import (
    Stream,
    assert_learned_exactly_once,
    checkpoint_offsets,
    covers,
    daemons,  # noqa: F401 - fixture
    end_offsets,
    make_topics,
    newest_checkpoint,
    produce_records,
    produce_stream,
    scored_ids,
    with_clients,
    write_config,
)
from fraudstream.daemon.checkpoint import CheckpointStore

pytestmark = pytest.mark.kafka


@with_clients("kafka-python")  # its client-side part (seek on assignment) is in every other proof
def test_a_truncated_checkpoint_is_skipped_and_the_previous_one_resumed(kafka_bootstrap, unique_topic, daemons, tmp_path):
    stream = Stream.simulated(customers=300, terminals=600, days=40, seed=21)
    topics = make_topics(unique_topic, 2, 2)
    # The last fifth of the stream is produced only after the first daemon stops, so however
    # fast it runs, the checkpoint its stop writes (the one truncated below) leaves work to resume.
    cut = len(stream.events) * 4 // 5
    produce_stream(kafka_bootstrap, topics, replace(stream, events=stream.events[:cut]))
    partitions = len(end_offsets(kafka_bootstrap, topics.inputs))
    checkpoints = tmp_path / "checkpoints"
    config = write_config(
        tmp_path / "run.yaml", kafka_bootstrap, topics, f"corrupt-{uuid.uuid4().hex[:8]}", checkpoints,
        checkpoints={"every_seconds": 0.5, "keep": 5},
    )
    store = CheckpointStore(checkpoints)

    def two_with_every_partition():
        # the checkpoint resumed after the corruption covers every input partition, so the
        # restart depends on checkpointed offsets only (see the report on committed offsets)
        valid = [i for i in store.list() if i.valid]
        return len(valid) >= 2 and all(len(checkpoint_offsets(i)) == partitions for i in valid[:2])

    first = daemons.start(config, "first")
    first.wait_until(two_with_every_partition, timeout=240, what="two checkpoints covering every partition")
    assert first.terminate() == 0, first.tail()
    produce_stream(kafka_bootstrap, topics, replace(stream, events=stream.events[cut:]))
    ends = end_offsets(kafka_bootstrap, topics.inputs)

    newest, previous = [i for i in store.list() if i.valid][:2]
    assert newest.meta["reason"] == "stop"
    victim = newest.path / "model.keras"
    os.truncate(victim, victim.stat().st_size // 2)

    second = daemons.start(config, "second")
    second.wait_for_log(rf"skipping corrupt checkpoint {re.escape(str(newest.path))}", timeout=180)
    second.wait_for_log(rf"resumed from checkpoint {previous.name}\b", timeout=180)

    def caught_up():
        info = newest_checkpoint(checkpoints)
        return info if info is not None and covers(info, ends) else None

    info = second.wait_until(caught_up, timeout=300, what="a checkpoint at the end offsets of both inputs")
    assert info.seq > newest.seq
    assert_learned_exactly_once(info, stream.label_ids)
    assert second.terminate() == 0, second.tail()
    assert_learned_exactly_once(newest_checkpoint(checkpoints), stream.label_ids)

    missing = set(stream.tx_ids) - set(scored_ids(kafka_bootstrap, topics.scores))
    assert not missing, f"{len(missing)} transactions never scored"
    daemons.assert_none_running()


@with_clients("kafka-python", "confluent")
def test_a_partition_the_resumed_checkpoint_never_read_starts_from_its_beginning(
    kafka_bootstrap, unique_topic, daemons, tmp_path
):
    """The inputs grow a partition after checkpoint A. Later checkpoints read it and commit its
    offsets; when they are all corrupt, the daemon resumes A, which holds nothing of the new
    partitions: it must read them from their beginning, not from the offsets committed after
    A, or it never learns what only the corrupt checkpoints had learned."""
    stream = Stream.simulated(customers=200, terminals=400, days=30, seed=22)
    topics = make_topics(unique_topic, 1, 1)
    topic_of = {"transaction": topics.transactions, "label": topics.labels}
    half = len(stream.events) // 2
    produce_records(kafka_bootstrap, ((topic_of[k], key, v) for k, key, v, _ in stream.events[:half]))
    checkpoints = tmp_path / "checkpoints"
    config = write_config(
        tmp_path / "run.yaml", kafka_bootstrap, topics, f"grown-{uuid.uuid4().hex[:8]}", checkpoints,
        checkpoints={"every_seconds": 2.0, "keep": 1000},
    )
    store = CheckpointStore(checkpoints)

    def run_until_covered(name: str, ends: dict) -> None:
        daemon = daemons.start(config, name)
        daemon.wait_until(lambda: (c := newest_checkpoint(checkpoints)) is not None and covers(c, ends),
                          timeout=300, what="a checkpoint at the end offsets of both inputs")
        assert daemon.terminate() == 0, daemon.tail()

    run_until_covered("before growing", end_offsets(kafka_bootstrap, topics.inputs))
    resumed = newest_checkpoint(checkpoints)

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_partitions({t: NewPartitions(total_count=2) for t in topics.inputs})
    finally:
        admin.close()
    produce_records(kafka_bootstrap, ((topic_of[k], key, v) for k, key, v, _ in stream.events[half:]))
    ends = end_offsets(kafka_bootstrap, topics.inputs)
    assert ends[(topics.transactions, 1)] > 0 and ends[(topics.labels, 1)] > 0, "nothing went to the new partitions"
    run_until_covered("after growing", ends)

    later = [i for i in store.list() if i.seq > resumed.seq]
    assert later and all((topics.transactions, 1) in checkpoint_offsets(i) for i in later[:1])
    for info in later:
        victim = info.path / "model.keras"
        os.truncate(victim, victim.stat().st_size // 2)

    third = daemons.start(config, "after the corruption")
    third.wait_for_log(rf"resumed from checkpoint {resumed.name}\b", timeout=180)

    def caught_up():
        info = newest_checkpoint(checkpoints)
        return info if info is not None and info.seq > later[0].seq and covers(info, ends) else None

    info = third.wait_until(caught_up, timeout=300, what="a checkpoint at the end offsets of both inputs")
    assert_learned_exactly_once(info, stream.label_ids)
    third.wait_for_log(rf"assigned {re.escape(topics.transactions)}\[1\]: not in the resumed checkpoint", timeout=5)
    assert third.terminate() == 0, third.tail()
    daemons.assert_none_running()
