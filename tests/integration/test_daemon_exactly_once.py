"""Exactly-once learning across crashes: SIGKILL the daemon at random points, restart it.

Every label of the stream must end up learned once (or waiting in the trainer's buffer),
never lost and never learned twice, however many times the daemon died between a batch and
its checkpoint; every transaction must be scored at least once.
"""

from __future__ import annotations

import time
import uuid

import pytest

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
    seeded,
    with_clients,
    write_config,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

KILLS = 5
SEED = 20260401


@with_clients("confluent")
def test_every_label_is_learned_exactly_once_across_sigkills(kafka_bootstrap, unique_topic, daemons, tmp_path):
    rng = seeded(SEED)
    stream = Stream.simulated(customers=520, terminals=1_000, days=50, seed=11)
    assert len(stream.tx_ids) >= 50_000
    assert len(stream.label_ids) == len(stream.tx_ids)
    topics = make_topics(unique_topic, tx_partitions=2, label_partitions=2)
    produce_stream(kafka_bootstrap, topics, stream)
    ends = end_offsets(kafka_bootstrap, topics.inputs)
    assert sum(ends.values()) == len(stream.events)

    checkpoints = tmp_path / "checkpoints"
    group = f"exactly-once-{uuid.uuid4().hex[:8]}"

    def config(run: int):
        # Each incarnation joins a group of its own: a SIGKILLed member keeps its partitions
        # until its session times out (45 s), and a restart must not depend on the group's
        # committed offsets anyway: it resumes from the offsets inside its checkpoint.
        return write_config(tmp_path / f"run-{run}.yaml", kafka_bootstrap, topics, f"{group}-{run}", checkpoints)

    progress = []
    for run in range(KILLS):
        daemon = daemons.start(config(run), f"run-{run}")
        daemon.wait_for_log(r"assigned \S+\[\d+\]", timeout=180)
        time.sleep(rng.uniform(0.5, 5.0))
        assert daemon.alive(), daemon.tail()
        daemon.kill()
        info = newest_checkpoint(checkpoints)
        progress.append(None if info is None else (info.name, info.meta["rows_learned"]))

    # The crashes happened mid-stream: something was checkpointed, and work was left.
    last = newest_checkpoint(checkpoints)
    assert last is not None, f"no checkpoint after {KILLS} runs: {progress}"
    assert not covers(last, ends), "the stream was finished before the last crash; nothing was tested"
    assert sum(checkpoint_offsets(last).values()) > 0

    final = daemons.start(config(KILLS), "final")
    final.wait_for_log(r"resumed from checkpoint ckpt-\d+", timeout=180)

    def caught_up():
        info = newest_checkpoint(checkpoints)
        return info if info is not None and covers(info, ends) else None

    info = final.wait_until(caught_up, timeout=420, what="a checkpoint at the end offsets of both inputs")
    assert_learned_exactly_once(info, stream.label_ids)

    assert final.terminate() == 0, final.tail()
    stopped = newest_checkpoint(checkpoints)
    assert stopped.meta["reason"] == "stop"
    assert covers(stopped, ends)
    assert_learned_exactly_once(stopped, stream.label_ids)

    scored = set(scored_ids(kafka_bootstrap, topics.scores))
    missing = set(stream.tx_ids) - scored
    assert not missing, f"{len(missing)} transactions never scored, e.g. {sorted(missing)[:5]}"
    daemons.assert_none_running()
