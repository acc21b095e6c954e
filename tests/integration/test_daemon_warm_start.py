"""``fraudstream run --warm-from HISTORY`` fills the feature windows before the first event,
and only when no checkpoint is resumed (a checkpoint's windows already hold the history)."""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest

from daemon_harness import (
    covers,
    daemons,  # noqa: F401 - fixture
    end_offsets,
    make_topics,
    newest_checkpoint,
    produce_records,
    write_config,
)
from fraudstream.config.simulate import SimulatorSettings
from fraudstream.daemon.state_io import read_state
from fraudstream.demo import _split
from fraudstream.simulate.engine import simulate
from fraudstream.simulate.output import merged_events, write_transactions

pytestmark = pytest.mark.kafka


def events_seen(info) -> int:
    return int(read_state(info.path, "features")["counters"]["events_seen"])


def test_run_warms_the_windows_from_history_once(kafka_bootstrap, unique_topic, daemons, tmp_path):
    sim = simulate(SimulatorSettings(customers=150, terminals=300), days=42, seed=9)
    history, stream = _split(sim, 40)
    history_file = tmp_path / "history.jsonl"
    write_transactions(dataclasses.replace(sim, transactions=history), history_file, inline_labels=True)
    topics = make_topics(unique_topic, 1, 1)
    topic_of = {"transaction": topics.transactions, "label": topics.labels}
    produce_records(kafka_bootstrap, (
        (topic_of[kind], event["customer_id"].encode() if "customer_id" in event else None,
         json.dumps(event).encode())
        for kind, event in merged_events(stream, inline_labels=False, label_events=True)))
    ends = end_offsets(kafka_bootstrap, topics.inputs)
    checkpoints = tmp_path / "checkpoints"
    config = write_config(tmp_path / "run.yaml", kafka_bootstrap, topics, f"warm-{uuid.uuid4().hex[:8]}", checkpoints)
    warm = ["--warm-from", str(history_file)]

    first = daemons.start(config, "first", warm)
    first.wait_for_log(rf"feature windows warmed from .*: {len(history)} rows", timeout=180)
    first.wait_until(lambda: (c := newest_checkpoint(checkpoints)) is not None and covers(c, ends),
                     timeout=300, what="a checkpoint at the end offsets of both inputs")
    assert first.terminate() == 0, first.tail()
    stopped = newest_checkpoint(checkpoints)
    assert events_seen(stopped) == len(history) + len(stream.transactions)

    second = daemons.start(config, "second", warm)  # resumes: the history is not read again
    second.wait_for_log(r"resumed from a checkpoint: .* not read", timeout=180)
    second.wait_for_log(r"daemon started", timeout=180)  # its signal handlers are in place
    assert second.terminate() == 0, second.tail()
    assert events_seen(newest_checkpoint(checkpoints)) == events_seen(stopped)
    daemons.assert_none_running()
