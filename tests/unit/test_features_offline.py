"""Offline feature path: the handbook's features, window edges, ordering, invalid rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudstream.config.features import EventWindows, FeatureSpec, LabelWindows, RatioFeature
from fraudstream.config.simulate import SimulatorSettings
from fraudstream.errors import EventInvalid
from fraudstream.features import FeaturePipeline
from fraudstream.simulate import simulate


@pytest.fixture(scope="module")
def small_sim():
    return simulate(SimulatorSettings(customers=200, terminals=400), days=45, seed=4).transactions


def handbook_features(tx: pd.DataFrame) -> pd.DataFrame:
    """The handbook's feature code (Le Borgne et al., chapter 3.4), with pandas rolling."""
    df = pd.DataFrame({
        "TX_DATETIME": tx["timestamp"].dt.tz_localize(None),
        "CUSTOMER_ID": tx["customer_id"], "TERMINAL_ID": tx["terminal_id"],
        "TX_AMOUNT": tx["amount"], "TX_FRAUD": tx["label"].astype(int),
    })
    df["TX_DURING_WEEKEND"] = (df.TX_DATETIME.dt.day_of_week >= 5).astype(int)
    df["TX_DURING_NIGHT"] = (df.TX_DATETIME.dt.hour <= 6).astype(int)

    def customer_windows(g: pd.DataFrame) -> pd.DataFrame:
        g = g.sort_values("TX_DATETIME").set_index("TX_DATETIME")
        out = {}
        for w in (1, 7, 30):
            amount = g["TX_AMOUNT"].rolling(f"{w}D")
            out[f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"] = amount.count().to_numpy()
            out[f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"] = (amount.sum() / amount.count()).to_numpy()
        return pd.DataFrame(out, index=g["_row"].to_numpy())

    def terminal_windows(g: pd.DataFrame, delay: int = 7) -> pd.DataFrame:
        g = g.sort_values("TX_DATETIME").set_index("TX_DATETIME")
        fraud_delay = g["TX_FRAUD"].rolling(f"{delay}D").sum()
        nb_delay = g["TX_FRAUD"].rolling(f"{delay}D").count()
        out = {}
        for w in (1, 7, 30):
            fraud_dw = g["TX_FRAUD"].rolling(f"{delay + w}D").sum()
            nb_dw = g["TX_FRAUD"].rolling(f"{delay + w}D").count()
            nb = nb_dw - nb_delay
            risk = ((fraud_dw - fraud_delay) / nb).fillna(0)
            out[f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW"] = nb.to_numpy()
            out[f"TERMINAL_ID_RISK_{w}DAY_WINDOW"] = risk.to_numpy()
        return pd.DataFrame(out, index=g["_row"].to_numpy())

    df["_row"] = np.arange(len(df))
    cust = pd.concat([customer_windows(g) for _, g in df.groupby("CUSTOMER_ID")]).sort_index()
    term = pd.concat([terminal_windows(g) for _, g in df.groupby("TERMINAL_ID")]).sort_index()
    base = df[["TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT"]].reset_index(drop=True)
    return pd.concat([base, cust.reset_index(drop=True), term.reset_index(drop=True)], axis=1)


def test_handbook_features_reproduce_the_handbook(small_sim):
    pipe = FeaturePipeline(FeatureSpec(preset="handbook"))
    ours = pipe.transform_many(small_sim)
    theirs = handbook_features(small_sim)
    assert theirs.shape == ours.shape == (len(small_sim), 15)
    np.testing.assert_allclose(ours, theirs.to_numpy(dtype=float), rtol=0, atol=1e-9)
    assert ours[:, 12].max() > 0  # some terminal fraud rate is non-zero


def test_default_features_add_to_the_handbook_and_the_customers_known_frauds(small_sim):
    """The default preset: the handbook's columns unchanged, and the customer's frauds with
    transaction time in (t - 14d, t - 7d], by the handbook's rolling-window method."""
    pipe = FeaturePipeline()
    ours = pd.DataFrame(pipe.transform_many(small_sim), columns=pipe.feature_names)
    theirs = handbook_features(small_sim)
    hb = FeaturePipeline(FeatureSpec(preset="handbook")).feature_names
    np.testing.assert_allclose(ours[hb].to_numpy(), theirs.to_numpy(dtype=float), rtol=0, atol=1e-9)
    tx = small_sim.assign(_row=np.arange(len(small_sim)), t=small_sim["timestamp"].dt.tz_localize(None))
    known = []
    for _, g in tx.groupby("customer_id"):
        frauds = g.sort_values("t").set_index("t")["label"].astype(float)
        known.append(pd.Series((frauds.rolling("14D").sum() - frauds.rolling("7D").sum()).to_numpy(),
                               index=g.sort_values("t")["_row"].to_numpy()))
    expected = pd.concat(known).sort_index().to_numpy()
    np.testing.assert_array_equal(ours["customer_frauds_7d_delay7d"].to_numpy(), expected)
    assert expected.max() >= 2  # compromised cards are in the sample
    ratio = ours["amount_over_customer_mean_amount_30d"].to_numpy()
    np.testing.assert_allclose(ratio, small_sim["amount"] / ours["customer_mean_amount_30d"], rtol=1e-12)
    np.testing.assert_allclose(ours["log_amount"], np.log1p(small_sim["amount"]), rtol=1e-12)


def test_rows_align_with_unsorted_input(small_sim):
    tx = small_sim.drop_duplicates("timestamp").reset_index(drop=True)  # no ties: order is unique
    pipe = FeaturePipeline(FeatureSpec(preset="extended"))
    sorted_rows = pipe.transform_many(tx)
    perm = np.random.default_rng(0).permutation(len(tx))
    shuffled_rows = pipe.transform_many(tx.iloc[perm])
    assert np.array_equal(shuffled_rows, sorted_rows[perm])
    assert len(tx) == len(small_sim.drop_duplicates("timestamp"))


def frame(rows: list[tuple], label: bool = True) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["timestamp", "customer_id", "terminal_id", "amount", "label"])
    df.insert(0, "transaction_id", [f"t{i}" for i in range(len(df))])
    return df if label else df.drop(columns="label")


def test_event_window_is_half_open_and_includes_the_event():
    spec = FeatureSpec(preset="handbook", stateless=(), windows=(EventWindows(days=(1,), stats=("count", "sum", "mean")),))
    X = FeaturePipeline(spec).transform_many(frame([
        ("2026-04-01T10:00:00Z", "c", "m", 10.0, 0),
        ("2026-04-02T10:00:00Z", "c", "m", 20.0, 0),  # exactly one day later: the first is out
        ("2026-04-02T10:00:00.000001Z", "c", "m", 30.0, 0),
        ("2026-04-02T10:00:00Z", "other", "m", 5.0, 0),
    ]))
    assert X.tolist() == [[1, 10, 10], [1, 20, 20], [2, 50, 25], [1, 5, 5]]


def test_equal_times_keep_table_order():
    spec = FeatureSpec(preset="handbook", stateless=(), windows=(EventWindows(days=(1,), stats=("count",)),))
    X = FeaturePipeline(spec).transform_many(frame([("2026-04-01T10:00:00Z", "c", "m", 1.0, 0)] * 3))
    assert X[:, 0].tolist() == [1, 2, 3]


def test_label_window_edges_and_unknown_labels():
    spec = FeatureSpec(preset="handbook", stateless=(), windows=(
        LabelWindows(days=(1,), delay_days=7, stats=("count", "frauds", "fraud_rate")),))
    X = FeaturePipeline(spec).transform_many(frame([
        ("2026-04-01T00:00:00Z", "c", "m", 1.0, 1),
        ("2026-04-01T12:00:00Z", "c", "m", 1.0, 0),
        ("2026-04-01T18:00:00Z", "c", "m", 1.0, None),   # label never known: not counted
        ("2026-04-08T00:00:00Z", "c", "m", 1.0, 0),      # t - d = 04-01 00:00: first one in
        ("2026-04-09T00:00:00Z", "c", "m", 1.0, 0),      # (03-31, 04-02]... (04-01 00:00, 04-02 00:00]
        ("2026-04-09T00:00:00Z", "c", "other", 1.0, 0),
    ]))
    assert X[3].tolist() == [1, 1, 1.0]
    assert X[4].tolist() == [1, 0, 0.0]  # 04-01 00:00 left; 12:00 in; 18:00 unknown
    assert X[5].tolist() == [0, 0, 0.0]  # rate 0 when the window is empty
    assert X[:3].sum() == 0


def test_no_label_column_gives_empty_label_windows():
    X = FeaturePipeline(FeatureSpec(preset="handbook")).transform_many(
        frame([("2026-04-01T00:00:00Z", "c", "m", 1.0, 1)] * 2, label=False))
    assert X[:, 9:].sum() == 0


def test_stateless_features_and_time_zone():
    spec = FeatureSpec(preset="handbook", stateless=("amount", "log_amount", "weekend", "night", "hour_sin", "hour_cos"),
                       windows=(), ratios=())
    X = FeaturePipeline(spec).transform_many(frame([
        ("2026-04-04T06:59:59Z", "c", "m", 0.0, 0),   # Saturday, still night
        ("2026-04-06T07:00:00Z", "c", "m", np.e - 1, 0),   # Monday 07:00: day
        ("2026-04-05T06:00:00Z", "c", "m", 1.0, 0),   # Sunday 06:00: a quarter of the day
        ("2026-04-06T00:00:00+02:00", "c", "m", 1.0, 0),  # = Sunday 22:00 UTC
    ]))
    assert X[:, 2:4].tolist() == [[1, 1], [0, 0], [1, 1], [1, 0]]
    assert X[1, 1] == pytest.approx(1.0)
    assert X[2, 4] == pytest.approx(1.0) and X[2, 5] == pytest.approx(0.0, abs=1e-12)
    # Paris switches to summer time on 2026-03-29 at 01:00 UTC
    paris = FeatureSpec(preset="handbook", stateless=("night",), windows=(), ratios=(), timezone="Europe/Paris")
    X = FeaturePipeline(paris).transform_many(frame([
        ("2026-03-28T05:30:00Z", "c", "m", 1.0, 0),  # 06:30 CET: night
        ("2026-03-29T05:30:00Z", "c", "m", 1.0, 0),  # 07:30 CEST: day
    ]))
    assert X[:, 0].tolist() == [1, 0]


def test_ratio_feature_and_fill():
    spec = FeatureSpec(preset="handbook", stateless=(), windows=(), ratios=(
        RatioFeature(days=1), RatioFeature(entity="terminal", days=1, stat="sum", fill=-1.0)))
    X = FeaturePipeline(spec).transform_many(frame([
        ("2026-04-01T00:00:00Z", "c", "m", 10.0, 0),
        ("2026-04-01T01:00:00Z", "c", "m", 30.0, 0),
        ("2026-04-01T02:00:00Z", "d", "n", 0.0, 0),
    ]))
    assert X.tolist() == [[1.0, 1.0], [1.5, 0.75], [0.0, -1.0]]


def test_epoch_number_timestamps():
    rows = frame([(1_775_001_600, "c", "m", 1.0, 0), (1_775_001_600.5, "c", "m", 2.0, 0)])
    spec = FeatureSpec(preset="handbook", stateless=("hour_sin",), windows=(EventWindows(days=(1,), stats=("count",)),))
    assert FeaturePipeline(spec).transform_many(rows)[:, 1].tolist() == [1, 2]
    ms = rows.assign(timestamp=[1_775_001_600_000, 1_775_001_600_500])
    spec_ms = spec.model_copy(update={"epoch_unit": "ms"})
    assert np.array_equal(FeaturePipeline(spec_ms).transform_many(ms), FeaturePipeline(spec).transform_many(rows))


@pytest.mark.parametrize("column,value,reason", [
    ("amount", -1.0, "negative_amount"),
    ("amount", np.inf, "not_finite"),
    ("amount", 2e7, "amount_too_large"),
    ("amount", "ten", "wrong_type"),
    ("amount", None, "missing_field"),
    ("timestamp", "yesterday", "bad_timestamp"),
    ("timestamp", None, "missing_field"),
    ("customer_id", "", "missing_field"),
    ("label", 2, "bad_label"),
])
def test_invalid_rows_are_named(column, value, reason):
    df = frame([("2026-04-01T00:00:00Z", "c", "m", 1.0, 0)] * 3)
    df[column] = df[column].astype(object)
    df.loc[1, column] = value
    pipe = FeaturePipeline()
    reasons = pipe.validate_many(df)
    assert reasons.tolist() == ["", f"{reason}:{column}", ""]
    with pytest.raises(EventInvalid) as info:
        pipe.transform_many(df)
    assert info.value.reason == reason and info.value.field == column
    assert "row 1" in info.value.detail


def test_missing_column_is_named():
    with pytest.raises(EventInvalid) as info:
        FeaturePipeline().transform_many(frame([("2026-04-01T00:00:00Z", "c", "m", 1.0, 0)]).drop(columns="terminal_id"))
    assert (info.value.reason, info.value.field) == ("missing_field", "terminal_id")


def test_offline_rows_match_the_event_parser_on_text_rows(small_sim):
    """The same rows as JSON-like text (as read from CSV) give the same features."""
    text = small_sim.assign(timestamp=small_sim["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
    pipe = FeaturePipeline()
    assert np.array_equal(pipe.transform_many(text), pipe.transform_many(small_sim))


def test_label_window_upper_edge_is_exactly_t_minus_delay():
    spec = FeatureSpec(preset="handbook", stateless=(), windows=(LabelWindows(days=(1,), delay_days=7, stats=("count",)),))
    X = FeaturePipeline(spec).transform_many(frame([
        ("2026-04-01T00:00:00Z", "c", "m", 1.0, 1),
        ("2026-04-01T00:00:00.000001Z", "c", "m", 1.0, 1),  # one microsecond too young
        ("2026-04-08T00:00:00Z", "c", "m", 1.0, 0),
    ]))
    assert X[2, 0] == 1


def test_rank_keys_give_the_same_rows_as_direct_keys(small_sim, monkeypatch):
    """Tables whose (entity, time) keys overflow 63 bits use time ranks instead."""
    from fraudstream.features import windows

    pipe = FeaturePipeline(FeatureSpec(preset="extended"))
    direct = pipe.transform_many(small_sim)
    monkeypatch.setattr(windows, "DIRECT_KEY_LIMIT", 0)
    assert np.array_equal(pipe.transform_many(small_sim), direct)


def test_integer_and_float_id_columns_group_like_text(small_sim):
    tx = small_sim.head(3000)
    as_int = tx.assign(customer_id=tx["customer_id"].str[1:].astype(int),
                       terminal_id=tx["terminal_id"].str[1:].astype(float))
    pipe = FeaturePipeline()
    assert np.array_equal(pipe.transform_many(as_int), pipe.transform_many(tx))
