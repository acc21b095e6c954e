"""Metrics against brute-force definitions (no scikit-learn needed)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from fraudstream.models.evaluation import (
    average_precision,
    card_precision_at_k,
    card_precision_per_day,
    day_index,
    roc_auc,
    summarize,
)


def brute_ap(y, s):
    """Sum over distinct thresholds t (descending) of (R(t) - R(previous t)) * P(t)."""
    y = np.asarray(y) > 0.5
    s = np.asarray(s, dtype=float)
    total_pos = y.sum()
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(s.tolist()), reverse=True):
        selected = s >= t
        tp = (y & selected).sum()
        precision = tp / selected.sum()
        recall = tp / total_pos
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    return ap


def brute_auc(y, s):
    """Fraction of (fraud, legit) pairs ranked right; a tie counts one half."""
    y = np.asarray(y) > 0.5
    pos, neg = np.asarray(s)[y], np.asarray(s)[~y]
    total = 0.0
    for p, n in itertools.product(pos, neg):
        total += 1.0 if p > n else 0.5 if p == n else 0.0
    return total / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("levels", [None, 5, 2])
def test_ap_and_auc_match_brute_force(seed, levels):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 120))
    y = (rng.random(n) < 0.3).astype(int)
    y[0], y[1] = 1, 0  # both classes present
    s = rng.random(n)
    if levels is not None:  # heavy ties
        s = np.round(s * levels) / levels
    assert average_precision(y, s) == pytest.approx(brute_ap(y, s), abs=1e-12)
    assert roc_auc(y, s) == pytest.approx(brute_auc(y, s), abs=1e-12)


def test_known_values():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    assert average_precision(y, s) == pytest.approx(0.8333333333333333)
    assert roc_auc(y, s) == pytest.approx(0.75)
    assert average_precision([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2]) == 1.0
    assert roc_auc([1, 0], [0.2, 0.9]) == 0.0
    assert roc_auc([1, 0], [0.5, 0.5]) == 0.5


def test_undefined_cases_are_nan_and_bad_input_raises():
    assert np.isnan(average_precision([0, 0], [0.1, 0.2]))
    assert np.isnan(roc_auc([1, 1], [0.1, 0.2]))
    assert np.isnan(average_precision([], []))
    with pytest.raises(ValueError):
        roc_auc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError):
        average_precision([0, 1, 1], [0.1, 0.2])


def handbook_card_precision(df: pd.DataFrame, k: int) -> tuple[list[float], float]:
    """A direct port of the handbook's pandas implementation (card_precision_top_k)."""
    detected: list = []
    per_day = []
    for day in sorted(df["day"].unique()):
        d = df[df["day"] == day][["score", "customer", "label"]]
        d = d[~d["customer"].isin(detected)]
        g = d.groupby("customer").max()
        # stable sort; ties broken by customer id like card_precision_per_day
        g = g.sort_index().sort_values("score", ascending=False, kind="stable").reset_index()
        top = g.head(k)
        found = list(top[top["label"] == 1]["customer"])
        per_day.append(len(found) / k)
        detected.extend(found)
    return per_day, float(np.mean(per_day))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 3, 10])
def test_card_precision_matches_handbook_port(seed, k):
    rng = np.random.default_rng(seed)
    n = 600
    df = pd.DataFrame(
        {
            "customer": rng.integers(0, 40, n).astype(str),
            "day": rng.integers(0, 6, n),
            "score": np.round(rng.random(n), 2),
        }
    )
    # some customers are compromised for a few days, so removal across days matters
    bad = {str(c) for c in rng.choice(40, 8, replace=False)}
    df["label"] = (df["customer"].isin(bad) & (rng.random(n) < 0.6)).astype(int)
    df["score"] += 0.3 * df["label"]
    expected_days, expected = handbook_card_precision(df, k)
    got = card_precision_per_day(df["label"], df["score"], df["customer"], df["day"], k)
    np.testing.assert_allclose(got.per_day, expected_days)
    assert got.mean == pytest.approx(expected)
    assert card_precision_at_k(df["label"], df["score"], df["customer"], df["day"], k) == pytest.approx(expected)


def test_card_precision_removes_detected_cards_and_divides_by_k():
    # day 0: b is the top card and fraudulent -> detected; day 1: b is gone, c is legit.
    y = [0, 1, 1, 0]
    s = [0.2, 0.9, 0.8, 0.1]
    cust = ["a", "b", "b", "c"]
    days = [0, 0, 1, 1]
    res = card_precision_per_day(y, s, cust, days, k=2)
    np.testing.assert_allclose(res.per_day, [0.5, 0.0])
    np.testing.assert_array_equal(res.compromised_per_day, [1, 0])
    kept = card_precision_per_day(y, s, cust, days, k=2, remove_detected=False)
    np.testing.assert_allclose(kept.per_day, [0.5, 0.5])


def test_day_index_and_summary():
    ts = np.array(["2026-04-01T23:59:59", "2026-04-02T00:00:00"], dtype="datetime64[s]")
    d = day_index(ts)
    assert d[1] - d[0] == 1
    secs = ts.astype(np.int64)
    np.testing.assert_array_equal(day_index(secs), d)
    out = summarize([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.7], ["a", "b", "c", "d"], [0, 0, 1, 1], k=2)
    assert set(out) == {"average_precision", "roc_auc", "card_precision_at_2"}
    assert out["roc_auc"] == 1.0 and out["card_precision_at_2"] == 0.5
