"""Prequential metrics: window and per-day figures, card precision exclusion, state."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fraudstream.models.evaluation import average_precision, roc_auc
from fraudstream.monitoring.exceptions import MonitoringStateInvalid
from fraudstream.monitoring.prequential import Prequential

DAY = 86_400.0
T0 = 1_775_001_600.0  # 2026-04-01T00:00:00Z


def stream(n: int, seed: int = 0, days: int = 3):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.1).astype(int)
    scores = np.clip(0.15 + 0.5 * labels + rng.normal(0, 0.2, n), 0, 1)
    customers = np.array([f"c{i}" for i in rng.integers(0, 300, n)], dtype=object)
    times = T0 + np.sort(rng.uniform(0, days * DAY, n))
    return scores, labels, customers, times


def to_json_and_back(state):
    """What a checkpoint writer may do: arrays as lists, through JSON text."""
    def plain(x):
        if isinstance(x, np.ndarray):
            return x.tolist()
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, list):
            return [plain(v) for v in x]
        return x

    return json.loads(json.dumps(plain(state)))


def test_window_metrics_match_the_last_n_rows_across_wraparound():
    s, y, c, t = stream(2_500)
    p = Prequential(window=1_000, threshold=0.5)
    for start in range(0, 2_500, 333):  # uneven batches wrap the ring several times
        sl = slice(start, start + 333)
        p.update_many(s[sl], y[sl], c[sl], t[sl])
    snap = p.snapshot()
    last_s, last_y = s[-1_000:], y[-1_000:]
    assert snap["rows"] == 1_000
    assert snap["roc_auc"] == pytest.approx(roc_auc(last_y, last_s))
    assert snap["average_precision"] == pytest.approx(average_precision(last_y, last_s))
    clipped = np.clip(last_s, 1e-7, 1 - 1e-7)
    expected_loss = -np.mean(last_y * np.log(clipped) + (1 - last_y) * np.log(1 - clipped))
    assert snap["log_loss"] == pytest.approx(expected_loss)
    assert snap["fraud_rate"] == pytest.approx(last_y.mean())
    assert snap["mean_score"] == pytest.approx(last_s.mean())
    assert snap["alert_rate"] == pytest.approx((last_s >= 0.5).mean())
    assert p.rows_seen == 2_500


def test_a_batch_larger_than_the_window_keeps_its_newest_rows():
    s, y, c, t = stream(300)
    p = Prequential(window=100)
    p.update_many(s, y, c, t)
    assert p.snapshot()["mean_score"] == pytest.approx(s[-100:].mean())


def test_undefined_metrics_are_none_not_nan():
    p = Prequential(window=100)
    empty = p.snapshot()
    assert empty["rows"] == 0
    assert all(empty[k] is None for k in ("roc_auc", "average_precision", "log_loss",
                                          "card_precision_at_100", "fraud_rate"))
    p.update_many([0.1, 0.3], [0, 0], ["a", "b"], [T0, T0])
    snap = p.snapshot()
    assert snap["roc_auc"] is None and snap["average_precision"] is None
    assert snap["fraud_rate"] == 0.0 and snap["log_loss"] is not None
    json.dumps(snap, allow_nan=False)


def test_card_precision_leaves_out_cards_detected_on_an_earlier_day():
    p = Prequential(window=1_000, days=7)
    # day 1: card A is fraudulent and ranked first -> detected
    p.update_many([0.9, 0.1], [1, 0], ["A", "B"], [T0 + 10, T0 + 20])
    # day 2: A again (highest score, fraud) and C (fraud, lower score)
    p.update_many([0.95, 0.5, 0.2], [1, 1, 0], ["A", "C", "D"], [T0 + DAY + 5] * 3)
    daily = p.daily()
    assert [d["day"] for d in daily] == ["2026-04-01", "2026-04-02"]
    assert daily[0]["card_precision_at_100"] == pytest.approx(1 / 100)
    # A is left out on day 2, so only C counts (2/100 if A were counted again)
    assert daily[1]["card_precision_at_100"] == pytest.approx(1 / 100)
    assert p.snapshot()["card_precision_at_100"] == pytest.approx(1 / 100)


def test_card_precision_uses_each_customers_highest_score_and_label():
    p = Prequential(window=1_000)
    # 150 customers; the 100 with highest max score include all 20 fraud cards
    rng = np.random.default_rng(3)
    names = [f"k{i}" for i in range(150)]
    fraud = set(names[:20])
    rows_c, rows_s, rows_y = [], [], []
    for i, name in enumerate(names):
        for _ in range(3):  # three transactions each; one carries the card's high score
            rows_c.append(name)
            rows_s.append(rng.uniform(0, 0.1))
            rows_y.append(0)
        rows_s[-1] = 1.0 - i / 1000  # max score ranks cards by index
        rows_y[-2] = int(name in fraud)  # the fraud label is on another transaction
    p.update_many(rows_s, rows_y, rows_c, [T0] * len(rows_c))
    assert p.daily()[0]["card_precision_at_100"] == pytest.approx(20 / 100)


def test_daily_keeps_only_the_newest_days_and_counts_late_rows():
    p = Prequential(window=1_000, days=2)
    for d in range(4):
        p.update_many([0.2, 0.8], [0, 1], ["a", "b"], [T0 + d * DAY] * 2)
    assert [d["day"] for d in p.daily()] == ["2026-04-03", "2026-04-04"]
    p.update_many([0.3], [0], ["z"], [T0])  # a late label for a day no longer kept
    assert p.rows_too_old == 1
    assert p.snapshot()["rows"] == 9  # the window still counts it


def test_daily_figures_per_day():
    s, y, c, t = stream(3_000, days=3)
    p = Prequential(window=10_000, threshold=0.4)
    p.update_many(s, y, c, t)
    daily = p.daily()
    assert len(daily) == 3
    for i, row in enumerate(daily):
        rows = (t - T0) // DAY == i
        assert row["rows"] == rows.sum()
        assert row["roc_auc"] == pytest.approx(roc_auc(y[rows], s[rows]))
        assert row["alert_rate"] == pytest.approx((s[rows] >= 0.4).mean())


def test_datetime64_event_times_equal_unix_seconds():
    s, y, c, t = stream(500)
    a, b = Prequential(window=1_000), Prequential(window=1_000)
    a.update_many(s, y, c, t)
    b.update_many(s, y, c, (t * 1e9).astype("datetime64[ns]"))
    assert a.daily() == b.daily()


def test_non_finite_scores_are_dropped_and_counted():
    p = Prequential(window=100)
    p.update_many([0.2, math.nan, 0.7], [0, 1, 1], ["a", "b", "c"], [T0] * 3)
    assert p.snapshot()["rows"] == 2
    assert p.rows_dropped == 1


def test_state_round_trip_through_json_continues_identically():
    s, y, c, t = stream(4_000, days=4)
    a = Prequential(window=1_500, threshold=0.5, days=3)
    a.update_many(s[:2_500], y[:2_500], c[:2_500], t[:2_500])
    state = a.state_dict()
    # No object arrays: a checkpoint can store every array with allow_pickle=False.
    arrays = [v for v in state.values() if isinstance(v, np.ndarray)]
    arrays += [v for day in state["per_day"].values() for v in day.values()
               if isinstance(v, np.ndarray)]
    assert arrays and all(arr.dtype != object for arr in arrays)

    b = Prequential(window=1_500, threshold=0.5, days=3)
    b.load_state_dict(to_json_and_back(state))
    assert b.snapshot() == a.snapshot()
    assert b.daily() == a.daily()
    for part in (a, b):
        part.update_many(s[2_500:], y[2_500:], c[2_500:], t[2_500:])
    assert b.snapshot() == a.snapshot()
    assert b.daily() == a.daily()
    assert b.rows_seen == a.rows_seen == 4_000


def test_load_into_a_smaller_window_keeps_the_newest_rows():
    s, y, c, t = stream(1_000)
    a = Prequential(window=1_000)
    a.update_many(s, y, c, t)
    b = Prequential(window=200)
    b.load_state_dict(a.state_dict())
    assert b.snapshot()["mean_score"] == pytest.approx(s[-200:].mean())


def test_state_with_another_schema_or_broken_arrays_is_refused():
    p = Prequential(window=100)
    p.update_many([0.2, 0.8], [0, 1], ["a", "b"], [T0, T0])
    state = p.state_dict()
    with pytest.raises(MonitoringStateInvalid):
        Prequential(window=100).load_state_dict(dict(state, schema_version=99))
    with pytest.raises(MonitoringStateInvalid):
        Prequential(window=100).load_state_dict(dict(state, labels=np.zeros(5)))
    broken_day = {k: dict(v, codes=np.array([0, 7])) for k, v in state["per_day"].items()}
    with pytest.raises(MonitoringStateInvalid):
        Prequential(window=100).load_state_dict(dict(state, per_day=broken_day))


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError):
        Prequential().update_many([0.1, 0.2], [0], ["a", "b"], [T0, T0])
