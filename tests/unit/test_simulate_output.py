"""Simulated events leave as the contract says: files, the merged stream, a producer."""

from __future__ import annotations

import json
import re
import time

import pandas as pd
import pytest

from fraudstream.config import KafkaSettings, Topics
from fraudstream.config.simulate import SimulatorSettings
from fraudstream.simulate import (
    FileFormat,
    KafkaProduceFailed,
    OutputFormatUnknown,
    infer_format,
    labels_path_for,
    merged_events,
    merged_order,
    produce,
    simulate,
    write_labels,
    write_transactions,
)

RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
SETTINGS = SimulatorSettings(customers=150, terminals=300)


@pytest.fixture(scope="module")
def sim():
    return simulate(SETTINGS, days=6, seed=21)


@pytest.fixture(scope="module")
def tied_sim():
    """One day of delay and enough traffic that some labels share a second with a transaction."""
    settings = SimulatorSettings(customers=1_000, terminals=2_000, label_delay="1d")
    return simulate(settings, days=4, seed=2)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_transactions_round_trip(sim, tmp_path):
    path = tmp_path / "tx.jsonl"
    assert write_transactions(sim, path) == len(sim.transactions)
    events = read_jsonl(path)
    tx = sim.transactions
    assert len(events) == len(tx)
    fields = {"transaction_id", "timestamp", "customer_id", "terminal_id", "amount"}
    assert all(set(e) == fields for e in events)
    assert all(RFC3339_Z.match(e["timestamp"]) for e in events)
    assert all(isinstance(e["amount"], float) for e in events)
    back = pd.DataFrame(events)
    assert back["transaction_id"].tolist() == tx["transaction_id"].tolist()
    assert back["customer_id"].tolist() == tx["customer_id"].tolist()
    assert back["terminal_id"].tolist() == tx["terminal_id"].tolist()
    assert back["amount"].tolist() == tx["amount"].tolist()
    assert (pd.to_datetime(back["timestamp"], utc=True) == tx["timestamp"]).all()
    assert not list(tmp_path.glob(".*tmp*")), "the temporary file must be renamed away"


def test_inline_labels_add_the_label_field(sim, tmp_path):
    path = tmp_path / "tx.jsonl"
    write_transactions(sim, path, inline_labels=True)
    events = read_jsonl(path)
    assert [e["label"] for e in events] == sim.transactions["label"].tolist()
    assert sum(e["label"] for e in events) > 0


def test_csv_transactions_round_trip(sim, tmp_path):
    path = tmp_path / "tx.csv"
    write_transactions(sim, path, inline_labels=True)
    back = pd.read_csv(path, dtype={"transaction_id": str, "customer_id": str, "terminal_id": str})
    assert list(back.columns) == [
        "transaction_id", "timestamp", "customer_id", "terminal_id", "amount", "label"
    ]
    tx = sim.transactions
    assert back["transaction_id"].tolist() == tx["transaction_id"].tolist()
    assert back["amount"].tolist() == tx["amount"].tolist()
    assert back["label"].tolist() == tx["label"].tolist()
    assert (pd.to_datetime(back["timestamp"], utc=True) == tx["timestamp"]).all()
    assert all(RFC3339_Z.match(t) for t in back["timestamp"])


def test_amounts_are_written_with_two_decimals(sim, tmp_path):
    path = tmp_path / "tx.csv"
    write_transactions(sim, path)
    amounts = [line.rsplit(",", 1)[1] for line in path.read_text().splitlines()[1:]]
    assert all(re.fullmatch(r"\d+\.\d\d", a) for a in amounts)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_label_events_round_trip(sim, tmp_path, suffix):
    path = tmp_path / f"labels{suffix}"
    assert write_labels(sim, path) == len(sim.labels)
    if suffix == ".csv":
        back = pd.read_csv(path, dtype={"transaction_id": str})
    else:
        back = pd.DataFrame(read_jsonl(path))
    assert list(back.columns) == ["transaction_id", "label", "timestamp", "scenario"]
    assert back["transaction_id"].tolist() == sim.labels["transaction_id"].tolist()
    assert back["label"].tolist() == sim.labels["label"].tolist()
    assert (pd.to_datetime(back["timestamp"], utc=True) == sim.labels["timestamp"]).all()


def test_label_events_without_scenario_are_the_bare_contract(sim, tmp_path):
    path = tmp_path / "labels.jsonl"
    write_labels(sim, path, scenario=False)
    assert all(set(e) == {"transaction_id", "label", "timestamp"} for e in read_jsonl(path))


def test_format_comes_from_the_flag_or_the_suffix(tmp_path):
    assert infer_format("a/b.jsonl") is FileFormat.jsonl
    assert infer_format("b.NDJSON") is FileFormat.jsonl
    assert infer_format("b.csv") is FileFormat.csv
    assert infer_format("b.txt", "csv") is FileFormat.csv
    with pytest.raises(OutputFormatUnknown):
        infer_format("b.txt")
    with pytest.raises(ValueError):
        infer_format("b.csv", "parquet")
    assert labels_path_for(tmp_path / "tx.jsonl") == tmp_path / "tx.labels.jsonl"
    assert labels_path_for("out/tx.csv").as_posix() == "out/tx.labels.csv"


def test_explicit_format_overrides_the_suffix(sim, tmp_path):
    path = tmp_path / "tx.txt"
    write_transactions(sim, path, fmt="jsonl")
    first = json.loads(path.read_text().splitlines()[0])
    assert first["transaction_id"] == sim.transactions["transaction_id"].iloc[0]


def test_merged_stream_is_in_event_time_with_labels_first_at_ties(tied_sim):
    events = list(merged_events(tied_sim))
    n_tx, n_lab = len(tied_sim.transactions), len(tied_sim.labels)
    assert len(events) == n_tx + n_lab
    kinds = [k for k, _ in events]
    assert kinds.count("transaction") == n_tx and kinds.count("label") == n_lab
    times = [e["timestamp"] for _, e in events]
    assert times == sorted(times)
    ties = 0
    for (k1, e1), (k2, e2) in zip(events, events[1:]):
        if e1["timestamp"] == e2["timestamp"] and k1 != k2:
            ties += 1
            assert (k1, k2) == ("label", "transaction"), (e1, e2)
    assert ties > 0, "the fixture should produce label/transaction ties"
    assert len({e["transaction_id"] for k, e in events if k == "label"}) == n_lab


def test_every_label_follows_its_transaction(tied_sim):
    seen = set()
    for kind, event in merged_events(tied_sim):
        if kind == "transaction":
            seen.add(event["transaction_id"])
        else:
            assert event["transaction_id"] in seen


def test_merged_stream_honours_the_label_options(sim):
    only_tx = list(merged_events(sim, inline_labels=True, label_events=False))
    assert {k for k, _ in only_tx} == {"transaction"}
    assert [e["label"] for _, e in only_tx] == sim.transactions["label"].tolist()
    is_label, rows = merged_order(sim, label_events=False)
    assert not is_label.any() and rows.tolist() == list(range(len(sim.transactions)))


class RecordingSink:
    """Stands in for the daemon's Kafka sink: records sends, optionally fails some deliveries."""

    def __init__(self, fail_every: int = 0):
        self.sent: list[tuple[str, bytes, bytes, float]] = []
        self.fail_every = fail_every
        self.failed = 0  # deliveries refused for good, as the real sinks count them
        self.flushed = False

    def send(self, topic, value, key=None):
        self.sent.append((topic, key, value, time.monotonic()))
        if self.fail_every and len(self.sent) % self.fail_every == 0:
            self.failed += 1

    def flush(self, timeout_s=None):
        self.flushed = True

    def close(self):
        pass


KAFKA = KafkaSettings(topics=Topics(transactions="sim-tx", labels="sim-labels"))


def test_produce_sends_both_kinds_in_merged_order_keyed_by_customer(sim):
    sink = RecordingSink()
    report = produce(sim, KAFKA, progress=False, sink=sink)
    assert sink.flushed
    assert report.transactions == len(sim.transactions) and report.labels == len(sim.labels)
    expected = list(merged_events(sim))
    assert len(sink.sent) == len(expected)
    customer_of = dict(zip(sim.transactions["transaction_id"], sim.transactions["customer_id"]))
    for (topic, key, value, _), (kind, event) in zip(sink.sent, expected):
        assert topic == ("sim-labels" if kind == "label" else "sim-tx")
        assert json.loads(value) == event
        assert key == customer_of[event["transaction_id"]].encode()


def test_produce_paces_transactions_at_the_rate():
    sim = simulate(SimulatorSettings(customers=40, terminals=80), days=2, seed=3)
    n = len(sim.transactions)
    rate = n / 0.4  # the whole run should take about 0.4 s of wall clock
    sink = RecordingSink()
    produce(sim, KAFKA, rate=rate, progress=False, sink=sink)
    tx_times = [t for topic, _, _, t in sink.sent if topic == "sim-tx"]
    elapsed = tx_times[-1] - tx_times[0]
    assert elapsed >= 0.9 * (n - 1) / rate
    # Halfway through, about half the time has passed: paced, not bursted at the end.
    half = tx_times[n // 2] - tx_times[0]
    assert 0.35 * elapsed < half < 0.65 * elapsed


def test_a_failed_delivery_stops_the_run_and_raises(sim):
    sink = RecordingSink(fail_every=10)
    with pytest.raises(KafkaProduceFailed, match="stopped after sending 10 of") as info:
        produce(sim, KAFKA, progress=False, sink=sink)
    assert info.value.failed == 1
    assert len(sink.sent) == 10


def test_unreachable_broker_is_a_clear_error(sim):
    dead = KafkaSettings(bootstrap_servers="127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(KafkaProduceFailed, match="127.0.0.1:9"):
        produce(sim, dead, progress=False, producer_options={"bootstrap_timeout_ms": 500})
