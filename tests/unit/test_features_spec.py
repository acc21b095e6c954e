"""The ``features:`` config section: presets, names, validation with key paths."""

from __future__ import annotations

import pytest

from fraudstream.config import Settings, load_settings
from fraudstream.config.features import FeatureSpec, feature_names
from fraudstream.errors import ConfigInvalid
from fraudstream.features import FeaturePipeline

HANDBOOK = [
    "amount", "weekend", "night",
    "customer_count_1d", "customer_mean_amount_1d",
    "customer_count_7d", "customer_mean_amount_7d",
    "customer_count_30d", "customer_mean_amount_30d",
    "terminal_count_1d_delay7d", "terminal_fraud_rate_1d_delay7d",
    "terminal_count_7d_delay7d", "terminal_fraud_rate_7d_delay7d",
    "terminal_count_30d_delay7d", "terminal_fraud_rate_30d_delay7d",
]


def test_handbook_preset_is_the_handbook_15_in_order():
    pipe = FeaturePipeline(FeatureSpec(preset="handbook"))
    assert pipe.feature_names == HANDBOOK
    assert pipe.n_features == 15


def test_default_is_recommended_extended_plus_the_customers_known_frauds():
    names = FeaturePipeline(Settings().features).feature_names
    extended = feature_names(FeatureSpec(preset="extended"))
    assert names == extended[:-1] + ["customer_frauds_7d_delay7d"] + extended[-1:]


def test_extended_preset_adds_four():
    names = feature_names(FeatureSpec(preset="extended"))
    assert names[:3] == HANDBOOK[:3]
    assert names[3:6] == ["log_amount", "hour_sin", "hour_cos"]
    assert names[6:18] == HANDBOOK[3:]
    assert names[18:] == ["amount_over_customer_mean_amount_30d"]


def test_explicit_list_replaces_the_presets_list():
    spec = FeatureSpec(preset="extended", stateless=("amount",), ratios=())
    assert feature_names(spec) == ["amount"] + HANDBOOK[3:]


def test_yaml_file_and_fractional_windows(tmp_path):
    path = tmp_path / "fs.yaml"
    path.write_text(
        "features:\n"
        "  preset: handbook\n"
        "  fields: {customer: card_id}\n"
        "  windows:\n"
        "    - {kind: events, entity: customer, days: [0.25, 1.5], stats: [sum]}\n"
        "    - {kind: labels, entity: terminal, days: [2], delay_days: 3, stats: [frauds]}\n"
    )
    spec = load_settings(path).features
    assert spec.fields.customer == "card_id"
    assert feature_names(spec)[3:] == ["customer_sum_amount_6h", "customer_sum_amount_36h",
                                       "terminal_frauds_2d_delay3d"]


@pytest.mark.parametrize("section,key", [
    ({"preset": "big"}, "features.preset"),
    ({"stateless": ["amount", "moon_phase"]}, "features.stateless"),
    ({"windows": [{"kind": "events", "days": [1, 1]}]}, "features.windows.0.events.days"),
    ({"windows": [{"kind": "events", "days": [-1]}]}, "features.windows.0.events.days"),
    ({"windows": [{"kind": "events", "stats": ["median"]}]}, "features.windows.0.events.stats.0"),
    ({"windows": [{"kind": "labels", "delay_days": 0}]}, "features.windows.0.labels.delay_days"),
    ({"windows": [{"kind": "sliding"}]}, "features.windows.0"),
    ({"timezone": "Mars/Olympus"}, "features.timezone"),
    ({"fields": {"customer": "amount"}}, "features.fields"),
    ({"stateless": ["amount", "amount"]}, "features.stateless"),
    ({"windows": [{"kind": "events"}, {"kind": "events"}]}, "features"),
    ({"normalizer": {"std_floor": 0}}, "features.normalizer.std_floor"),
    ({"colour": "red"}, "features.colour"),
])
def test_bad_values_name_their_key(section, key):
    with pytest.raises(ConfigInvalid) as info:
        load_settings(None, features=section)
    assert key in [k for k, _ in info.value.problems], info.value.problems


def test_env_override(monkeypatch):
    monkeypatch.setenv("FRAUDSTREAM__FEATURES__PRESET", "extended")
    assert FeaturePipeline(load_settings().features).n_features == 19
