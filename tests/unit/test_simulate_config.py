"""The simulator section: handbook defaults, label-delay forms, drift changes, bad keys."""

from __future__ import annotations

import pytest

from fraudstream.config import Settings, load_settings
from fraudstream.config.simulate import (
    DriftChange,
    LabelDelay,
    SimulatorSettings,
    parse_duration_days,
)
from fraudstream.errors import ConfigInvalid
from fraudstream.simulate import with_overrides


def test_defaults_are_the_handbooks():
    s = Settings().simulator
    assert (s.customers, s.terminals, s.radius, s.grid_size) == (5_000, 10_000, 5.0, 100.0)
    assert str(s.start_date) == "2026-04-01"
    f = s.fraud
    assert f.amount_threshold == 220.0
    assert (f.compromised_terminals_per_day, f.terminal_compromise_days) == (2, 28)
    assert (f.compromised_customers_per_day, f.customer_compromise_days) == (3, 14)
    assert f.customer_fraud_share == pytest.approx(1 / 3)
    assert f.customer_fraud_amount_multiplier == 5.0
    assert s.label_delay == LabelDelay(distribution="fixed", days=7.0)
    assert s.drift == ()


@pytest.mark.parametrize(
    ("text", "days"),
    [("7d", 7.0), ("36h", 1.5), ("1d12h", 1.5), ("90m", 90 / 1440), ("45s", 45 / 86400),
     ("2.5", 2.5), (3, 3.0)],
)
def test_durations(text, days):
    assert parse_duration_days(text) == pytest.approx(days)


@pytest.mark.parametrize("text", ["soon", "7 days", "d7", "", "-1d"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration_days(text)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("7d", LabelDelay(distribution="fixed", days=7)),
        ("uniform(2d, 10d)", LabelDelay(distribution="uniform", low_days=2, high_days=10)),
        ("exponential(12h)", LabelDelay(distribution="exponential", days=0.5)),
        ({"distribution": "uniform", "low_days": 1, "high_days": 2},
         LabelDelay(distribution="uniform", low_days=1, high_days=2)),
    ],
)
def test_label_delay_forms(raw, expected):
    assert SimulatorSettings(label_delay=raw).label_delay == expected


@pytest.mark.parametrize("raw", ["uniform(3d)", "uniform(5d, 2d)", "gamma(2d)", "exponential(1d, 2d)"])
def test_bad_label_delay_names_the_key(raw):
    with pytest.raises(ConfigInvalid) as info:
        load_settings(None, simulator={"label_delay": raw})
    assert "simulator.label_delay" in str(info.value)


def test_drift_from_yaml_with_a_typo_names_the_key(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("simulator:\n  drift:\n    - day: 30\n      preset: stealth\n"
                    "    - day: 40\n      compromised_terminal_per_day: 4\n")
    with pytest.raises(ConfigInvalid) as info:
        load_settings(path)
    assert "simulator.drift.1.compromised_terminal_per_day" in str(info.value)


def test_drift_preset_and_explicit_fields():
    change = DriftChange(day=30, preset="stealth", customer_fraud_share=0.9)
    assert change.changes() == {"customer_fraud_amount_multiplier": 1.0, "customer_fraud_share": 0.9}
    assert DriftChange(day=1, spending_multiplier=1.2).changes() == {"spending_multiplier": 1.2}
    with pytest.raises(ValueError):
        DriftChange(day=1, customer_fraud_share=1.5)
    with pytest.raises(ValueError):
        DriftChange(day=-1)


def test_environment_overrides_the_simulator(monkeypatch):
    monkeypatch.setenv("FRAUDSTREAM__SIMULATOR__CUSTOMERS", "321")
    # A section-valued key takes JSON (here a JSON string) or nested keys.
    monkeypatch.setenv("FRAUDSTREAM__SIMULATOR__LABEL_DELAY", '"uniform(1d,2d)"')
    s = load_settings(None).simulator
    assert s.customers == 321
    assert (s.label_delay.distribution, s.label_delay.high_days) == ("uniform", 2.0)
    monkeypatch.delenv("FRAUDSTREAM__SIMULATOR__LABEL_DELAY")
    monkeypatch.setenv("FRAUDSTREAM__SIMULATOR__LABEL_DELAY__DISTRIBUTION", "exponential")
    monkeypatch.setenv("FRAUDSTREAM__SIMULATOR__LABEL_DELAY__DAYS", "2")
    assert load_settings(None).simulator.label_delay == LabelDelay(distribution="exponential", days=2)


def test_overrides_keep_unset_values_and_validate():
    base = SimulatorSettings(customers=10, drift=(DriftChange(day=3, spending_multiplier=2.0),))
    out = with_overrides(base, seed=5, customers=None,
                         extra_drift=[DriftChange(day=4, preset="stealth")])
    assert (out.customers, out.seed) == (10, 5)
    assert [c.day for c in out.drift] == [3, 4]
    with pytest.raises(ConfigInvalid) as info:
        with_overrides(base, terminals=0)
    assert "simulator.terminals" in str(info.value)
