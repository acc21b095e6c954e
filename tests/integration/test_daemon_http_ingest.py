"""HTTP ingest into a Kafka daemon is as durable as Kafka ingest.

Transactions are posted to ``/v1/score`` of a running ``fraudstream run``; their labels go
to the labels topic. The daemon is SIGKILLed twice while the client posts. Every
transaction answered 200 must be in the transactions topic, and every label whose
transaction is there must be learned exactly once (the digest check of the Kafka test).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

import httpx
import pytest

from daemon_harness import (
    Stream,
    assert_learned_exactly_once,
    covers,
    daemons,  # noqa: F401 - fixture
    end_offsets,
    make_topics,
    newest_checkpoint,
    producer,
    read_topic,
    seeded,
    with_clients,
    write_config,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

KILLS = 2
CHUNK = 300  # stream events per step: their transactions in one request, then their labels


@with_clients("kafka-python")  # HTTP ingest's send_and_wait; confluent in make test-all
def test_http_transactions_survive_sigkills(kafka_bootstrap, unique_topic, daemons, tmp_path):
    rng = seeded(20260402)
    stream = Stream.simulated(customers=150, terminals=300, days=24, seed=5)
    topics = make_topics(unique_topic, tx_partitions=2, label_partitions=2)
    checkpoints = tmp_path / "checkpoints"
    group = f"http-ingest-{uuid.uuid4().hex[:8]}"
    chunks = [stream.events[i:i + CHUNK] for i in range(0, len(stream.events), CHUNK)]

    url: dict[str, str | None] = {"base": None}
    up = threading.Event()
    answered: list[str] = []
    unknown: list[str] = []
    sent_chunks = [0]
    # The client posts no chunk at or past hold[0] until the main thread moves it: a kill must
    # come while the client still has chunks to post, however fast it goes.
    hold = [len(chunks)]
    failure: list[BaseException] = []

    def client() -> None:
        labels = producer(kafka_bootstrap)
        try:
            with httpx.Client(timeout=60) as http:
                for index, chunk in enumerate(chunks):
                    while index >= hold[0]:
                        time.sleep(0.02)
                    txs = [json.loads(v) for kind, _, v, _ in chunk if kind == "transaction"]
                    while txs:
                        up.wait(timeout=300)
                        try:
                            r = http.post(f"{url['base']}/v1/score", json={"transactions": txs})
                        except httpx.HTTPError:
                            unknown.extend(t["transaction_id"] for t in txs)  # killed mid-request
                            break
                        if r.status_code == 503:  # producer not up yet: resend
                            time.sleep(0.2)
                            continue
                        assert r.status_code == 200, r.text
                        assert [s["transaction_id"] for s in r.json()["scores"]] == [t["transaction_id"] for t in txs]
                        answered.extend(t["transaction_id"] for t in txs)
                        break
                    for kind, key, value, _ in chunk:
                        if kind == "label":
                            labels.send(topics.labels, value=value, key=key)
                    labels.flush(timeout=60)
                    sent_chunks[0] += 1
                    time.sleep(0.1)
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        finally:
            labels.close(timeout=10)

    def start(run: int):
        # restarts rejoin one group as the same static member: the partitions come back at once
        config = write_config(tmp_path / f"run-{run}.yaml", kafka_bootstrap, topics, group, checkpoints)
        daemon = daemons.start(config, f"run-{run}")
        [found] = daemon.wait_for_log(r"monitoring endpoints on (http://127\.0\.0\.1:\d+)", timeout=180)[:1]
        url["base"] = found.group(1)
        daemon.wait_for_log(r"assigned \S+\[\d+\]", timeout=180)
        up.set()
        return daemon

    worker = threading.Thread(target=client, name="http-client", daemon=True)
    daemon = start(0)
    worker.start()
    progress = []
    for run in range(KILLS):
        target = sent_chunks[0] + rng.randint(3, 7)
        hold[0] = target + 3
        assert hold[0] < len(chunks), f"the stream is too short for {KILLS} kills: {len(chunks)} chunks"
        daemon.wait_until(lambda: sent_chunks[0] >= target or failure or not worker.is_alive(), timeout=180,
                          what=f"{target} chunks posted")
        time.sleep(rng.uniform(0.2, 2.0))
        up.clear()
        daemon.kill()
        info = newest_checkpoint(checkpoints)
        progress.append(None if info is None else (info.name, info.meta["rows_learned"]))
        assert worker.is_alive() and not failure, f"the client stopped early: {failure} {progress}"
        daemon = start(run + 1)
    hold[0] = len(chunks)
    assert any(p is not None for p in progress), f"no checkpoint before a crash: {progress}"
    daemon.wait_for_log(r"resumed from checkpoint ckpt-\d+", timeout=60)
    worker.join(timeout=300)
    assert not worker.is_alive(), "the client did not finish"
    assert not failure, failure

    ends = end_offsets(kafka_bootstrap, topics.inputs)
    info = daemon.wait_until(
        lambda: (i := newest_checkpoint(checkpoints)) is not None and covers(i, ends) and i,
        timeout=240, what="a checkpoint at the end offsets of both inputs",
    )

    in_topic = [json.loads(r.value)["transaction_id"] for r in read_topic(kafka_bootstrap, topics.transactions)]
    assert len(in_topic) == len(set(in_topic)), "a transaction was produced twice"
    missing = set(answered) - set(in_topic)
    assert not missing, f"{len(missing)} transactions answered 200 are not in Kafka, e.g. {sorted(missing)[:5]}"
    assert set(in_topic) <= set(answered) | set(unknown)
    assert len(answered) > len(stream.tx_ids) // 2
    stored = set(in_topic)
    assert_learned_exactly_once(info, [i for i in stream.label_ids if i in stored])

    # answered transactions are not scored again on the scores topic: the client has its score
    assert not read_topic(kafka_bootstrap, topics.scores)
    assert daemon.terminate() == 0, daemon.tail()
    assert re.search(r"daemon stopped cleanly", daemon.log())
    daemons.assert_none_running()
