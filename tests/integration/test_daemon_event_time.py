"""One transaction dated 2199 and one dated 1971, mid-stream, change nothing but the DLQ.

The same labelled stream runs through two daemons at once: one with the two bad-clock events
injected in its middle, keyed to a real customer, and a control run without them. Every
eighth transaction's label is withheld, so rows do expire (10-day TTL) in both runs. Both
runs must expire exactly the rows whose label never came and that lie more than the TTL
behind their own partition's newest transaction (the pending store's ``expired`` counter in
the last checkpoint; one transaction partition ends days early, so one clock shared by the
partitions would expire more), learn every label that came exactly once, raise no bulk expiry, and
the first must dead-letter the two events as ``future_timestamp`` and ``stale_timestamp``
with their original bytes. Costs about 40 s (two daemons over 3,300 events each).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest

from daemon_harness import (
    Stream,
    TopicSet,
    assert_learned_exactly_once,
    covers,
    daemons,  # noqa: F401 - fixture
    dlq_original,
    dlq_records,
    end_offsets,
    newest_checkpoint,
    produce_records,
    scored_ids,
    write_config,
)
from fraudstream.consumers.kafka import key_hash
from fraudstream.daemon.state_io import read_state

pytestmark = pytest.mark.kafka

TTL_DAYS = 10
LAG_DAYS = 4
UNLABELLED_EVERY = 8


def _bad_clock(tx_id: str, customer: str, timestamp: str) -> bytes:
    return json.dumps({"transaction_id": tx_id, "timestamp": timestamp, "customer_id": customer,
                       "terminal_id": "T00001", "amount": 20.0}, separators=(",", ":")).encode()


def _epoch(value: bytes) -> float:
    return datetime.fromisoformat(json.loads(value)["timestamp"].replace("Z", "+00:00")).timestamp()


def _record_times(records: list[tuple[str, bytes, bytes]], bad: set[bytes]) -> list[int]:
    """Kafka timestamps: each event's own time; a bad-clock event takes the one before it."""
    stamps = []
    for _, _, value in records:
        stamps.append(stamps[-1] if value in bad else int(_epoch(value) * 1000))
    return stamps


def caught_up(checkpoints, ends):
    return lambda: (info := newest_checkpoint(checkpoints)) is not None and covers(info, ends)


def test_far_future_and_far_past_events_expire_nothing_a_control_run_keeps(kafka_bootstrap, unique_topic, daemons, tmp_path):
    stream = Stream.simulated(customers=60, terminals=120, days=30, seed=9)
    unlabelled = set(stream.tx_ids[::UNLABELLED_EVERY])
    # Transaction partition 1 ends LAG_DAYS early (those transactions and their labels are left
    # out): at the end its clock is behind partition 0's, so expiry by each partition's own
    # clock and expiry by one shared clock expire different rows.
    end = max(_epoch(value) for kind, _, value, _ in stream.events if kind == "transaction")
    lagging = {tx_id for kind, key, value, tx_id in stream.events
               if kind == "transaction" and key_hash(key) % 2 == 1 and _epoch(value) > end - LAG_DAYS * 86_400}
    events = [e for e in stream.events if e[3] not in lagging and not (e[0] == "label" and e[3] in unlabelled)]
    labelled = [tx_id for tx_id in stream.label_ids if tx_id not in unlabelled and tx_id not in lagging]
    middle = len(events) // 2
    customer = next(key for kind, key, _, _ in events[middle:] if kind == "transaction")
    bad = {
        ("future", "future_timestamp"): _bad_clock("bad-2199", customer.decode(), "2199-01-01T00:00:00Z"),
        ("past", "stale_timestamp"): _bad_clock("bad-1971", customer.decode(), "1971-01-01T00:00:00Z"),
    }

    runs = {}
    for name in ("injected", "control"):
        # their record times are months old: no time-based retention may delete them mid-test
        keep = {"retention.ms": "-1"}
        topics = TopicSet(unique_topic("tx", 2, keep), unique_topic("labels", 2, keep),
                          unique_topic("scores", 1), unique_topic("dlq", 1))
        records = [(topics.transactions if kind == "transaction" else topics.labels, key, value)
                   for kind, key, value, _ in events]
        if name == "injected":  # a bad clock in the event, not in the producer: the records' time is sane
            records[middle:middle] = [(topics.transactions, customer, value) for value in bad.values()]
        # stamped with event time: read in that order, so rows wait for their labels as they would live
        coords = produce_records(kafka_bootstrap, records, _record_times(records, set(bad.values())))
        config = write_config(
            tmp_path / f"{name}.yaml", kafka_bootstrap, topics, f"event-time-{uuid.uuid4().hex[:8]}",
            tmp_path / name, training={"pending_ttl_days": TTL_DAYS, "pending_bulk_expiry_rows": 100},
            # a sparse stream: 500 records of one partition would be 18 days, past the TTL, in one
            # poll; 20 are under a day, so the inputs stay aligned in event time as they are live
            kafka={"batch_size": 20},
        )
        runs[name] = (topics, records, coords, end_offsets(kafka_bootstrap, topics.inputs), daemons.start(config, name))

    # what must expire: unlabelled rows more than the TTL behind their partition's newest transaction
    topics, records, coords, _, _ = runs["control"]
    tx_times = [(partition, _epoch(value), json.loads(value)["transaction_id"])
                for (topic, _, value), (_, partition, _) in zip(records, coords) if topic == topics.transactions]
    newest = {p: max(t for q, t, _ in tx_times if q == p) for p, _, _ in tx_times}
    must_expire = sum(1 for p, t, tx_id in tx_times if tx_id in unlabelled and t < newest[p] - TTL_DAYS * 86_400)
    assert must_expire > 50, "the stream is too short for anything to expire; nothing would be compared"
    one_clock = sum(1 for _, t, tx_id in tx_times if tx_id in unlabelled and t < max(newest.values()) - TTL_DAYS * 86_400)
    assert one_clock > must_expire, "partition 1 does not lag: per-partition expiry would not be tested"

    expired = {}
    for name, (topics, _, _, ends, daemon) in runs.items():
        daemon.wait_until(caught_up(tmp_path / name, ends), timeout=300, what=f"{name}: a checkpoint at the input ends")
        assert daemon.terminate() == 0, daemon.tail()
        info = newest_checkpoint(tmp_path / name)
        assert_learned_exactly_once(info, labelled)
        expired[name] = read_state(info.path, "pending")["counters"]["expired"]
        assert "expired unlabelled in one batch" not in daemon.log(), f"{name}: a bulk expiry"
        missing = set(stream.tx_ids) - lagging - set(scored_ids(kafka_bootstrap, topics.scores))
        assert not missing, f"{name}: {len(missing)} valid transactions never scored"
    print(f"\nexpired pending rows: {expired}; expected {must_expire} (one shared clock: {one_clock})")
    assert expired == {"injected": must_expire, "control": must_expire}

    topics = runs["injected"][0]
    dead = sorted((r["reason"], dlq_original(r)) for r in dlq_records(kafka_bootstrap, topics.dlq))
    assert dead == sorted((reason, value) for (_, reason), value in bad.items())
    assert dlq_records(kafka_bootstrap, runs["control"][0].dlq) == []
    daemons.assert_none_running()
