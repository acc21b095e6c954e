"""``fraudstream model promote|rollback`` against a running daemon, over a real broker.

A request left while no daemon runs is applied when it starts. Then, with the daemon
running, ``model promote --to V`` serves a version kept in a checkpoint and ``model rollback
--to V0`` goes back, each answered within seconds and without a restart: the answer file
says so, a new checkpoint records the champion, the scores on the topic carry its version,
and ``/metrics`` counts the promotion and the rollback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import httpx
import pytest
import yaml

from daemon_harness import (
    DAEMON_ENV,
    Stream,
    covers,
    daemons,  # noqa: F401 - fixture
    end_offsets,
    make_topics,
    newest_checkpoint,
    produce_stream,
    read_topic,
    write_config,
)
from prometheus_fixture import free_port

from fraudstream.daemon.lifecycle import read_ack

pytestmark = pytest.mark.kafka


def model_cli(*args: str, directory) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fraudstream", "model", *args, "--dir", str(directory)],
        capture_output=True, text=True, timeout=120, env={**__import__("os").environ, **DAEMON_ENV},
    )


def metric(port: int, name: str) -> float:
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_model_commands_reach_a_running_daemon(kafka_bootstrap, unique_topic, daemons, tmp_path):  # noqa: F811
    topics = make_topics(unique_topic, tx_partitions=1, label_partitions=1)
    checkpoints = tmp_path / "checkpoints"
    config = write_config(tmp_path / "config.yaml", kafka_bootstrap, topics, f"lifecycle-{uuid.uuid4().hex[:8]}",
                          checkpoints, checkpoints={"every_steps": 20, "every_seconds": 1.0})
    data = yaml.safe_load(config.read_text())
    port = free_port()
    data["monitoring"]["port"] = port
    # margins no model clears: every change of champion below comes from the command line
    data["lifecycle"] = {"enabled": True, "window": 200, "min_labels": 100, "promote_margin": 1.0, "rollback_margin": 1.0}
    config.write_text(yaml.safe_dump(data))

    # asked while no daemon runs: applied at start
    asked = model_cli("promote", directory=checkpoints)
    assert asked.returncode == 0, asked.stderr
    stream = Stream.simulated(customers=200, terminals=400, days=12, seed=5)
    produce_stream(kafka_bootstrap, topics, stream)
    ends = end_offsets(kafka_bootstrap, topics.inputs)
    daemon = daemons.start(config)
    daemon.wait_for_log(r"model promote \(manual\)", timeout=120)
    # the daemon logs the promotion as it applies it, and answers just after
    ack = daemon.wait_until(lambda: read_ack(checkpoints), 30, "the answer to the request")
    assert ack["status"] == "applied", ack
    info = daemon.wait_until(lambda: (i := newest_checkpoint(checkpoints)) and covers(i, ends) and i, 180,
                             "a checkpoint covering the stream")
    first_champion = info.meta["lifecycle"]["champion_version"]
    learner = info.meta["model_version"]
    assert learner > first_champion

    # while it runs: serve the learner's version from the checkpoint, then go back
    promoted = model_cli("promote", "--to", str(learner), "--wait", "30", directory=checkpoints)
    assert promoted.returncode == 0 and "applied" in promoted.stdout, promoted.stdout + promoted.stderr
    daemon.wait_until(lambda: (i := newest_checkpoint(checkpoints)) and i.meta["lifecycle"]["champion_version"] == learner,
                      30, "a checkpoint with the promoted champion")
    rolled = model_cli("rollback", "--to", str(first_champion), "--wait", "30", directory=checkpoints)
    assert rolled.returncode == 0 and "applied" in rolled.stdout, rolled.stdout + rolled.stderr
    info = daemon.wait_until(
        lambda: (i := newest_checkpoint(checkpoints)) and i.meta["lifecycle"]["champion_version"] == first_champion and i,
        30, "a checkpoint with the champion rolled back")
    assert info.meta["lifecycle"]["rollbacks"] >= 1 and info.meta["lifecycle"]["promotions"] >= 2
    daemon.wait_until(lambda: metric(port, "fraudstream_model_rollbacks_total") >= 1, 15, "the rollback counted")
    assert metric(port, "fraudstream_model_promotions_total") >= 2
    assert metric(port, "fraudstream_model_version") == first_champion

    unknown = model_cli("promote", "--to", "987654", directory=checkpoints)
    assert unknown.returncode == 2 and "987654" in unknown.stderr
    listed = model_cli("list", directory=checkpoints)
    assert listed.returncode == 0 and str(first_champion) in listed.stdout and "champion" in listed.stdout
    assert daemon.terminate() == 0

    served = {json.loads(r.value)["model_version"] for r in read_topic(kafka_bootstrap, topics.scores)}
    assert served <= {0, first_champion}, served  # scores carry champions' versions, never the learner's steps
