"""Bad input never stops the daemon, is never scored or learned, and reaches the DLQ intact.

Valid simulated events are mixed with well over a thousand invalid ones of every kind the
contract names: not JSON, truncated JSON, wrong types, missing fields, NaN and infinities,
absurd numbers, a ~900 KB event, wrong encodings, JSON that is not an object, tombstones,
timestamps in 2199 and 1971. Each invalid record must appear on the DLQ topic with its reason
and its exact original bytes (a tombstone as ``value_null``).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter

import pytest

from daemon_harness import (
    Stream,
    assert_learned_exactly_once,
    covers,
    daemons,  # noqa: F401 - fixture
    dlq_original,
    dlq_records,
    end_offsets,
    make_topics,
    newest_checkpoint,
    produce_records,
    scored_ids,
    seeded,
    with_clients,
    write_config,
)

pytestmark = pytest.mark.kafka

INVALID_TX = 1_300
INVALID_LABELS = 120
HUGE_BYTES = 900_000  # under the broker's 1 MB message limit, far over kafka.max_event_bytes


def _tx(tx_id: str, **fields) -> dict:
    event = {"transaction_id": tx_id, "timestamp": "2026-04-05T10:00:00Z", "customer_id": "c-bad",
             "terminal_id": "t-bad", "amount": 12.5}
    event.update(fields)
    return event


def _dump(event) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def _drop(tx_id: str, field: str) -> bytes:
    event = _tx(tx_id)
    del event[field]
    return _dump(event)


# Each kind: (name, expected DLQ reason, make(tx_id) -> the bytes sent).
KINDS = [
    ("not_json", "not_json", lambda i: f"not json at all {i} {{".encode()),
    ("truncated", "not_json", lambda i: _dump(_tx(i))[: len(_dump(_tx(i))) // 2]),
    ("empty", "not_json", lambda i: b""),
    ("amount_text", "wrong_type", lambda i: _dump(_tx(i, amount="abc"))),
    ("amount_bool", "wrong_type", lambda i: _dump(_tx(i, amount=True))),
    ("customer_list", "wrong_type", lambda i: _dump(_tx(i, customer_id=[1, 2]))),
    ("timestamp_bool", "wrong_type", lambda i: _dump(_tx(i, timestamp=True))),
    ("id_object", "wrong_type", lambda i: _dump(_tx(i, transaction_id={"id": i}))),
    ("no_id", "missing_field", lambda i: _drop(i, "transaction_id")),
    ("no_timestamp", "missing_field", lambda i: _drop(i, "timestamp")),
    ("no_customer", "missing_field", lambda i: _drop(i, "customer_id")),
    ("no_terminal", "missing_field", lambda i: _drop(i, "terminal_id")),
    ("no_amount", "missing_field", lambda i: _drop(i, "amount")),
    ("null_terminal", "missing_field", lambda i: _dump(_tx(i, terminal_id=None))),
    ("nan_text", "not_finite", lambda i: _dump(_tx(i, amount="NaN"))),
    ("inf_text", "not_finite", lambda i: _dump(_tx(i, amount="Infinity"))),
    ("nan_token", "not_json", lambda i: _dump(_tx(i)).replace(b'"amount":12.5', b'"amount":NaN')),
    ("inf_token", "not_json", lambda i: _dump(_tx(i)).replace(b'"amount":12.5', b'"amount":-Infinity')),
    ("huge_1e400", "not_json", lambda i: _dump(_tx(i)).replace(b'"amount":12.5', b'"amount":1e400')),
    ("huge_10e30", "amount_too_large", lambda i: _dump(_tx(i)).replace(b'"amount":12.5', b'"amount":' + str(10**30).encode())),
    ("huge_float", "amount_too_large", lambda i: _dump(_tx(i, amount=1e30))),
    ("negative", "negative_amount", lambda i: _dump(_tx(i, amount=-4.0))),
    ("epoch_far", "bad_timestamp", lambda i: _dump(_tx(i, timestamp=1e20))),
    ("time_text", "bad_timestamp", lambda i: _dump(_tx(i, timestamp="yesterday"))),
    ("label_7", "bad_label", lambda i: _dump(_tx(i, label=7))),
    ("latin1", "not_utf8", lambda i: json.dumps(_tx(i, customer_id="café"), ensure_ascii=False).encode("latin-1")),
    ("utf16", "not_utf8", lambda i: json.dumps(_tx(i)).encode("utf-16")),
    ("array", "not_object", lambda i: b"[" + _dump(_tx(i)) + b"]"),
    ("scalar", "not_object", lambda i: b"42"),
    ("null", "not_object", lambda i: b"null"),
    ("tombstone", "empty", lambda i: None),  # no value at all; told apart from b"null" in the DLQ
    # event time out of reach: a bad producer clock must not move the partition's clock
    ("year_2199", "future_timestamp", lambda i: _dump(_tx(i, timestamp="2199-01-01T00:00:00Z"))),
    ("year_1971", "stale_timestamp", lambda i: _dump(_tx(i, timestamp="1971-01-01T00:00:00Z"))),
]
LABEL_KINDS = [
    ("label_not_json", "not_json", lambda i: f"label? {i}".encode()),
    ("label_value_2", "bad_label", lambda i: _dump({"transaction_id": i, "label": 2, "timestamp": "2026-04-09T00:00:00Z"})),
    ("label_no_id", "missing_field", lambda i: _dump({"label": 1, "timestamp": "2026-04-09T00:00:00Z"})),
    ("label_array", "not_object", lambda i: b'[{"transaction_id":"x","label":1}]'),
]


@with_clients("kafka-python", "confluent")
def test_invalid_events_go_to_the_dlq_and_are_never_scored_or_learned(kafka_bootstrap, unique_topic, daemons, tmp_path):
    rng = seeded(7)
    stream = Stream.simulated(customers=120, terminals=240, days=20, seed=3)
    # The DLQ record of the ~900 KB event carries it in base64 (~1.2 MB): the DLQ topic
    # must accept records larger than the broker's 1 MB default.
    topics = make_topics(unique_topic, 2, 2, dlq_configs={"max.message.bytes": str(4 << 20)})
    keys = [key for kind, key, _, _ in stream.events if kind == "transaction"]

    records: list[tuple[str, bytes | None, bytes]] = []
    expected: list[tuple[str, str] | None] = []  # (kind, reason) of each invalid record
    for kind, key, value, _ in stream.events:
        records.append((topics.transactions if kind == "transaction" else topics.labels, key, value))
        expected.append(None)
    invalid_ids = []
    inserts = []
    for n in range(INVALID_TX):
        name, reason, make = KINDS[n % len(KINDS)]
        tx_id = f"bad-{n}"
        invalid_ids.append(tx_id)
        inserts.append(((topics.transactions, rng.choice(keys), make(tx_id)), (name, reason)))
    for n in range(2):
        tx_id = f"bad-huge-{n}"
        invalid_ids.append(tx_id)
        huge = _dump(_tx(tx_id, note="x" * HUGE_BYTES))
        inserts.append(((topics.transactions, rng.choice(keys), huge), ("huge_string", "oversize")))
    for n in range(INVALID_LABELS):
        name, reason, make = LABEL_KINDS[n % len(LABEL_KINDS)]
        inserts.append(((topics.labels, rng.choice(keys), make(f"bad-label-{n}")), (name, reason)))
    # valid label events for invalid transactions: they must never join anything (no time of
    # their own, so where they land in the label stream cannot make them too far ahead of it)
    orphan_labels = [
        ((topics.labels, rng.choice(keys), _dump({"transaction_id": tx_id, "label": 1})), None)
        for tx_id in invalid_ids[::4]
    ]
    for record, what in inserts + orphan_labels:
        at = rng.randrange(len(records) + 1)
        records.insert(at, record)
        expected.insert(at, what)

    coords = produce_records(kafka_bootstrap, records, max_request_size=2 << 20)
    invalid = {coord: (record[2], what) for coord, record, what in zip(coords, records, expected) if what is not None}
    assert len(invalid) >= 1_000 and {w[0] for _, w in invalid.values()} >= {k[0] for k in KINDS + LABEL_KINDS}
    ends = end_offsets(kafka_bootstrap, topics.inputs)

    checkpoints = tmp_path / "checkpoints"
    config = write_config(tmp_path / "run.yaml", kafka_bootstrap, topics, f"bad-input-{uuid.uuid4().hex[:8]}", checkpoints)
    daemon = daemons.start(config)

    def caught_up():
        info = newest_checkpoint(checkpoints)
        return info if info is not None and covers(info, ends) else None

    info = daemon.wait_until(caught_up, timeout=300, what="a checkpoint at the end offsets of both inputs")
    assert daemon.alive(), daemon.tail()
    assert daemon.terminate() == 0, daemon.tail()

    # Learned: exactly the labels of valid transactions; the orphan labels never joined.
    assert_learned_exactly_once(newest_checkpoint(checkpoints), stream.label_ids)
    assert_learned_exactly_once(info, stream.label_ids)

    # Scored: every valid transaction, no invalid one.
    scored = set(scored_ids(kafka_bootstrap, topics.scores))
    assert not scored & set(invalid_ids), f"invalid transactions scored: {sorted(scored & set(invalid_ids))[:5]}"
    missing = set(stream.tx_ids) - scored
    assert not missing, f"{len(missing)} valid transactions never scored"

    # Dead-lettered: every invalid record, with its reason and its original bytes; nothing else.
    dead = {}
    for record in dlq_records(kafka_bootstrap, topics.dlq):
        source = record["source"]
        dead[(source["topic"], source["partition"], source["offset"])] = record
    assert not set(dead) - set(invalid), f"valid records in the DLQ: {sorted(set(dead) - set(invalid))[:5]}"
    lost = sorted(set(invalid) - set(dead))
    assert not lost, f"{len(lost)} invalid records missing from the DLQ, kinds {Counter(invalid[c][1][0] for c in lost)}"
    wrong = Counter()
    for coord, (original, (name, reason)) in invalid.items():
        record = dead[coord]
        assert dlq_original(record) == original, f"{name}: the DLQ does not hold the original bytes"
        if record["reason"] != reason:
            wrong[(name, reason, record["reason"])] += 1
    assert not wrong, f"unexpected DLQ reasons (kind, expected, got): {dict(wrong)}"
    daemons.assert_none_running()


@with_clients("kafka-python", "confluent")
def test_an_event_too_large_for_the_dlq_topic_is_dead_lettered_trimmed(kafka_bootstrap, unique_topic, daemons, tmp_path):
    """With the DLQ topic at the broker's default 1 MB limit, the base64 of a ~900 KB event
    does not fit: the broker refuses it and the daemon sends a trimmed record instead (the
    start of the value, its size and sha256), rather than losing it or stopping."""
    import hashlib

    rng = seeded(11)
    stream = Stream.simulated(customers=30, terminals=60, days=6, seed=5)
    topics = make_topics(unique_topic, 1, 1)
    records = [(topics.transactions if kind == "transaction" else topics.labels, key, value)
               for kind, key, value, _ in stream.events]
    huge = [_dump(_tx(f"bad-huge-{n}", note="y" * HUGE_BYTES)) for n in range(3)]
    for value in huge:
        records.insert(rng.randrange(len(records) + 1), (topics.transactions, b"c-bad", value))
    produce_records(kafka_bootstrap, records, max_request_size=2 << 20)
    ends = end_offsets(kafka_bootstrap, topics.inputs)

    checkpoints = tmp_path / "checkpoints"
    config = write_config(tmp_path / "run.yaml", kafka_bootstrap, topics, f"dlq-limit-{uuid.uuid4().hex[:8]}", checkpoints)
    daemon = daemons.start(config)
    daemon.wait_until(lambda: (i := newest_checkpoint(checkpoints)) is not None and covers(i, ends),
                      timeout=240, what="a checkpoint at the end offsets of both inputs")
    daemon.wait_for_log(r"refused a \d+-byte record as too large", timeout=30, count=len(huge))
    assert daemon.alive(), daemon.tail()
    assert daemon.terminate() == 0, daemon.tail()

    dead = dlq_records(kafka_bootstrap, topics.dlq)
    assert len(dead) == len(huge), [d["reason"] for d in dead]
    by_digest = {hashlib.sha256(v).hexdigest(): v for v in huge}
    for record in dead:
        assert record["reason"] == "oversize"
        assert record["value_truncated"] is True
        original = by_digest.pop(record["value_sha256"])
        assert record["value_bytes"] == len(original)
        assert original.startswith(dlq_original(record)) and 0 < len(dlq_original(record)) < len(original)
    assert not by_digest
    # a refused record must not stop later output (scores after it are delivered too)
    missing = set(stream.tx_ids) - set(scored_ids(kafka_bootstrap, topics.scores))
    assert not missing, f"{len(missing)} transactions never scored"
    assert_learned_exactly_once(newest_checkpoint(checkpoints), stream.label_ids)
    daemons.assert_none_running()
