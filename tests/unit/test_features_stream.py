"""Streaming feature path: parity with the offline path, state round trip, label timing.

The parity run replays a simulated stream the way the daemon sees it: wire-format JSON
records parsed one by one, transactions in polled batches, label events joined to the
stored transaction and learned when they arrive (before transactions with an equal time).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudstream.config.features import EventWindows, FeatureSpec, LabelWindows
from fraudstream.config.simulate import SimulatorSettings
from fraudstream.features import FeaturePipeline, Transaction, load_state, save_state
from fraudstream.simulate import merged_events, simulate

DAY = 86_400_000_000
BATCH = 256


@pytest.fixture(scope="module")
def sim():
    s = simulate(SimulatorSettings(customers=1000, terminals=2000), days=60, seed=11)
    assert len(s.transactions) >= 100_000
    return s


def wire_items(parse, records, pending: dict):
    """Parse the wire records as the daemon does: transactions with ``parse``, label events
    joined by id to the stored transaction. Yields Transaction or (Transaction, label)."""
    for kind, event in records:
        if kind == "transaction":
            tx = parse(event)
            pending[tx.transaction_id] = tx
            yield tx
        else:
            yield pending.pop(event["transaction_id"]), event["label"]


def polled(items, size: int):
    """Cut the merged stream into polls; per poll the labels are learned first, then the
    transactions scored as one batch (a daemon polling both topics)."""
    txs, labels = [], []
    for item in items:
        if type(item) is Transaction:
            txs.append(item)
        else:
            labels.append(item)
        if len(txs) + len(labels) >= size:
            yield labels, txs
            txs, labels = [], []
    yield labels, txs


@pytest.fixture(scope="module")
def offline(sim):
    return FeaturePipeline().transform_many(sim.transactions)


@pytest.fixture(scope="module")
def uninterrupted(sim):
    """Exact arrival order: every label is filed just before the next transaction."""
    pipe = FeaturePipeline()
    items = list(wire_items(pipe.parse, merged_events(sim), {}))
    rows = [pipe.replay_many(items[i:i + 5000]) for i in range(0, len(items), 5000)]
    return pipe, np.concatenate(rows)


def test_streaming_rows_equal_offline_rows(sim, offline, uninterrupted):
    pipe, online = uninterrupted
    assert online.shape == offline.shape == (len(sim.transactions), 20)  # the default preset
    diff = np.abs(online - offline)
    worst = np.unravel_index(diff.argmax(), diff.shape)
    assert diff.max() <= 1e-9, (diff.max(), pipe.feature_names[worst[1]], worst[0])
    # the comparison is not vacuous: windows fill up and frauds are seen
    names = pipe.feature_names
    assert offline[:, names.index("customer_count_30d")].max() > 50
    assert offline[:, names.index("terminal_fraud_rate_7d_delay7d")].max() > 0.5
    assert offline[:, names.index("customer_frauds_7d_delay7d")].max() >= 2
    assert pipe.late_events == 0


def test_windows_keep_only_entries_that_can_still_count(sim, uninterrupted):
    pipe, _ = uninterrupted
    tx = sim.transactions
    last_month = tx[tx["timestamp"] > tx["timestamp"].max() - pd.Timedelta(days=30)]
    per_customer = last_month.groupby("customer_id").size()
    (customers,) = pipe._event_states
    assert [st.group.entity for st in pipe._label_states] == ["terminal_id", "customer_id"]
    for labels in pipe._label_states:  # labels older than the longest window plus delay are cut
        for st in labels.entities.values():
            assert len(st.times) == 0 or st.times[-1] > pipe.watermark_us - 38 * DAY
    assert len(customers.entities) <= tx["customer_id"].nunique()
    for key, st in customers.entities.items():
        assert st.clock > pipe.watermark_us - 31 * DAY  # idle ones were dropped
        # live entries (last 30 days) plus expired ones awaiting compaction: at most
        # max(live, 64) of those
        assert len(st.times) <= 2 * per_customer.get(key, 0) + 65


def test_idle_entities_are_dropped_without_changing_rows():
    """Entities active for a few days each, over 120 days: the state holds only the
    recent ones, and the rows still equal the offline rows (dropping is exact)."""
    rng = np.random.default_rng(9)
    rows = []
    for k in range(60):
        start = 2 * k * DAY
        for t in np.sort(rng.integers(start, start + 5 * DAY, 40)):
            rows.append((int(t), f"c{k}", f"m{k % 30}", float(rng.integers(1, 9000)) / 100))
    rows.sort()
    frame = pd.DataFrame(rows, columns=["t", "customer_id", "terminal_id", "amount"])
    frame["transaction_id"] = [f"t{i}" for i in range(len(frame))]
    frame["timestamp"] = pd.to_datetime(frame["t"], unit="us", utc=True)
    frame["label"] = (rng.random(len(frame)) < 0.2).astype(int)
    pipe = FeaturePipeline()
    items = []
    txs = [Transaction(r.transaction_id, r.t, r.customer_id, r.terminal_id, r.amount)
           for r in frame.itertuples()]
    events = sorted([(tx.time_us, 1, i) for i, tx in enumerate(txs)]
                    + [(tx.time_us + 7 * DAY, 0, i) for i, tx in enumerate(txs)])
    for _, kind, i in events:
        items.append(txs[i] if kind else (txs[i], int(frame["label"][i])))
    online = pipe.replay_many(items)
    assert np.array_equal(online, pipe.transform_many(frame))
    held = pipe.n_entities
    # customers last seen more than 30 days (terminals: 37 days) before the end are gone
    assert held["events:customer_id:amount"] <= 17
    assert held["labels:terminal_id:604800000000"] < 30
    # customers' known frauds: a 7-day window 7 days late, so idle after 14 days
    assert held["labels:customer_id:604800000000"] <= 9
    assert pipe.labels_expired == 0


def test_state_round_trip_mid_stream_equals_uninterrupted_run(sim, uninterrupted, tmp_path):
    """Daemon-style polls (labels of a poll learned before its transactions), a save and
    load into a new pipeline half way: the rows equal the uninterrupted exact-order run."""
    _, expected = uninterrupted
    pending: dict = {}
    pipe = FeaturePipeline()
    rows: list[np.ndarray] = []
    saved = False
    for labels, txs in polled(wire_items(pipe.parse, merged_events(sim), pending), 700):
        pipe.learn_labels(labels)
        rows.append(pipe.update_many(txs))
        if not saved and sum(map(len, rows)) >= len(sim.transactions) // 2:
            path = save_state(pipe.state_dict(), tmp_path / "features.npz")
            fresh = FeaturePipeline().load_state_dict(load_state(path))
            assert fresh.n_entities == pipe.n_entities
            assert fresh.watermark_us == pipe.watermark_us
            assert fresh is not pipe
            pipe = fresh  # the old pipeline only keeps parsing, which holds no state
            saved = True
    assert saved
    assert np.array_equal(np.concatenate(rows), expected)


def test_replay_many_equals_alternating_calls(sim):
    pending: dict = {}
    one = FeaturePipeline()
    items = list(wire_items(one.parse, merged_events(sim), pending))[:20_000]
    together = one.replay_many(items)
    two = FeaturePipeline()
    rows, labels, txs = [], [], []
    for item in items:
        if type(item) is Transaction:
            if labels:
                two.learn_labels(labels)
                labels = []
            txs.append(item)
        else:
            if txs:
                rows.append(two.update_many(txs))
                txs = []
            labels.append(item)
    rows.append(two.update_many(txs))
    assert np.array_equal(np.concatenate(rows), together)
    assert two.labels_seen == one.labels_seen > 0


def _tx(i: int, t_us: int, customer: str = "c", terminal: str = "m", amount: float = 10.0) -> Transaction:
    return Transaction(f"t{i}", t_us, customer, terminal, amount)


def test_late_event_is_clamped_to_entity_time_and_counted():
    pipe = FeaturePipeline()
    names = pipe.feature_names
    t0 = 1_775_001_600_000_000  # 2026-04-01T00:00:00Z, a Wednesday
    pipe.update_many([_tx(0, t0 + 10 * DAY, amount=10.0)])
    row = pipe.update_many([_tx(1, t0 + 9 * DAY - 12 * 3_600_000_000, amount=30.0)])[0]
    assert pipe.late_events == 1
    # it joins the windows at the customer's newest time, so the 1-day window holds both
    assert row[names.index("customer_count_1d")] == 2
    assert row[names.index("customer_mean_amount_1d")] == 20.0
    # stateless features keep the event's own time: 2026-04-09T12:00Z, a Thursday noon
    assert row[names.index("night")] == 0 and row[names.index("weekend")] == 0
    # a later event 1 day after the newest sees neither (the late one sits at day 10)
    row = pipe.update_many([_tx(2, t0 + 11 * DAY, amount=5.0)])[0]
    assert row[names.index("customer_count_1d")] == 1


def test_windows_are_warm_a_warm_up_after_the_first_event_they_took(tmp_path):
    pipe = FeaturePipeline()
    t0 = 1_775_001_600_000_000
    assert pipe.warm_from_us is None
    pipe.update_many([_tx(0, t0 + DAY), _tx(1, t0)])  # the earliest of the first call counts
    pipe.update_many([_tx(2, t0 + 2 * DAY)])
    assert pipe.first_event_us == t0
    assert pipe.warm_from_us == t0 + 37 * DAY  # 30-day label window + 7 days of delay
    save_state(pipe.state_dict(), tmp_path / "state.npz")
    assert FeaturePipeline.from_state_dict(load_state(tmp_path / "state.npz")).warm_from_us == t0 + 37 * DAY
    # a state saved before the first event was kept: its windows count as warm
    older = pipe.state_dict()
    del older["first_event_us"]
    assert FeaturePipeline().load_state_dict(older).warm_from_us == t0 + 2 * DAY
    assert FeaturePipeline().load_state_dict(pipe.state_dict(include_windows=False)).warm_from_us is None


def _label_spec() -> FeatureSpec:
    return FeatureSpec(preset="handbook", stateless=(), windows=(
        LabelWindows(entity="terminal", days=(1, 3), delay_days=2, stats=("count", "frauds", "fraud_rate")),
    ))


def test_label_windows_follow_arrival_with_random_delays():
    """Labels arriving early, on time, late or too late, against a brute-force reference."""
    rng = np.random.default_rng(5)
    n = 3000
    t = np.sort(rng.integers(0, 40 * DAY, n))
    t[::97] = t[::97] - t[::97] % DAY  # some exact day boundaries
    t = np.sort(t)
    term = rng.integers(0, 15, n).astype(str)
    y = (rng.random(n) < 0.3).astype(int)
    delay = rng.choice([0, DAY // 2, 2 * DAY, 2 * DAY, 3 * DAY, 7 * DAY], n)
    arrival = t + delay
    pipe = FeaturePipeline(_label_spec())
    txs = [_tx(i, int(t[i]), terminal=term[i]) for i in range(n)]
    # event order: by time; at equal times labels first
    events = sorted([(int(t[i]), 1, i) for i in range(n)] + [(int(arrival[i]), 0, i) for i in range(n)])
    rows = {}
    learned = np.zeros(n, bool)
    expected = {}
    d = 2 * DAY
    for time, kind, i in events:
        if kind == 0:
            pipe.learn_labels([(txs[i], y[i])])
            learned[i] = True
            continue
        rows[i] = pipe.update_many([txs[i]])[0]
        exp = []
        for w in (DAY, 3 * DAY):
            inside = (term == term[i]) & (t > time - d - w) & (t <= time - d) & learned
            cnt, fr = int(inside.sum()), int(y[inside].sum())
            exp += [cnt, fr, fr / cnt if cnt else 0.0]
        expected[i] = exp
    got = np.array([rows[i] for i in range(n)])
    want = np.array([expected[i] for i in range(n)])
    assert np.array_equal(got, want)
    assert pipe.labels_expired > 0  # the 7-day delays partly arrive after the 5-day span


def test_custom_fields_extra_entity_and_timezone_parity():
    """User column names, an extra entity key, every stat kind, a DST zone: same rows."""
    sim = simulate(SimulatorSettings(customers=150, terminals=300, start_date="2026-03-20"), days=20, seed=2)
    tx = sim.transactions.rename(columns={
        "transaction_id": "tid", "timestamp": "ts", "customer_id": "card",
        "terminal_id": "merchant", "amount": "amt", "label": "fraud"})
    tx["device"] = "d" + (tx.index.to_numpy() % 37).astype(str)
    tx["risk"] = (tx.index.to_numpy() % 11) / 3.0
    spec = FeatureSpec.model_validate({
        "fields": {"transaction_id": "tid", "timestamp": "ts", "customer": "card",
                   "terminal": "merchant", "amount": "amt", "label": "fraud"},
        "preset": "extended",
        "timezone": "Europe/Paris",
        "stateless": ["amount", "log_amount", "night", "weekend", "hour_sin", "hour_cos",
                      "weekday_sin", "weekday_cos", "field:risk"],
        "windows": [
            {"kind": "events", "entity": "customer", "days": [1, 7], "stats": ["count", "sum", "mean"]},
            {"kind": "events", "entity": "device", "days": [0.25, 2], "stats": ["count", "mean"], "field": "risk"},
            {"kind": "events", "entity": "terminal", "days": [1], "stats": ["count"]},
            {"kind": "labels", "entity": "customer", "days": [3], "delay_days": 1,
             "stats": ["count", "frauds", "fraud_rate"]},
            {"kind": "labels", "entity": "terminal", "days": [7], "delay_days": 7, "stats": ["fraud_rate"]},
        ],
        "ratios": [{"numerator": "amt", "entity": "card", "field": "amt", "days": 7, "stat": "mean"},
                   {"numerator": "risk", "entity": "device", "field": "risk", "days": 2, "stat": "sum",
                    "fill": -1.0}],
    })
    pipe = FeaturePipeline(spec)
    offline = pipe.transform_many(tx)
    # wire records in the user's names; labels arrive with two delays (1 and 7 days)
    records = []
    for r in tx.itertuples(index=False):
        ts = r.ts.isoformat().replace("+00:00", "Z")
        records.append((r.ts.value // 1000, 1, {"tid": r.tid, "ts": ts, "card": r.card, "merchant": r.merchant,
                                                "amt": r.amt, "device": r.device, "risk": r.risk}))
        for delay in (1, 7):
            records.append((r.ts.value // 1000 + delay * DAY, 0, (r.tid, int(r.fraud), delay)))
    records.sort(key=lambda e: (e[0], e[1]))
    # each label group gets the labels its delay needs: feed both arrivals to both groups
    # would double count, so learn each label once, at the 1-day arrival
    stream_rows = {}
    parsed = {}
    for _, kind, payload in records:
        if kind == 1:
            t = pipe.parse(payload)
            parsed[t.transaction_id] = t
            stream_rows[t.transaction_id] = pipe.update_many([t])[0]
        elif payload[2] == 1:
            pipe.learn_labels([(parsed[payload[0]], payload[1])])
    online = np.array([stream_rows[i] for i in tx["tid"]])
    assert online.shape[1] == pipe.n_features == len(spec.resolved()[0]) + 2 * 3 + 2 * 2 + 1 + 3 + 1 + 2
    assert np.abs(online - offline).max() <= 1e-9
    assert len(set(pipe.n_entities)) == 5
