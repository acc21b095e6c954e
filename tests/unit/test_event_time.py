"""Event-time checks per input partition, per-partition expiry, label times, tombstones."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import numpy as np
import pytest

from fraudstream.config import EventTimeSettings, load_settings
from fraudstream.config.simulate import SimulatorSettings
from fraudstream.daemon.decode import LABEL, TX, Incoming, dlq_record
from fraudstream.daemon.engine import Engine
from fraudstream.daemon.eventtime import FUTURE, REASONS, STALE, PartitionClocks
from fraudstream.daemon.pending import ANY_PARTITION, PendingStore
from fraudstream.daemon.step import parse_label
from fraudstream.errors import EventInvalid
from fraudstream.features import FeaturePipeline, Transaction
from fraudstream.monitoring.metrics import DEFAULT_INVALID_REASONS
from fraudstream.simulate.engine import simulate
from fraudstream.simulate.output import merged_events

DAY_US = 86_400 * 10**6
HOUR_US = 3_600 * 10**6
WALL = datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp()  # a fixed wall clock: no test reads the real one
WALL_US = round(WALL * 1e6)
T2018 = round(datetime(2018, 4, 1, tzinfo=timezone.utc).timestamp() * 1e6)


def reason(clocks: PartitionClocks, key, time_us: int, wall: float = WALL) -> str | None:
    try:
        clocks.check(key, time_us, wall)
    except EventInvalid as exc:
        return exc.reason
    return None


# -- PartitionClocks ----------------------------------------------------------------------


def test_history_passes_and_the_future_does_not():
    clocks = PartitionClocks(EventTimeSettings())
    assert reason(clocks, ("tx", 0), T2018) is None  # a 2018 replay is behind the wall clock
    assert reason(clocks, ("tx", 1), WALL_US + 23 * HOUR_US) is None  # within a day of it
    far = round(datetime(2199, 1, 1, tzinfo=timezone.utc).timestamp() * 1e6)
    assert reason(clocks, ("tx", 2), far) == FUTURE  # a partition's first event too
    assert ("tx", 2) not in clocks.watermark  # a refused event moves nothing


def test_ahead_of_the_partition_watermark_is_future_and_each_partition_has_its_own():
    clocks = PartitionClocks(EventTimeSettings())
    clocks.check(("tx", 0), T2018, WALL)
    clocks.check(("tx", 1), T2018 + 100 * DAY_US, WALL)
    assert reason(clocks, ("tx", 0), T2018 + 2 * DAY_US) == FUTURE
    assert reason(clocks, ("tx", 1), T2018 + 100 * DAY_US + HOUR_US) is None  # partition 1 is there already
    assert reason(clocks, ("tx", 0), T2018 + 20 * HOUR_US) is None
    assert clocks.watermark[("tx", 0)] == T2018 + 20 * HOUR_US


def test_the_watermark_bound_grows_with_wall_time_so_an_idle_partition_may_resume():
    clocks = PartitionClocks(EventTimeSettings())
    clocks.check(("tx", 0), WALL_US - 3 * DAY_US, WALL - 3 * 86_400)  # then idle for three days
    assert reason(clocks, ("tx", 0), WALL_US, wall=WALL) is None
    assert reason(clocks, ("tx", 0), WALL_US + 2 * DAY_US, wall=WALL) == FUTURE  # past the wall clock


def test_far_behind_the_watermark_is_stale_late_within_the_bound_is_not():
    clocks = PartitionClocks(EventTimeSettings(max_late_days=30))
    clocks.check(("tx", 0), T2018 + 40 * DAY_US, WALL)
    assert reason(clocks, ("tx", 0), T2018 + 11 * DAY_US) is None  # 29 days late
    assert reason(clocks, ("tx", 0), T2018 + 9 * DAY_US) == STALE  # 31 days late
    assert reason(clocks, ("tx", 0), 365 * DAY_US) == STALE  # 1971
    assert clocks.watermark[("tx", 0)] == T2018 + 40 * DAY_US


def test_earliest_is_an_absolute_floor_even_for_a_first_event():
    clocks = PartitionClocks(EventTimeSettings(earliest=datetime(2000, 1, 1)))
    assert reason(clocks, ("tx", 0), 365 * DAY_US) == STALE
    assert reason(clocks, ("tx", 0), T2018) is None


def test_a_run_of_events_past_the_bound_is_a_clock_jump():
    # a wrong first event (1971) would otherwise make every later one look far ahead
    clocks = PartitionClocks(EventTimeSettings(jump_after=3))
    clocks.check(("tx", 0), 365 * DAY_US, WALL)
    assert reason(clocks, ("tx", 0), T2018) == FUTURE
    assert reason(clocks, ("tx", 0), T2018 + 1) == FUTURE
    assert reason(clocks, ("tx", 0), T2018 + 2) is None
    assert clocks.watermark[("tx", 0)] == T2018 + 2 and clocks.jumps == 1
    # an accepted event in between breaks the run
    clocks.check(("tx", 1), T2018, WALL)
    assert reason(clocks, ("tx", 1), T2018 + 5 * DAY_US) == FUTURE
    assert reason(clocks, ("tx", 1), T2018 + 1) is None
    assert reason(clocks, ("tx", 1), T2018 + 5 * DAY_US) == FUTURE
    assert reason(clocks, ("tx", 1), T2018 + 5 * DAY_US) == FUTURE


def test_bounds_switch_off_with_null():
    clocks = PartitionClocks(EventTimeSettings(max_ahead_s=None, max_ahead_of_watermark_s=None, max_late_days=None))
    clocks.check(("tx", 0), T2018, WALL)
    assert reason(clocks, ("tx", 0), WALL_US + 1000 * DAY_US) is None
    assert reason(clocks, ("tx", 0), 0) is None


def test_state_round_trip_and_fork_are_independent():
    clocks = PartitionClocks(EventTimeSettings(jump_after=5))
    clocks.check(("transactions", 0), T2018, WALL)
    clocks.check(("labels", 3), T2018 + DAY_US, WALL)
    reason(clocks, ("transactions", 0), T2018 + 9 * DAY_US)
    copy = PartitionClocks(EventTimeSettings(jump_after=5)).load_state_dict(clocks.state_dict())
    assert (copy.watermark, copy.moved_at, copy.ahead_run) == (clocks.watermark, clocks.moved_at, clocks.ahead_run)
    fork = clocks.fork()
    fork.check(("transactions", 0), T2018 + HOUR_US, WALL)
    assert clocks.watermark[("transactions", 0)] == T2018


def test_the_reasons_are_preinitialised_metric_labels():
    assert set(REASONS) <= set(DEFAULT_INVALID_REASONS)


def test_bad_config_names_the_key():
    from fraudstream.errors import ConfigInvalid

    with pytest.raises(ConfigInvalid, match="event_time.max_ahead_s"):
        load_settings(event_time={"max_ahead_s": -1})


# -- PendingStore per partition -----------------------------------------------------------


def _rows(n):
    return np.zeros((n, 2), np.float32)


def _txs(ids, times):
    return [Transaction(i, int(t * 1e6), "c", "m", 1.0) for i, t in zip(ids, times)]


def _add(store, ids, times, partition):
    times = np.asarray(times, np.float64)
    store.add_many(ids, _rows(len(ids)), np.zeros(len(ids)), times, _txs(ids, times), partitions=[partition] * len(ids))


def test_a_partition_far_ahead_does_not_expire_the_others():
    store = PendingStore(2, capacity=100, ttl_seconds=10)
    _add(store, ["a0", "a1"], [0.0, 5.0], partition=0)
    _add(store, ["b0", "b1"], [1.0, 2.0], partition=1)
    _add(store, ["a2"], [1_000.0], partition=0)  # partition 0 jumps ahead
    assert store.expire() == 2 and {"b0", "b1", "a2"} == set(store.slot_of)
    _add(store, ["b2"], [11.5], partition=1)  # partition 1's own clock moves past b0 by the TTL
    assert store.expire() == 1 and "b0" not in store and "b1" in store
    assert store.clocks == {0: 1_000.0, 1: 11.5} and store.now == 1_000.0


def test_a_partition_that_comes_back_far_behind_keeps_its_rows():
    store = PendingStore(2, capacity=100, ttl_seconds=10)
    _add(store, ["a0"], [1_000.0], partition=0)
    _add(store, ["b0", "b1"], [3.0, 4.0], partition=1)  # read long after partition 0
    assert store.expire() == 0 and len(store) == 3


def test_state_keeps_partitions_and_clocks():
    store = PendingStore(2, capacity=100, ttl_seconds=10)
    _add(store, ["a0"], [5.0], partition=0)
    _add(store, ["b0"], [3.0], partition=1)
    store.pop_many(["a0"], [1])  # partition 0's clock outlives its rows
    again = PendingStore(2, capacity=100, ttl_seconds=10)
    again.load_state_dict(PendingStore.to_columns(store.snapshot()))
    assert again.clocks == {0: 5.0, 1: 3.0} and again.partition[again.slot_of["b0"]] == 1
    _add(again, ["a1"], [20.0], partition=0)
    assert again.expire() == 0  # b0 waits for partition 1's clock


def test_a_schema_1_state_loads_and_follows_the_newest_clock():
    store = PendingStore(2, capacity=100, ttl_seconds=10)
    _add(store, ["old"], [3.0], partition=0)
    state = PendingStore.to_columns(store.snapshot())
    for k in ("partition", "clocks"):
        del state[k]
    state["schema_version"] = 1
    again = PendingStore(2, capacity=100, ttl_seconds=10)
    again.load_state_dict(state)
    assert again.partition[again.slot_of["old"]] == ANY_PARTITION and again.now == 3.0
    _add(again, ["new"], [14.0], partition=5)
    assert again.expire() == 1 and "old" not in again


def test_a_full_store_drops_the_oldest_of_any_partition():
    store = PendingStore(2, capacity=3, ttl_seconds=1e9)
    _add(store, ["a0", "a1"], [5.0, 6.0], partition=0)
    _add(store, ["b0"], [1.0], partition=1)
    _add(store, ["a2"], [7.0], partition=0)
    assert set(store.slot_of) == {"a0", "a1", "a2"} and store.evicted == 1


# -- labels and tombstones ----------------------------------------------------------------


def test_label_times_follow_the_transaction_rules():
    features = FeaturePipeline(load_settings().features)
    with pytest.raises(EventInvalid) as err:
        parse_label({"transaction_id": "t", "label": 1, "timestamp": 1e300}, features)
    assert (err.value.reason, err.value.field) == ("bad_timestamp", "timestamp")
    assert parse_label({"transaction_id": "t", "label": 0, "timestamp": "1970-01-01T00:00:02Z"}, features)[2] == 2.0
    assert np.isnan(parse_label({"transaction_id": "t", "label": 0}, features)[2])
    ms = FeaturePipeline(load_settings(features={"epoch_unit": "ms"}).features)
    assert parse_label({"transaction_id": "t", "label": 0, "timestamp": 2500}, ms)[2] == 2.5


def test_a_tombstone_is_dead_lettered_as_null_not_as_the_text_null():
    error = EventInvalid("empty", "record has no value")
    tomb = dlq_record(Incoming(TX, None, "tx", 1, 7, b"k"), error)
    assert tomb["value_b64"] is None and tomb["value_null"] is True
    text = dlq_record(Incoming(TX, b"null", "tx", 1, 8, b"k"), EventInvalid("not_object", "JSON NoneType"))
    assert base64.b64decode(text["value_b64"]) == b"null" and text["value_null"] is False


# -- the pipeline: one far-future and one far-past event in a labelled stream -------------


def _stream():
    sim = simulate(SimulatorSettings(customers=40, terminals=80), 12, 4)
    return list(merged_events(sim, inline_labels=False, label_events=True))


def _run(batches, settings):
    pipe = Engine.create(settings)
    dlq, joined = [], []
    for events in batches:
        out = pipe.process([Incoming(TX if kind == "transaction" else LABEL, e) for kind, e in events], received_at=0.0)
        dlq += out.dlq
        if out.joined is not None:
            joined += out.joined.ids
    return pipe, dlq, joined


def test_a_far_future_and_a_far_past_event_change_nothing_but_the_dlq():
    # a TTL shorter than the 7-day label delay of some rows, so the control expires rows too
    settings = load_settings(training={"pending_ttl_days": 6.0, "enabled": False})
    events = _stream()
    batches = [events[i:i + 200] for i in range(0, len(events), 200)]
    control, control_dlq, control_joined = _run(batches, settings)
    assert control.pending.expired > 0 and not control_dlq and control_joined
    bad = [("transaction", {"transaction_id": f"bad-{year}", "timestamp": f"{year}-01-01T00:00:00Z",
                            "customer_id": "c-bad", "terminal_id": "t-bad", "amount": 5.0}) for year in (2199, 1971)]
    label = ("label", {"transaction_id": "late-label", "label": 1, "timestamp": 1e300})
    middle = batches[len(batches) // 2]
    # in the same batches as the valid events, so that expiry runs at the same points
    batches[len(batches) // 2] = middle[:50] + [bad[0]] + middle[50:100] + [bad[1], label] + middle[100:]
    pipe, dlq, joined = _run(batches, settings)
    assert [(d["reason"], d["field"]) for d in dlq] == [
        ("future_timestamp", "timestamp"), ("stale_timestamp", "timestamp"), ("bad_timestamp", "timestamp")]
    assert pipe.pending.expired == control.pending.expired
    assert joined == control_joined
    assert pipe.features.watermark_us == control.features.watermark_us


# -- the HTTP API applies the same checks ---------------------------------------------------


def _client(pipeline):
    from fastapi.testclient import TestClient
    from prometheus_client import CollectorRegistry

    from fraudstream.daemon.service import ScoringService
    from fraudstream.monitoring.api import add_scoring_routes
    from fraudstream.monitoring.metrics import Metrics
    from fraudstream.monitoring.server import create_app

    app = create_app(Metrics(CollectorRegistry()))
    add_scoring_routes(app, ScoringService(pipeline))
    return TestClient(app)


def _tx(tx_id, when):
    return {"transaction_id": tx_id, "timestamp": when, "customer_id": "c1", "terminal_id": "m1", "amount": 5.0}


def test_the_api_refuses_times_the_stream_would_dead_letter():
    pipe = Engine.create(load_settings())
    client = _client(pipe)
    assert client.post("/v1/score", json=_tx("t1", "2026-04-01T08:00:00Z")).status_code == 200
    late = client.post("/v1/labels", json={"transaction_id": "t1", "label": 1, "timestamp": 1e300})
    assert late.status_code == 422 and late.json()["detail"][0]["type"] == "bad_timestamp"
    # checked in order: the second is 35 hours past the watermark, but 23 past the first
    many = client.post("/v1/score", json=[_tx("t2", "2026-04-01T20:00:00Z"), _tx("t3", "2026-04-02T19:00:00Z")])
    assert many.status_code == 200, many.text
    assert pipe.clocks.watermark[("tx", -1)] == round(datetime(2026, 4, 2, 19, tzinfo=timezone.utc).timestamp() * 1e6)
    stale = client.post("/v1/score", json=[_tx("t5", "2026-04-02T19:30:00Z"), _tx("t6", "2026-02-01T00:00:00Z")])
    assert stale.status_code == 422, stale.text
    assert (stale.json()["detail"][0]["type"], stale.json()["detail"][0]["loc"]) == ("stale_timestamp", ["body", 1, "timestamp"])
    assert "t5" not in pipe.pending  # the request is taken whole or not at all
    future = client.post("/v1/score", json=_tx("t4", "2199-01-01T00:00:00Z"))
    assert future.status_code == 422 and future.json()["detail"][0]["type"] == "future_timestamp"
    label = client.post("/v1/labels", json={"transaction_id": "t1", "label": 1, "timestamp": "2026-04-02T00:00:00Z"})
    assert label.status_code == 200 and label.json()["joined"] == 1
