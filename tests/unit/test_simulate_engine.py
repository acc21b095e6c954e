"""The simulator draws the handbook's world and fraud scenarios, deterministically.

Small populations keep these fast; one medium run (the default population for 60 days)
checks the fraud rate the handbook reports.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudstream.config.simulate import DriftChange, FraudPattern, SimulatorSettings
from fraudstream.simulate import (
    SCENARIO_AMOUNT,
    SCENARIO_CUSTOMER,
    SCENARIO_NONE,
    SCENARIO_TERMINAL,
    daily_schedule,
    simulate,
)

DAY = 86_400
SMALL = SimulatorSettings(customers=400, terminals=800)


def with_drift(settings: SimulatorSettings, *changes: DriftChange) -> SimulatorSettings:
    return SimulatorSettings.model_validate(
        settings.model_dump() | {"drift": [c.model_dump() for c in changes]}
    )


def customer_window(tx: pd.DataFrame, compromise) -> np.ndarray:
    """Rows of the compromised customer inside the compromise's days."""
    days = tx["day"].between(compromise.day, compromise.until_day - 1)
    return ((tx["customer_id"] == compromise.id) & days).to_numpy()


@pytest.fixture(scope="module")
def sim():
    return simulate(SMALL, days=30, seed=11)


@pytest.fixture(scope="module")
def tx_with_profiles(sim):
    return sim.transactions.merge(sim.customers, on="customer_id").merge(
        sim.terminals, on="terminal_id", suffixes=("_c", "_t")
    )


def test_same_seed_same_run_and_other_seed_other_run(sim):
    again = simulate(SMALL, days=30, seed=11)
    pd.testing.assert_frame_equal(sim.transactions, again.transactions)
    pd.testing.assert_frame_equal(sim.labels, again.labels)
    pd.testing.assert_frame_equal(sim.compromises, again.compromises)
    other = simulate(SMALL, days=30, seed=12)
    assert not np.array_equal(
        other.transactions["amount"].to_numpy()[:100], sim.transactions["amount"].to_numpy()[:100]
    )


def test_a_shorter_run_is_a_prefix_of_a_longer_one(sim):
    short = simulate(SMALL, days=12, seed=11)
    head = sim.transactions[sim.transactions["day"] < 12].reset_index(drop=True)
    pd.testing.assert_frame_equal(short.transactions, head)


def test_profiles_stay_within_the_handbook_bounds(sim):
    c = sim.customers
    assert len(c) == 400 and len(sim.terminals) == 800
    assert c["mean_amount"].between(5, 100).all()
    np.testing.assert_allclose(c["std_amount"], c["mean_amount"] / 2)
    assert c["mean_tx_per_day"].between(0, 4).all()
    for frame in (c, sim.terminals):
        assert frame["x"].between(0, 100).all() and frame["y"].between(0, 100).all()
    assert c["customer_id"].is_unique and sim.terminals["terminal_id"].is_unique


def test_reachable_terminals_are_exactly_those_within_radius(sim):
    c, t = sim.customers, sim.terminals
    d2 = (c["x"].to_numpy()[:, None] - t["x"].to_numpy()) ** 2 + (
        c["y"].to_numpy()[:, None] - t["y"].to_numpy()
    ) ** 2
    np.testing.assert_array_equal(c["n_terminals"].to_numpy(), (d2 < 25.0).sum(axis=1))


def test_every_transaction_uses_a_terminal_within_radius(tx_with_profiles):
    tx = tx_with_profiles
    dist = np.hypot(tx["x_c"] - tx["x_t"], tx["y_c"] - tx["y_t"])
    assert (dist < 5.0).all()


def test_customers_without_terminals_make_no_transactions(sim):
    stranded = set(sim.customers.loc[sim.customers["n_terminals"] == 0, "customer_id"])
    assert stranded, "the small map should leave some customers without a terminal"
    assert not stranded & set(sim.transactions["customer_id"])


def test_transaction_counts_follow_the_customer_rates(sim):
    per_customer = sim.transactions.groupby("customer_id").size()
    rates = sim.customers.set_index("customer_id")["mean_tx_per_day"]
    active = rates[sim.customers.set_index("customer_id")["n_terminals"] > 0]
    observed = per_customer.reindex(active.index, fill_value=0) / 30
    # Poisson counts, minus the ~3% of times drawn outside the day: close to the mean rate.
    assert np.corrcoef(observed, active)[0, 1] > 0.9
    assert 0.9 < observed.sum() / active.sum() < 1.0


def test_time_of_day_is_within_the_day_and_centred_on_noon(sim):
    tx = sim.transactions
    start = pd.Timestamp("2026-04-01", tz="UTC")
    seconds = (tx["timestamp"] - start).dt.total_seconds().to_numpy()
    of_day = seconds - tx["day"].to_numpy() * DAY
    assert ((of_day >= 0) & (of_day < DAY)).all()
    assert abs(of_day.mean() - 43_200) < 1_500
    assert tx["timestamp"].is_monotonic_increasing
    assert tx["transaction_id"].is_unique


def test_start_date_moves_every_timestamp():
    later = SimulatorSettings(customers=50, terminals=100, start_date="2025-12-30")
    tx = simulate(later, days=4, seed=1).transactions
    assert tx["timestamp"].min() >= pd.Timestamp("2025-12-30", tz="UTC")
    assert tx["timestamp"].max() < pd.Timestamp("2026-01-03", tz="UTC")


def test_amounts_are_non_negative_with_cents(sim):
    amount = sim.transactions["amount"].to_numpy()
    assert (amount >= 0).all()
    np.testing.assert_allclose(amount * 100, np.round(amount * 100), atol=1e-6)


def test_labels_match_scenarios_and_amount_rule(sim):
    tx = sim.transactions
    assert ((tx["label"] == 1) == (tx["scenario"] != SCENARIO_NONE)).all()
    assert (tx.loc[tx["scenario"] == SCENARIO_AMOUNT, "amount"] > 220).all()
    # Every amount above the threshold is fraud (scenario 1 unless a later one took it).
    assert (tx.loc[tx["amount"] > 220, "label"] == 1).all()
    assert set(tx["scenario"].unique()) == {0, 1, 2, 3}


def test_compromised_terminals_make_every_transaction_in_window_fraud(sim):
    tx = sim.transactions
    terminals = sim.compromises[sim.compromises["kind"] == "terminal"]
    assert (terminals.groupby("day").size() == 2).all() and len(terminals) == 60
    assert ((terminals["until_day"] - terminals["day"]) == 28).all()
    covered = np.zeros(len(tx), dtype=bool)
    for row in terminals.itertuples():
        window = (tx["terminal_id"] == row.id) & tx["day"].between(row.day, row.until_day - 1)
        assert (tx.loc[window, "label"] == 1).all()
        assert tx.loc[window, "scenario"].isin([SCENARIO_TERMINAL, SCENARIO_CUSTOMER]).all()
        covered |= window.to_numpy()
    assert covered.sum() > 0
    # ... and scenario 2 is only ever set inside such a window.
    assert not ((tx["scenario"] == SCENARIO_TERMINAL).to_numpy() & ~covered).any()


def test_customer_frauds_lie_in_compromise_windows_at_about_a_third():
    settings = SimulatorSettings(customers=1_500, terminals=3_000)
    sim = simulate(settings, days=40, seed=5)
    tx = sim.transactions
    customers = sim.compromises[sim.compromises["kind"] == "customer"]
    assert (customers.groupby("day").size() == 3).all()
    in_window = np.zeros(len(tx), dtype=bool)
    for row in customers.itertuples():
        in_window |= customer_window(tx, row)
    scen3 = (tx["scenario"] == SCENARIO_CUSTOMER).to_numpy()
    assert not (scen3 & ~in_window).any()
    share = scen3[in_window].mean()
    assert 0.28 < share < 0.42, share


def test_customer_fraud_amounts_are_multiplied_exactly_once():
    plain = with_drift(SMALL, DriftChange(day=0, customer_fraud_amount_multiplier=1.0))
    base = simulate(SMALL, days=30, seed=11).transactions
    unmultiplied = simulate(plain, days=30, seed=11).transactions
    scen3 = base["scenario"] == SCENARIO_CUSTOMER
    assert scen3.sum() > 20
    # The picks do not depend on the multiplier, so the same rows are scenario 3 in both.
    assert (unmultiplied["scenario"] == SCENARIO_CUSTOMER).equals(scen3)
    np.testing.assert_allclose(
        base.loc[scen3, "amount"], np.round(unmultiplied.loc[scen3, "amount"] * 5, 2), atol=1e-9
    )
    np.testing.assert_array_equal(base.loc[~scen3, "amount"], unmultiplied.loc[~scen3, "amount"])


def test_schedule_applies_changes_in_day_order_later_wins():
    settings = SimulatorSettings(
        drift=(
            DriftChange(day=5, compromised_terminals_per_day=7),
            DriftChange(day=2, compromised_terminals_per_day=4, customer_fraud_share=0.5),
            DriftChange(day=8, preset="stealth", customer_fraud_share=0.9),
        )
    )
    s = daily_schedule(settings, 10)
    assert s["compromised_terminals_per_day"].tolist() == [2, 2, 4, 4, 4, 7, 7, 7, 7, 7]
    np.testing.assert_allclose(s["customer_fraud_share"][:2], 1 / 3)
    np.testing.assert_allclose(s["customer_fraud_share"][2:8], 0.5)
    np.testing.assert_allclose(s["customer_fraud_share"][8:], 0.9)  # explicit beats preset
    assert s["customer_fraud_amount_multiplier"].tolist() == [5.0] * 8 + [1.0] * 2
    assert s["spending_multiplier"].tolist() == [1.0] * 10


def test_drift_leaves_everything_before_its_day_unchanged():
    drifted = with_drift(
        SMALL,
        DriftChange(day=15, preset="stealth", compromised_terminals_per_day=5,
                    terminal_compromise_days=7, spending_multiplier=1.5),
    )
    base = simulate(SMALL, days=30, seed=3)
    after = simulate(drifted, days=30, seed=3)
    before = base.transactions["day"] < 15
    pd.testing.assert_frame_equal(base.transactions[before], after.transactions[before])
    assert not base.transactions[~before].equals(after.transactions[~before])


def test_stealth_drift_makes_customer_fraud_look_ordinary_from_its_day():
    """A rule learnt before the change ("much more than this customer spends") stops working."""
    settings = SimulatorSettings(customers=1_500, terminals=3_000)
    sim = simulate(with_drift(settings, DriftChange(day=20, preset="stealth")), days=40, seed=2)
    tx = sim.transactions.merge(sim.customers[["customer_id", "mean_amount"]], on="customer_id")
    flagged = tx["amount"] > 3 * tx["mean_amount"]
    scen3 = tx["scenario"] == SCENARIO_CUSTOMER
    early, late = tx["day"] < 20, tx["day"] >= 20
    recall_before = flagged[scen3 & early].mean()
    recall_after = flagged[scen3 & late].mean()
    assert recall_before > 0.6
    assert recall_after < 0.05
    # ... while those customers' fraud share rises to the preset's 0.8 (from a third).
    in_window = np.zeros(len(tx), dtype=bool)
    for row in sim.compromises[sim.compromises["kind"] == "customer"].itertuples():
        in_window |= customer_window(tx, row)
    late_share = scen3.to_numpy()[in_window & late.to_numpy()].mean()
    early_share = scen3.to_numpy()[in_window & early.to_numpy()].mean()
    assert early_share < 0.45 and late_share > 0.7


def test_drift_of_compromise_counts_and_durations_follows_the_compromise_day():
    drifted = with_drift(
        SMALL,
        DriftChange(day=10, compromised_terminals_per_day=5, terminal_compromise_days=7,
                    compromised_customers_per_day=0),
    )
    comp = simulate(drifted, days=20, seed=4).compromises
    terminals = comp[comp["kind"] == "terminal"]
    per_day = terminals.groupby("day").size()
    assert (per_day.loc[:9] == 2).all() and (per_day.loc[10:] == 5).all()
    length = terminals["until_day"] - terminals["day"]
    assert (length[terminals["day"] < 10] == 28).all() and (length[terminals["day"] >= 10] == 7).all()
    assert comp.loc[comp["kind"] == "customer", "day"].max() == 9


def test_spending_shift_scales_amounts_from_its_day():
    shifted = with_drift(SMALL, DriftChange(day=10, spending_multiplier=1.5))
    base = simulate(SMALL, days=20, seed=8).transactions
    after = simulate(shifted, days=20, seed=8).transactions
    late = base["day"] >= 10
    ordinary = late & (base["scenario"] != SCENARIO_CUSTOMER) & (after["scenario"] != SCENARIO_CUSTOMER)
    # Both rounded to cents: round(1.5 r) and 1.5 round(r) differ by at most 0.5 + 0.75 cent.
    np.testing.assert_allclose(after.loc[ordinary, "amount"], 1.5 * base.loc[ordinary, "amount"], atol=0.0126)
    np.testing.assert_array_equal(after.loc[~late, "amount"], base.loc[~late, "amount"])
    assert (after.loc[after["amount"] > 220, "label"] == 1).all()


def test_amount_threshold_drift_moves_scenario_one():
    lower = with_drift(SMALL, DriftChange(day=5, amount_threshold=150.0))
    tx = simulate(lower, days=10, seed=6).transactions
    late, early = tx["day"] >= 5, tx["day"] < 5
    assert (tx.loc[late & (tx["amount"] > 150), "label"] == 1).all()
    assert (tx.loc[early & (tx["scenario"] == SCENARIO_AMOUNT), "amount"] > 220).all()
    assert (tx.loc[late & (tx["scenario"] == SCENARIO_AMOUNT), "amount"] <= 220).any()


def test_fixed_label_delay_is_exact_and_labels_match(sim):
    tx = sim.transactions.iloc[sim.label_tx_index].reset_index(drop=True)
    labels = sim.labels
    assert (labels["transaction_id"] == tx["transaction_id"]).all()
    assert (labels["label"] == tx["label"]).all() and (labels["scenario"] == tx["scenario"]).all()
    assert ((labels["timestamp"] - tx["timestamp"]) == pd.Timedelta(days=7)).all()
    assert labels["timestamp"].is_monotonic_increasing
    assert set(labels["transaction_id"]) == set(sim.transactions["transaction_id"])


@pytest.mark.parametrize(
    ("delay", "low", "high", "mean"),
    [
        ("uniform(1d, 3d)", 1.0, 3.0, 2.0),
        ("exponential(2d)", 0.0, np.inf, 2.0),
        ("36h", 1.5, 1.5, 1.5),
    ],
)
def test_random_label_delays_follow_their_distribution(delay, low, high, mean):
    settings = SimulatorSettings(customers=400, terminals=800, label_delay=delay)
    sim = simulate(settings, days=15, seed=9)
    tx = sim.transactions.iloc[sim.label_tx_index].reset_index(drop=True)
    days = ((sim.labels["timestamp"] - tx["timestamp"]).dt.total_seconds() / DAY).to_numpy()
    assert days.min() >= low - 1e-9 and days.max() <= high + 1e-9
    assert abs(days.mean() - mean) < 0.1 * mean
    assert sim.labels["timestamp"].is_monotonic_increasing
    if high > low:
        assert days.std() > 0.2


def test_fraud_rate_at_default_size_is_the_handbooks():
    sim = simulate(SimulatorSettings(), days=60, seed=0)
    summary = sim.summary()
    # The handbook reports ~0.84% over 183 days; 60 days sit a little lower because the
    # 28-day terminal windows are still filling up during the first four weeks.
    assert 0.006 < summary["fraud_rate"] < 0.010, summary
    assert 8_000 < summary["transactions"] / 60 < 11_000
    by = summary["by_scenario"]
    assert by[SCENARIO_TERMINAL] > by[SCENARIO_CUSTOMER] > by[SCENARIO_AMOUNT] > 0


def test_zero_compromises_leave_only_the_amount_rule():
    calm = SimulatorSettings(
        customers=200, terminals=400,
        fraud=FraudPattern(compromised_terminals_per_day=0, compromised_customers_per_day=0),
    )
    sim = simulate(calm, days=10, seed=1)
    assert set(sim.transactions["scenario"].unique()) <= {SCENARIO_NONE, SCENARIO_AMOUNT}
    assert sim.compromises.empty
