"""A rebalance takes partitions away from the daemon and gives them back without harm.

A second, plain consumer joins the daemon's group (never committing), holds some partitions
for a few seconds and leaves. The daemon must checkpoint when its partitions are revoked,
seek back to its checkpointed offsets for the partitions it gets back, and at the end have
learned every label exactly once.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from kafka import KafkaConsumer

from daemon_harness import (
    Stream,
    assert_learned_exactly_once,
    checkpoint_offsets,
    covers,
    daemons,  # noqa: F401 - fixture
    end_offsets,
    make_topics,
    newest_checkpoint,
    produce_stream,
    scored_ids,
    with_clients,
    write_config,
)
from fraudstream.daemon.checkpoint import CheckpointStore

pytestmark = pytest.mark.kafka

PARTITIONS = 4
HOLD_S = 4.0

CHECKPOINT_LINE = re.compile(r"checkpoint (ckpt-\d+) \((\w+)\)")
SEEK_LINE = re.compile(r"assigned (\S+)\[(\d+)\]: seek to checkpointed offset (\d+)")


@with_clients("kafka-python", "confluent")
def test_partitions_revoked_and_given_back_resume_from_the_checkpoint(kafka_bootstrap, unique_topic, daemons, tmp_path):
    stream = Stream.simulated(customers=420, terminals=840, days=50, seed=31)
    topics = make_topics(unique_topic, tx_partitions=PARTITIONS, label_partitions=PARTITIONS)
    produce_stream(kafka_bootstrap, topics, stream)
    ends = end_offsets(kafka_bootstrap, topics.inputs)
    checkpoints = tmp_path / "checkpoints"
    group = f"rebalance-{uuid.uuid4().hex[:8]}"
    config = write_config(
        tmp_path / "run.yaml", kafka_bootstrap, topics, group, checkpoints,
        checkpoints={"keep": 10_000},  # keep every checkpoint: the revoked ones are compared below
        kafka={"batch_size": 200},
        # While the second consumer holds half the partitions, the daemon runs ahead on the
        # other half; the whole stream was produced in seconds, so a few seconds there are
        # weeks of event time. Rows of the partitions that come back must not expire for it.
        training={"pending_ttl_days": 3_650},
    )
    store = CheckpointStore(checkpoints)
    daemon = daemons.start(config)

    def consuming_every_partition():
        info = newest_checkpoint(checkpoints)
        return info if info is not None and len(checkpoint_offsets(info)) == len(ends) else None

    before = daemon.wait_until(consuming_every_partition, timeout=240, what="a checkpoint covering every partition")
    assert not covers(before, ends), "the daemon finished before the rebalance; nothing was tested"

    other = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        client_id="fraudstream-test-intruder",
        enable_auto_commit=False,  # must not move the group's offsets
        auto_offset_reset="earliest",
    )
    try:
        other.subscribe(topics.inputs)
        deadline = time.monotonic() + 90
        while not other.assignment():
            assert time.monotonic() < deadline, "the second consumer never got partitions"
            assert daemon.alive(), daemon.tail()
            other.poll(timeout_ms=500)
        taken = {(tp.topic, tp.partition) for tp in other.assignment()}
        held_until = time.monotonic() + HOLD_S
        while time.monotonic() < held_until:
            other.poll(timeout_ms=500)
    finally:
        other.close(autocommit=False)
    assert taken, "the second consumer took no partition"
    # a fast client may have read those partitions to their end already: wait for them to
    # come back rather than for the end offsets, which the checkpoints may hold before that
    for topic, partition in sorted(taken):
        daemon.wait_for_log(rf"assigned {re.escape(topic)}\[{partition}\]: seek to checkpointed offset", timeout=120)

    def caught_up():
        info = newest_checkpoint(checkpoints)
        return info if info is not None and covers(info, ends) else None

    final = daemon.wait_until(caught_up, timeout=300, what="a checkpoint at the end offsets of both inputs")
    assert_learned_exactly_once(final, stream.label_ids)
    assert daemon.terminate() == 0, daemon.tail()
    assert_learned_exactly_once(newest_checkpoint(checkpoints), stream.label_ids)

    # Revocation was checkpointed.
    revoked = [i for i in store.list() if i.valid and i.meta["reason"] == "revoked" and i.seq > before.seq]
    assert revoked, "no checkpoint with reason 'revoked' after the second consumer joined"

    # Every partition the second consumer held was given back to the daemon, which sought
    # to the offset its last checkpoint before that assignment holds for it.
    log = daemon.log()
    manifests = {i.name: i for i in store.list() if i.valid}
    for topic, partition in sorted(taken):
        seeks = [m for m in SEEK_LINE.finditer(log) if (m.group(1), int(m.group(2))) == (topic, partition)]
        assert seeks, f"the daemon never sought {topic}[{partition}] to a checkpointed offset"
        last_seek = seeks[-1]
        checkpoints_before = [m for m in CHECKPOINT_LINE.finditer(log, 0, last_seek.start())]
        assert checkpoints_before and checkpoints_before[-1].group(2) == "revoked", (
            f"{topic}[{partition}] was reassigned without a 'revoked' checkpoint first"
        )
        info = manifests[checkpoints_before[-1].group(1)]
        assert int(last_seek.group(3)) == checkpoint_offsets(info)[(topic, partition)], (
            f"{topic}[{partition}]: sought to {last_seek.group(3)}, {info.name} holds "
            f"{checkpoint_offsets(info)[(topic, partition)]}"
        )

    missing = set(stream.tx_ids) - set(scored_ids(kafka_bootstrap, topics.scores))
    assert not missing, f"{len(missing)} transactions never scored"
    daemons.assert_none_running()
